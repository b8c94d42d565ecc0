import CSupport
import Dispatch
import Frame
import SliceIO
import Synchronization

/// Runs tasks in this process on a dedicated pool of `procs` threads (never Swift's
/// cooperative pool), keeping task outputs in the `OutputStore`:
/// in memory under the session's budget, in spill files beyond it.
final class LocalExecutor: TaskDispatcher, @unchecked Sendable {
  let procs: Int
  let store: OutputStore
  private let queue: TaskThreads

  init(procs: Int, store: OutputStore) {
    self.procs = max(1, procs)
    self.store = store
    queue = TaskThreads(count: self.procs)
  }

  deinit { queue.shutdown() }

  /// Runs every task that `roots` need on at most `procs` threads (a task takes as many as
  /// its pragma asks, and an exclusive one takes them all); see `Bigslice.evaluate`.
  func evaluate(
    _ roots: [Task], counters: Counters, cancel: Cancellation? = nil, observer: (any TaskObserver)? = nil
  ) throws {
    try Bigslice.evaluate(
      roots, on: self, counters: counters, cancel: cancel, observer: observer, maxConsecutiveLost: maxConsecutiveLost)
  }

  var maxConsecutiveLost = defaultMaxConsecutiveLost
  /// Threads taken by the running tasks.
  private let used = Mutex(0)

  func start(
    _ task: Task, idle: Bool, counters: Counters, observer: (any TaskObserver)?,
    finish: @escaping @Sendable (TaskOutcome) -> Void
  ) throws -> Bool {
    let need = min(task.procs(of: procs), procs)
    let admitted = used.withLock { used in
      guard idle || used + need <= procs else { return false }
      used += need
      return true
    }
    guard admitted else { return false }
    let job = UncheckedBox((task, counters))
    queue.async {
      let (task, counters) = job.value
      let outcome = self.runObserved(task, counters: counters, observer: observer)
      self.used.withLock { $0 -= need }
      finish(outcome)
    }
    return true
  }

  /// Runs `task` here, reporting it running, then done or failed, to `observer`.
  private func runObserved(_ task: Task, counters: Counters, observer: (any TaskObserver)?) -> TaskOutcome {
    let io = TaskIOMeter()
    observer?.record(task, .running, progress: io.progress)
    let taskCounters = Counters()
    do {
      let output = try run(task, counters: taskCounters, io: io)
      observer?.record(task, .done, output: output, io: io.io)
      // Under a memory limit, hand the task's freed working memory back to the system:
      // glibc keeps freed blocks in its arenas, and the resident set would hold them.
      if store.isLimited { _ = bs_release_free_memory() }
      counters.merge(taskCounters)
      return .done(output)
    } catch let error as LostInput {
      observer?.record(task, .waiting)
      return .lost(error)
    } catch {
      let wrapped =
        (error as? BigsliceError) ?? BigsliceError.taskFailed(op: task.op, shard: task.shard, cause: error)
      observer?.record(task, .failed, error: wrapped)
      return .failed(wrapped)
    }
  }

  /// Runs `body` on one of the executor's threads.
  func submit(_ body: @escaping @Sendable () -> Void) { queue.async(body) }

  /// Computes one task: reads its dependencies, runs its pipeline, partitions (and combines)
  /// the output.
  ///
  /// `open` opens partition `p` of an upstream task's output; by default, the output the task
  /// holds (a worker opens its own store's files, or streams them from the peer holding them).
  func run(
    _ task: Task, counters: Counters, io: TaskIOMeter = TaskIOMeter(),
    open: @escaping (Task, Int) throws -> any Reader = DependencyReader.openHeld
  ) throws -> [StoredPartition] {
    let context = TaskContext(shard: task.shard, counters: counters, store: store, io: io)
    context.rowsOnlyEncoded = store.outputsOnDisk && task.chain.count == 1 && task.cacheFile == nil
    return try context.with { try run(task, context: context, open: open) }
  }

