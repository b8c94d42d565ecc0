import Dispatch
import Frame
import SliceIO
import Synchronization

/// Runs tasks in this process on a dedicated pool of `procs` threads (never Swift's
/// cooperative pool), keeping task outputs in the `OutputStore`:
/// in memory under the session's budget, in spill files beyond it.
final class LocalExecutor: @unchecked Sendable {
  let procs: Int
  let store: OutputStore
  private let queue: TaskThreads

  init(procs: Int, store: OutputStore) {
    self.procs = max(1, procs)
    self.store = store
    queue = TaskThreads(count: self.procs)
  }

  deinit { queue.shutdown() }

  /// Runs every task that `roots` need, each after its dependencies, on at most `procs`
  /// threads (a task takes as many as its pragma asks, and an exclusive one takes them all).
  ///
  /// A task whose input turns out lost (a spill file vanished or was corrupted) goes back to
  /// waiting, together with the upstream tasks that made the input, and both are computed
  /// again. Outputs of interior tasks are released as soon as every task reading them is
  /// done; they are computed again if a later loss needs them.
  /// - Throws: the first task failure, as `BigsliceError.taskFailed`; `.tooManyTries` when
  ///   one task lost its input `maxConsecutiveLost` times in a row.
  func evaluate(_ roots: [Task], counters: Counters, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws
  {
    for root in roots { root.pinned = true }
    var losses: [ObjectIdentifier: Int] = [:]
    var done = 0
    while true {
      let plan = Plan(roots)
      if plan.remaining == 0 { break }
      let total = done + plan.remaining
      progress(done, total)
      let outcome = try execute(plan, counters: counters) { task in
        losses[ObjectIdentifier(task)] = nil
        done += 1
        progress(done, total)
      }
      guard let lost = outcome else { break }
      // Start over from the roots: the lost outputs (and whatever was released that they
      // need) are planned again. Outputs beside the lost one whose files are gone too are
      // recomputed in the same round rather than found one loss at a time.
      for upstream in lost.upstream { upstream.output = nil }
      for upstream in lost.task.deps.flatMap(\.tasks) where upstream.output?.allSatisfy(\.isAvailable) == false {
        upstream.output = nil
      }
      let id = ObjectIdentifier(lost.task)
      losses[id, default: 0] += 1
      if losses[id]! >= maxConsecutiveLost {
        throw BigsliceError.tooManyTries(
          op: lost.task.op, shard: lost.task.shard, tries: losses[id]!, cause: lost.cause)
      }
    }
  }

  /// Tasks lost in a row before a job fails with `tooManyTries`.
  static let defaultMaxConsecutiveLost = 5
  var maxConsecutiveLost = LocalExecutor.defaultMaxConsecutiveLost

  /// The tasks that still need computing, with their dependency counts.
  private struct Plan {
    var waiting: [ObjectIdentifier: Int] = [:]
    var dependents: [ObjectIdentifier: [Task]] = [:]
    /// For each planned task, how many planned tasks read its output.
    var readers: [ObjectIdentifier: Int] = [:]
    /// Every planned task by identity.
    var tasks: [ObjectIdentifier: Task] = [:]
    var ready: [Task] = []
    var remaining: Int { waiting.count }

    /// Walks down from `roots`, stopping at tasks whose output is present.
    init(_ roots: [Task]) {
      var all: [ObjectIdentifier: Task] = [:]
      var stack = roots.filter { $0.output == nil }
      while let task = stack.popLast() {
        guard all[ObjectIdentifier(task)] == nil else { continue }
        all[ObjectIdentifier(task)] = task
        for dep in task.deps { stack.append(contentsOf: dep.tasks.filter { $0.output == nil }) }
      }
      for task in all.values {
        let upstream = Set(task.deps.flatMap(\.tasks).filter { $0.output == nil }.map(ObjectIdentifier.init))
        waiting[ObjectIdentifier(task)] = upstream.count
        for u in upstream { dependents[u, default: []].append(task) }
        if upstream.isEmpty { ready.append(task) }
      }
      for task in all.values {
        for dep in Set(task.deps.flatMap(\.tasks).map(ObjectIdentifier.init)) where all[dep] != nil {
          readers[dep, default: 0] += 1
        }
      }
      tasks = all
    }
  }

  /// Runs a plan to its end. Returns nil when every task is done, or the first lost input
  /// (after the tasks already running have finished).
  private func execute(
    _ plan: Plan, counters: Counters, finished taskDone: (Task) -> Void
  ) throws -> LostInput? {
    var plan = plan
    let state = Mutex<(done: [(Task, Int)], failure: Error?, lost: LostInput?)>(([], nil, nil))
    let finished = DispatchSemaphore(value: 0)
    var used = 0
    var running = 0
    var stop = false
    var failure: Error?
    var lost: LostInput?
    while plan.remaining > 0 {
      while !stop, let task = plan.ready.last {
        let need = min(task.procs(of: procs), procs)
        guard running == 0 || used + need <= procs else { break }
        plan.ready.removeLast()
        used += need
        running += 1
        queue.async {
          let taskCounters = Counters()
          do {
            let partitions = try self.run(task, counters: taskCounters)
            task.output = try self.store.store(
              partitions, schema: task.chain[0].schema, pinned: task.pinned)
            counters.merge(taskCounters)
            state.withLock { $0.done.append((task, need)) }
          } catch let error as LostInput {
            state.withLock {
              $0.done.append((task, need))
              if $0.lost == nil { $0.lost = error }
            }
          } catch {
            let wrapped =
              (error as? BigsliceError) ?? BigsliceError.taskFailed(op: task.op, shard: task.shard, cause: error)
            state.withLock {
              $0.done.append((task, need))
              if $0.failure == nil { $0.failure = wrapped }
            }
          }
          finished.signal()
        }
      }
      if running == 0 { break }
      finished.wait()
      let (done, error, loss) = state.withLock { s -> ([(Task, Int)], Error?, LostInput?) in
        defer { s.done = [] }
        return (s.done, s.failure, s.lost)
      }
      failure = failure ?? error
      lost = lost ?? loss
      stop = failure != nil || lost != nil
      for (task, need) in done {
        running -= 1
        used -= need
        guard task.output != nil else { continue }
        plan.waiting[ObjectIdentifier(task)] = nil
        taskDone(task)
        for next in plan.dependents[ObjectIdentifier(task)] ?? [] {
          plan.waiting[ObjectIdentifier(next)]! -= 1
          if plan.waiting[ObjectIdentifier(next)] == 0 { plan.ready.append(next) }
        }
        // Release inputs that no planned task reads any more.
        for upstream in Set(task.deps.flatMap(\.tasks).map(ObjectIdentifier.init)) {
          guard let left = plan.readers[upstream] else { continue }
          plan.readers[upstream] = left - 1
          if left == 1, let done = plan.tasks[upstream], !done.pinned { done.output = nil }
        }
      }
    }
    if let failure { throw failure }
    return lost
  }

  /// Computes one task: reads its dependencies, runs its pipeline, partitions (and combines)
  /// the output.
  func run(_ task: Task, counters: Counters) throws -> [[Frame]] {
    let context = TaskContext(shard: task.shard, counters: counters, store: store)
    return try context.with { try run(task, context: context) }
  }

  private func run(_ task: Task, context: TaskContext) throws -> [[Frame]] {
    let bottom = task.chain.last!
    var inputs: [any Reader] = []
    for (i, dep) in task.deps.enumerated() {
      if dep.shuffle {
        let partitions = ConcatReader(dep.tasks.map { DependencyReader(task, reading: $0, partition: task.shard) })
        if let combining = bottom.combining, i == 0 {
          let buffer = try CombineBuffer(combining, schema: bottom.deps[i].node.schema, store: store)
          while let frame = try partitions.read() { try buffer.add(frame) }
          inputs.append(try buffer.finish())
        } else {
          inputs.append(partitions)
        }
      } else {
        inputs.append(DependencyReader(task, reading: dep.tasks[0], partition: 0))
      }
    }
    var reader: any Reader
    if let path = task.cacheFile {
      reader = NamedReader(
        try namingErrors(of: bottom, shard: task.shard) { try blockFileReader(path: path, schema: bottom.schema) },
        op: bottom.name, shard: task.shard)
    } else {
      reader = try run(bottom, shard: task.shard, inputs: inputs, context: context)
    }
    for node in task.chain.dropLast().reversed() {
      reader = try run(node, shard: task.shard, inputs: [reader], context: context)
    }
    return try partition(reader, task)
  }

  /// The reader of `node` for `shard`; errors from making or reading it name the node.
  private func run(_ node: SliceNode, shard: Int, inputs: [any Reader], context: TaskContext) throws -> any Reader {
    NamedReader(
      try namingErrors(of: node, shard: shard) { try node.reader(shard, inputs, context) }, op: node.name, shard: shard)
  }

  private func namingErrors<T>(of node: SliceNode, shard: Int, _ body: () throws -> T) throws -> T {
    do {
      return try body()
    } catch let error as BigsliceError {
      throw error
    } catch let error as LostInput {
      throw error
    } catch {
      throw BigsliceError.taskFailed(op: node.name, shard: shard, cause: error)
    }
  }

  /// Reads the task's output and cuts it into partitions, combining map-side first.
  private func partition(_ reader: any Reader, _ task: Task) throws -> [[Frame]] {
    var frames: [Frame] = []
    if let combining = task.combining {
      // Map-side combining, as the rows stream by: memory grows with distinct keys, not rows.
      let buffer = try CombineBuffer(combining, schema: task.chain[0].schema, store: store)
      while let frame = try reader.read() { try buffer.add(frame) }
      frames = try readAll(try buffer.finish())
    } else {
      while let frame = try reader.read() {
        if frame.count > 0 { frames.append(frame) }
      }
    }
    if let split = task.sampledFor { task.sample = try split.sample(frames, schema: task.chain[0].schema) }
    guard task.partitions > 1 else { return [frames] }
    var out = [[Frame]](repeating: [], count: task.partitions)
    for frame in frames {
      let parts: [Frame]
      switch task.partitioner {
      case .hash:
        let hashes = try frame.hashKeys(seed: 0)
        parts = hashes.withUnsafeBufferPointer { frame.partition(hashes: $0.baseAddress!, into: task.partitions) }
      case .custom(let f):
        parts = frame.partition(ids: try f(frame, task.partitions), into: task.partitions)
      case .split(let split):
        parts = frame.partition(
          ids: try frame.rangePartitionIDs(splitters: try split.splitters()), into: task.partitions)
      case .range:
        preconditionFailure("a range shuffle is compiled into splits")
      }
      for (p, part) in parts.enumerated() where part.count > 0 { out[p].append(part) }
    }
    return out
  }
}

/// Passes frames through, wrapping an error from a user closure or the data in
/// `BigsliceError.taskFailed` with the operation that raised it (the innermost one).
final class NamedReader: Reader {
  private let input: any Reader
  private let op: String
  private let shard: Int

