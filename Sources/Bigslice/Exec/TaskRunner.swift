import Frame
import SliceIO

/// Computes one task in this process: opens its inputs (combining a shuffled input first when
/// the node reads it combined), runs its pipeline of slice nodes, and cuts the output into
/// partitions, combined map-side, in the output store. The local executor and a machine's
/// worker both run their tasks through it.
struct TaskRunner {
  let store: OutputStore

  /// Computes one task: reads its dependencies, runs its pipeline, partitions (and combines)
  /// the output.
  ///
  /// `open` opens partition `p` of an upstream task's output; nil: the output the task holds
  /// (a worker opens its own store's files, or streams them from the peer holding them).
  func run(
    _ task: ShardTask, counters: Counters, io: TaskIOMeter = TaskIOMeter(), open: PartitionOpener? = nil,
    cancel: Cancellation? = nil
  ) throws -> TaskOutput {
    let context = TaskContext(
      shard: task.shard, counters: counters, store: store, io: io, cancel: cancel, inputFiles: task.inputFiles)
    context.rowsOnlyEncoded = store.outputsOnDisk && task.chain.count == 1 && !task.readsStored
    return try context.with { try run(task, context: context, open: open) }
  }

  private func run(_ task: ShardTask, context: TaskContext, open: PartitionOpener?) throws -> TaskOutput {
    let bottom = task.chain.last!
    var inputs: [any Reader] = []
    for (i, dep) in task.deps.enumerated() {
      if dep.shuffle {
        let partitions = ShuffleReader(task, reading: dep, partition: task.shard, open: open, store: store)
        if let combining = bottom.combining, i == 0 {
          let buffer = try CombineBuffer(combining, schema: bottom.deps[i].node.schema, store: store)
          while let frame = try partitions.read() {
            try context.checkCancelled()
            try buffer.add(frame)
          }
          inputs.append(try buffer.finish())
        } else {
          inputs.append(partitions)
        }
      } else {
        inputs.append(DependencyReader(task, reading: dep.tasks[0], partition: 0, open: open ?? openHeld))
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
    return try partition(reader, task, context: context)
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
  private func partition(_ reader: any Reader, _ task: ShardTask, context: TaskContext) throws -> TaskOutput {
    let schema = task.chain[0].schema
    let sink = OutputSink(
      store: store, schema: schema, partitions: task.partitions, group: task.op)
    let emit = { (frame: Frame) throws in
      guard frame.count > 0 else { return }
      guard task.partitions > 1 else { return try sink.write(frame, ids: nil) }
      let ids: [UInt32]
      switch task.partitioner {
      case .hash:
        return try frame.withHashPartitionIDs(partitions: task.partitions) { try sink.write(frame, ids: $0) }
      case .custom(let f):
        ids = try f(frame, task.partitions)
        guard ids.count == frame.count else {
          throw BigsliceError.invalidArgument(
            "a partitioner returned \(ids.count) partition ids for a frame of \(frame.count) rows")
        }
      case .split(let split):
        ids = try split.partitionIDs(frame)
      case .sampled:
        preconditionFailure("a sampled shuffle is compiled into splits")
      }
      try ids.withUnsafeBufferPointer { try sink.write(frame, ids: $0) }
    }
    if let combining = task.combining {
      // Map-side combining, as the rows stream by: memory grows with distinct keys, not rows,
      // and what outgrows the task's share goes out as output (combined again downstream).
      let buffer = try CombineBuffer(
        combining, schema: schema, store: store, overflow: emit, record: task.combineRecord)
      while let frame = try reader.read() {
        try context.checkCancelled()
        try buffer.add(frame)
      }
      let rest = try buffer.finish()
      while let frame = try rest.read() { try emit(frame) }
    } else {
      while let frame = try reader.read() {
        try context.checkCancelled()
        try emit(frame)
      }
    }
    let output = try sink.finish()
    // The first sample is kept: a task computed again keeps the key ranges the first cut.
    if let split = task.sampledFor, task.sample == nil { task.sample = try split.sample(output, schema: schema) }
    return output
  }
}