  private func run(
    _ task: Task, context: TaskContext, open: @escaping (Task, Int) throws -> any Reader
  ) throws -> [StoredPartition] {
    let bottom = task.chain.last!
    var inputs: [any Reader] = []
    for (i, dep) in task.deps.enumerated() {
      if dep.shuffle {
        let partitions = ConcatReader(
          dep.tasks.map { DependencyReader(task, reading: $0, partition: task.shard, open: open) })
        if let combining = bottom.combining, i == 0 {
          let buffer = try CombineBuffer(combining, schema: bottom.deps[i].node.schema, store: store)
          while let frame = try partitions.read() { try buffer.add(frame) }
          inputs.append(try buffer.finish())
        } else {
          inputs.append(partitions)
        }
      } else {
        inputs.append(DependencyReader(task, reading: dep.tasks[0], partition: 0, open: open))
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

  /// Reads the task's output, combining map-side first, and cuts it into partitions as it
  /// streams by, into a sink that holds them in memory or spills them.
  private func partition(_ reader: any Reader, _ task: Task) throws -> [StoredPartition] {
    let schema = task.chain[0].schema
    let sink = OutputSink(store: store, schema: schema, partitions: task.partitions, pinned: task.pinned)
    let emit = { (frame: Frame) throws in
      guard frame.count > 0 else { return }
      guard task.partitions > 1 else { return try sink.write(frame, to: 0) }
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
      for (p, part) in parts.enumerated() { try sink.write(part, to: p) }
    }
    if let combining = task.combining {
      // Map-side combining, as the rows stream by: memory grows with distinct keys, not rows,
      // and what outgrows the task's share goes out as output (combined again downstream).
      let buffer = try CombineBuffer(combining, schema: schema, store: store, overflow: emit)
      while let frame = try reader.read() { try buffer.add(frame) }
      let rest = try buffer.finish()
      while let frame = try rest.read() { try emit(frame) }
    } else {
      while let frame = try reader.read() { try emit(frame) }
    }
    let output = try sink.finish()
    if let split = task.sampledFor { task.sample = try split.sample(output[0], schema: schema) }
    return output
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
  private let open: (Task, Int) throws -> any Reader
  private var input: (any Reader)?

  init(_ task: Task, reading upstream: Task, partition: Int, open: @escaping (Task, Int) throws -> any Reader) {
    self.task = task
    self.upstream = upstream
    self.partition = partition
    self.open = open
  }

  /// Opens the output `upstream` holds.
  static func openHeld(_ upstream: Task, _ partition: Int) throws -> any Reader {
    guard let output = upstream.output else {
      throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
    }
    return try output[partition].reader()
  }

  func read() throws -> Frame? {
    let started = ContinuousClock.now
    let frame = try readInput()
    TaskContext.current?.io.read(frame, since: started)
    return frame
  }

  private func readInput() throws -> Frame? {
    do {
      if input == nil { input = try open(upstream, partition) }
      return try input!.read()
    } catch let error as LostInput {
      throw error
    } catch {
      throw LostInput(task: task, upstream: [upstream], cause: error)
    }
  }
}

/// Combines rows of equal keys as they arrive: built-in aggregates in a C combiner, a user
/// closure in its accumulator. Either holds one row per distinct key, up to `limit` bytes:
/// rows go in, in chunks no larger than the accumulator has room for, so its table never grows
/// past the limit (a quarter of which stays free for the copy a drain makes).
///
/// At the limit, what is combined so far leaves memory:
/// - map-side (`overflow` given), it goes straight to the task's output partitions: the
///   reduce side combines again, so nothing needs merging here. When that first drain finds
///   the rows barely reduced (more than `bypassRatio` groups per row), combining is not worth
///   its table: the table is freed and the rest of the rows pass through uncombined;
/// - reduce-side, it is cut by the top bits of the combining hash into `HashBuckets` files,
///   and so is everything combined after it. `finish` then combines bucket by bucket, each a
///   fraction of the keys, splitting a bucket that is still too big by the next bits. No
///   bucket shares a key with another, so the output needs no sort and no merge.
final class CombineBuffer {
  /// Nil once map-side combining has been bypassed.
  private var accumulator: (any KeyedAccumulator)?
  private let schema: Schema
  private let store: OutputStore?
  private let limit: Int
  private let overflow: ((Frame) throws -> Void)?
  private let level: Int
  private var buckets: HashBuckets?
  /// One encoder for every bucket file.
  private lazy var encoder = FrameEncoder()
  /// Rows added since the last drain.
  private var rowsSinceDrain = 0

  /// Map-side combining stops when a full table holds more groups per row added than this.
  static let bypassRatio = 0.5
  /// Rows a chunk holds at least, room or not (a tiny limit still makes progress).
  static let minimumChunk = 1024

  /// A buffer for `combining` rows of `schema`, spilling beyond `store.workingLimit` bytes
  /// (never without a store); map-side with `overflow`.
  convenience init(
    _ combining: Combining, schema: Schema, store: OutputStore? = nil, overflow: ((Frame) throws -> Void)? = nil
  ) throws {
    try self.init(
      accumulator: try combining.accumulator(keyType: schema.types[0]), schema: schema, store: store,
      overflow: overflow, level: 0)
  }

  private init(
    accumulator: any KeyedAccumulator, schema: Schema, store: OutputStore?, overflow: ((Frame) throws -> Void)?,
    level: Int
  ) throws {
    self.accumulator = accumulator
    self.schema = schema
    self.store = store
    self.overflow = overflow
    self.level = level
    limit = level < HashBuckets.maxLevel ? (store?.workingLimit ?? Int.max) : Int.max
  }

  func add(_ frame: Frame) throws {
    guard frame.count > 0 else { return }
    guard let accumulator else { return try overflow!(frame) }
    // The limit a drain's copy leaves for the table itself.
    let tableLimit = limit == Int.max ? limit : limit - limit / 4
    var start = 0
    var drained = false
    while start < frame.count {
      let rest = frame.count - start
      let room = accumulator.room(within: tableLimit)
      if room < min(rest, CombineBuffer.minimumChunk) && !drained && canSpill {
        try spill()
        drained = true
        if self.accumulator == nil { return try overflow!(frame.slice(start..<frame.count)) }
        continue
      }
      let n = min(rest, max(room, CombineBuffer.minimumChunk))
      try accumulator.add(n == frame.count ? frame : frame.slice(start..<start + n))
      rowsSinceDrain += n
      start += n
      drained = false
    }
    if accumulator.byteCount > limit && canSpill { try spill() }
  }

  /// Whether anything can leave memory: without a store, there is nowhere to spill to.
  private var canSpill: Bool { overflow != nil || store != nil }

  /// Moves what is combined so far out of memory.
  private func spill() throws {
    guard canSpill, let accumulator, let combined = try accumulator.finish() else { return }
    let rows = rowsSinceDrain
    rowsSinceDrain = 0
    if let overflow {
      if Double(combined.count) > CombineBuffer.bypassRatio * Double(rows) {
        self.accumulator = nil
        store?.combinerBypasses.withLock { $0 += 1 }
      }
      // In slices, so the partitioning downstream copies in small pieces.
      var start = 0
      while start < combined.count {
        let end = min(start + HashBuckets.chunk, combined.count)
        try overflow(start == 0 && end == combined.count ? combined : combined.slice(start..<end))
        start = end
      }
      return
    }
    if buckets == nil { buckets = HashBuckets(schema: schema, store: store!, level: level, encoder: encoder) }
    try buckets!.write(combined)
    store!.spilledRuns.withLock { $0 += 1 }
  }

  /// The combined rows, one per key; map-side, only what is left after the overflows.
  func finish() throws -> any Reader {
    guard let accumulator else { return FrameReader([]) }
    guard let buckets else { return FrameReader(try accumulator.finish().map { [$0] } ?? []) }
    try spill()
    let files = try buckets.finish().compactMap { $0 }
    self.buckets = nil
    return BucketCombineReader(
      files, accumulator: accumulator, schema: schema, store: store!, level: level + 1)
  }

  /// Combines spilled buckets one at a time, each in a buffer of the next level.
  private final class BucketCombineReader: Reader {
    private var files: [SpillFile]
    private let accumulator: any KeyedAccumulator
    private let schema: Schema
    private let store: OutputStore
    private let level: Int
    private var current: (any Reader)?

    init(_ files: [SpillFile], accumulator: any KeyedAccumulator, schema: Schema, store: OutputStore, level: Int) {
      self.files = files.reversed()
      self.accumulator = accumulator
      self.schema = schema
      self.store = store
      self.level = level
    }

    func read() throws -> Frame? {
      while true {
        if let frame = try current?.read() { return frame }
        current = nil
        // The file goes (and is removed) once its rows are combined.
        guard let file = files.popLast() else { return nil }
        let buffer = try CombineBuffer(
          accumulator: accumulator, schema: schema, store: store, overflow: nil, level: level)
        let rows = try file.reader()
        while let frame = try rows.read() { try buffer.add(frame) }
        current = try buffer.finish()
      }
    }
  }
}

extension Combining {
  /// A fresh accumulator for keys of `keyType`.
  func accumulator(keyType: ColumnType) throws -> any KeyedAccumulator {
    switch self {
    case .builtIn(let aggregate, let kind): return try BuiltInAccumulator(keyType: keyType, aggregate, kind)
    case .closure(let make): return try make()
    }
  }
}

/// A built-in aggregate folded by the C combiner, with no closure per row.
final class BuiltInAccumulator: KeyedAccumulator {
  private let combiner: Combiner

  init(keyType: ColumnType, _ aggregate: Combiner.Aggregate, _ kind: ScalarKind) throws {
    combiner = try Combiner(keyType: keyType)
    try combiner.addAggregate(aggregate, valueType: kind)
  }

  func add(_ frame: Frame) throws {
    try combiner.add(keys: frame.columns[0], values: [frame.columns[1]], seed: combineSeed)
  }

  func finish() throws -> Frame? { combiner.groupCount > 0 ? try combiner.drainUnordered() : nil }

  var byteCount: Int { combiner.byteCount }

  func room(within limit: Int) -> Int { combiner.room(within: limit) }
}