  init(_ input: any Reader, op: String, shard: Int) {
    self.input = input
    self.op = op
    self.shard = shard
  }

  func read() throws -> Frame? {
    do {
      return try input.read()
    } catch let error as BigsliceError {
      throw error
    } catch let error as LostInput {
      throw error
    } catch {
      throw BigsliceError.taskFailed(op: op, shard: shard, cause: error)
    }
  }
}

/// A task's input that could not be read: the upstream output is gone (released, or its
/// spill file vanished) or damaged. Not fatal: the upstream tasks are computed again.
struct LostInput: Error, @unchecked Sendable {
  /// The task that was reading.
  let task: Task
  /// The tasks whose output was lost.
  let upstream: [Task]
  let cause: Error
}

/// Reads one partition of an upstream task's output, opening it on the first read. Any
/// failure to open or read it means the input is lost (`LostInput`).
final class DependencyReader: Reader {
  private let task: Task
  private let upstream: Task
  private let partition: Int
  private var input: (any Reader)?

  init(_ task: Task, reading upstream: Task, partition: Int) {
    self.task = task
    self.upstream = upstream
    self.partition = partition
  }

  func read() throws -> Frame? {
    do {
      if input == nil {
        guard let output = upstream.output else {
          throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
        }
        input = try output[partition].reader()
      }
      return try input!.read()
    } catch {
      throw LostInput(task: task, upstream: [upstream], cause: error)
    }
  }
}

/// Combines rows of equal keys as they arrive: built-in aggregates go straight into a C
/// combiner, a user closure into its accumulator. Either holds one row per distinct key.
final class CombineBuffer {
  private let combiner: Combiner?
  private let accumulator: (any KeyedAccumulator)?
  private let aggregate: Combiner.Aggregate
  private let kind: ScalarKind
  private let store: OutputStore?
  private let runSchema: Schema
  private var runs: [SpillFile] = []

