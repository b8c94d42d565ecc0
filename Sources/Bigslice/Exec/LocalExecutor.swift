import Bigmachine
import CSupport
import Frame
import SliceIO
import Synchronization

/// Runs tasks in this process on a dedicated pool of `procs` threads (never Swift's
/// cooperative pool), keeping task outputs in the `OutputStore`:
/// in memory under the session's budget, in spill files beyond it.
final class LocalExecutor: ExecutorBackend, @unchecked Sendable {
  let procs: Int
  let store: OutputStore
  private let threads: ThreadPool

  init(procs: Int, store: OutputStore) {
    self.procs = max(1, procs)
    self.store = store
    threads = ThreadPool(count: self.procs)
  }

  deinit { threads.shutdown() }

  /// Runs every task that `roots` need on at most `procs` threads (a task takes as many as
  /// its pragma asks, and an exclusive one takes them all); see `Bigslice.evaluate`.
  func evaluate(
    _ roots: [ShardTask], counters: Counters, cancel: Cancellation? = nil, observer: (any TaskObserver)? = nil
  ) throws {
    try Bigslice.evaluate(
      roots, on: self, counters: counters, cancel: cancel, observer: observer, maxConsecutiveLost: maxConsecutiveLost)
  }

  var maxConsecutiveLost = defaultMaxConsecutiveLost
  /// Threads taken by the running tasks.
  private let used = Mutex(0)

  func start(
    _ task: ShardTask, idle: Bool, counters: Counters, observer: (any TaskObserver)?,
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
    threads.submit {
      let (task, counters) = job.value
      let outcome = self.runObserved(task, counters: counters, observer: observer)
      self.used.withLock { $0 -= need }
      finish(outcome)
    }
    return true
  }

  /// Runs `task` here, reporting it running, then done or failed, to `observer`.
  private func runObserved(_ task: ShardTask, counters: Counters, observer: (any TaskObserver)?) -> TaskOutcome {
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
  func submit(_ body: @escaping @Sendable () -> Void) { threads.submit(body) }

  /// Computes one task: reads its dependencies, runs its pipeline, partitions (and combines)
  /// the output.
  ///
  /// `open` opens partition `p` of an upstream task's output; by default, the output the task
  /// holds (a worker opens its own store's files, or streams them from the peer holding them).
  func run(
    _ task: ShardTask, counters: Counters, io: TaskIOMeter = TaskIOMeter(),
    open: @escaping (ShardTask, Int) throws -> any Reader = DependencyReader.openHeld
  ) throws -> [StoredPartition] {
    let context = TaskContext(shard: task.shard, counters: counters, store: store, io: io)
    context.rowsOnlyEncoded = store.outputsOnDisk && task.chain.count == 1 && !task.readsStored
    return try context.with { try run(task, context: context, open: open) }
  }

  private func run(
    _ task: ShardTask, context: TaskContext, open: @escaping (ShardTask, Int) throws -> any Reader
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
    if task.readsStored, let stored = bottom.stored {
      reader = NamedReader(
        try namingErrors(of: bottom, shard: task.shard) {
          try stored.reader(shard: task.shard, of: bottom.shards, schema: bottom.schema)
        }, op: bottom.name, shard: task.shard)
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
  private func partition(_ reader: any Reader, _ task: ShardTask) throws -> [StoredPartition] {
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
        parts = frame.partition(ids: try split.partitionIDs(frame), into: task.partitions)
      case .sampled:
        preconditionFailure("a sampled shuffle is compiled into splits")
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