  /// A buffer for `combining` rows of `schema`. With a `store`, a built-in combiner that
  /// outgrows `store.combinerLimit` bytes spills its groups as a run sorted by (hash, key);
  /// `finish` then merges the runs and combines equal keys as they meet.
  init(_ combining: Combining, schema: Schema, store: OutputStore? = nil) throws {
    self.store = store
    switch combining {
    case .builtIn(let aggregate, let kind):
      let combiner = try Combiner(keyType: schema.types[0])
      try combiner.addAggregate(aggregate, valueType: kind)
      self.combiner = combiner
      accumulator = nil
      self.aggregate = aggregate
      self.kind = kind
    case .closure(let make):
      combiner = nil
      accumulator = try make()
      aggregate = .sum
      kind = .int64
    }
    runSchema = Schema([schema.types[0], .scalar(kind)], prefix: 1)
  }

  func add(_ frame: Frame) throws {
    guard frame.count > 0 else { return }
    guard let combiner else { return try accumulator!.add(frame) }
    try combiner.add(keys: frame.columns[0], values: [frame.columns[1]], seed: combineSeed)
    if let store, combiner.byteCount > store.combinerLimit {
      runs.append(try store.spillRun(try combiner.drain().frame, schema: runSchema))
    }
  }

  /// The combined rows, one per key.
  func finish() throws -> any Reader {
    guard let combiner else { return FrameReader(try accumulator!.finish().map { [$0] } ?? []) }
    if runs.isEmpty {
      // In-memory output needs no order.
      return FrameReader(combiner.groupCount > 0 ? [try combiner.drainUnordered()] : [])
    }
    var sources: [any Reader] = try runs.map { try $0.reader() }
    if combiner.groupCount > 0 { sources.append(FrameReader(try combiner.drain().frame)) }
    runs = []
    let merged = MergeReader(sources, order: .hash(seed: combineSeed))
    let aggregate = self.aggregate
    switch kind {
    case .double:
      // The C combiner's rules: NaN sticks, and of -0.0 and +0.0 the first seen stays.
      return AdjacentCombineReader<Double>(merged) { a, b in
        switch aggregate {
        case .min: a.isNaN || b.isNaN ? .nan : (b < a ? b : a)
        case .max: a.isNaN || b.isNaN ? .nan : (b > a ? b : a)
        default: a + b
        }
      }
    default:
      return AdjacentCombineReader<Int64>(merged) { a, b in
        switch aggregate {
        case .min: Swift.min(a, b)
        case .max: Swift.max(a, b)
        default: a &+ b
        }
      }
    }
  }
}

/// Reads (key, value) rows sorted by (hash, key) and combines the values of adjacent equal
/// keys, across frame boundaries too: the reduce step of merging spilled combiner runs.
final class AdjacentCombineReader<T: ScalarValue>: Reader {
  private let input: any Reader
  private let combine: (T, T) -> T
  /// The key still collecting values (a one-column, one-row frame), its hash and value.
  private var carry: (key: Frame, hash: UInt64, value: T)?
  private var ended = false

  init(_ input: any Reader, _ combine: @escaping (T, T) -> T) {
    self.input = input
    self.combine = combine
  }

  func read() throws -> Frame? {
    while !ended {
      guard let frame = try input.read() else {
        ended = true
        guard let last = carry else { return nil }
        carry = nil
        return try Frame([last.key.columns[0], Column([last.value])], prefix: 1)
      }
      guard frame.count > 0 else { continue }
      let hashes = try frame.hashKeys(seed: combineSeed)
      let values = frame.columns[1].scalars(T.self)
      let keys = try Frame([frame.columns[0]])
      var chunks: [UInt32] = []
      var rows: [UInt32] = []
      var out: [T] = []
      // The current key: chunk 0 is the carried key, chunk 1 this frame's keys.
      var current: (chunk: UInt32, row: Int, hash: UInt64, value: T)? =
        carry.map { (0, 0, $0.hash, $0.value) }
      let carried = carry?.key ?? keys
      for i in 0..<frame.count {
        if let c = current, c.hash == hashes[i], (c.chunk == 0 ? carried : keys).equalKeys(c.row, keys, i) {
          current!.value = combine(c.value, values[i])
          continue
        }
        if let c = current {
          chunks.append(c.chunk)
          rows.append(UInt32(c.row))
          out.append(c.value)
        }
        current = (1, i, hashes[i], values[i])
      }
      if let c = current {
        carry = (c.chunk == 0 ? carried : keys.slice(c.row..<(c.row + 1)), c.hash, c.value)
      }
      if !out.isEmpty {
        let keyColumn = try Frame.interleave([carried, keys], chunkIndices: chunks, rows: rows).columns[0]
        return try Frame([keyColumn, Column(out)], prefix: 1)
      }
    }
    return nil
  }
}
