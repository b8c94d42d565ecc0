/// Turns a slice graph into tasks: narrow edges are pipelined into one task per shard, and
/// every shuffle cuts the graph.
struct Compiler {
  private var compiled: [ObjectIdentifier: [ShardTask]] = [:]
  /// The invocation compiled, for the tasks' `ref`s.
  let invocation: Int
  private var made = 0
  /// For each node with stored shards met, in the order met: which shards read their stored
  /// copy. The driver's compile records them and its machines replay them, so every process
  /// makes the same tasks even while stored shards come and go (another job may be writing
  /// them).
  private(set) var storedDecisions: [[Bool]] = []
  private let replay: [[Bool]]?
  /// For each file reader met, in the order met: its files. The driver's compile expands
  /// them and its machines replay them, so every process reads the same files.
  private(set) var expansions: [[String]] = []
  /// The first expansion that failed (a pattern that matches nothing, say): the run fails
  /// with it before any task starts.
  private(set) var inputProblem: BigsliceError?
  private let replayInputs: [[String]]?

  /// - Parameters:
  ///   - stored: the driver's `storedDecisions`, on a machine.
  ///   - inputs: the driver's `expansions`, on a machine.
  init(invocation: Int = 0, stored: [[Bool]]? = nil, inputs: [[String]]? = nil) {
    self.invocation = invocation
    replay = stored
    replayInputs = inputs
  }

  /// The files of `input` in this compile.
  private mutating func expand(_ input: InputFiles) -> [String] {
    let k = expansions.count
    var files: [String] = []
    if let replayInputs, k < replayInputs.count {
      files = replayInputs[k]
    } else {
      do {
        files = try input.expand()
      } catch {
        inputProblem = inputProblem ?? (error as? BigsliceError) ?? .invalidArgument("\(input.op): \(error)")
      }
    }
    expansions.append(files)
    return files
  }

  /// Which shards of `node` read their stored copy.
  private mutating func storedShards(_ node: SliceNode, _ stored: any StoredShards) -> [Bool] {
    let k = storedDecisions.count
    let decision: [Bool]
    if let replay, k < replay.count, replay[k].count == node.shards {
      decision = replay[k]
    } else {
      decision = stored.available(shards: node.shards)
    }
    storedDecisions.append(decision)
    return decision
  }

  /// A new task, numbered in the order of making: the same in every process that compiles the
  /// same invocation.
  private mutating func makeTask(_ chain: [SliceNode], shard: Int) -> ShardTask {
    let task = ShardTask(chain: chain, shard: shard)
    task.ref = TaskRef(invocation: invocation, index: made)
    made += 1
    return task
  }

  /// The tasks computing `node`, one per shard, with every upstream task linked.
  mutating func compile(_ node: SliceNode) -> [ShardTask] {
    if let tasks = compiled[ObjectIdentifier(node)] { return tasks }
    if let tasks = node.resultTasks { return tasks }
    var chain = [node]
    var bottom = node
    while bottom.deps.count == 1, !bottom.deps[0].shuffle, !bottom.deps[0].node.pragma.materialize,
      bottom.deps[0].node.shards == bottom.shards, bottom.deps[0].node.resultTasks == nil
    {
      bottom = bottom.deps[0].node
      chain.append(bottom)
    }
    // Which shards read a stored copy: the topmost node of the chain that has one wins, and
    // its task needs nothing below it.
    var stored: [(Int, [Bool])] = []
    for (i, n) in chain.enumerated() {
      if let shards = n.stored { stored.append((i, storedShards(n, shards))) }
    }
    var inputs: [ObjectIdentifier: [String]] = [:]
    for n in chain {
      if let input = n.inputFiles { inputs[ObjectIdentifier(input)] = expand(input) }
    }
    let tasks = (0..<node.shards).map { shard in
      guard let (i, _) = stored.first(where: { $0.1[shard] }) else {
        let task = makeTask(chain, shard: shard)
        task.inputFiles = inputs
        return task
      }
      let task = makeTask(Array(chain[...i]), shard: shard)
      task.readsStored = true
      task.inputFiles = inputs
      return task
    }
    if tasks.contains(where: { !$0.readsStored }) {
      for dep in bottom.deps {
        let upstream = compileUpstream(dep, into: bottom)
        let shared = dep.shuffle ? TaskDependency(upstream, shuffle: true) : nil
        for task in tasks where !task.readsStored {
          task.deps.append(shared ?? TaskDependency([upstream[task.shard]], shuffle: false))
        }
      }
    }
    compiled[ObjectIdentifier(node)] = tasks
    return tasks
  }

  /// Narrow upstream tasks are shared; a shuffle gets its own copy of the upstream's top
  /// tasks, partitioned (and combined) its way, so two shuffles of one slice never share an
  /// output layout. Everything further upstream is shared.
  private mutating func compileUpstream(_ dep: Dependency, into reader: SliceNode) -> [ShardTask] {
    guard dep.shuffle else { return compile(dep.node) }
    if case .sampled(let partitioning) = dep.partitioner {
      return compileSampled(dep, partitioning, into: reader)
    }
    let tasks = compilePrivate(dep.node)
    let record = reader.combining == nil ? nil : CombineRecord()
    for task in tasks {
      task.partitions = reader.shards
      task.partitioner = dep.partitioner
      task.combining = reader.combining
      task.combineRecord = record
    }
    return tasks
  }

  /// A sampled shuffle: the upstream tasks keep their output whole and sample it; one split
  /// task per upstream task, run once every sample is in, cuts that output into partitions.
  /// (It also depends on every upstream task, for their samples.)
  private mutating func compileSampled(
    _ dep: Dependency, _ partitioning: any SampledPartitioning, into reader: SliceNode
  ) -> [ShardTask] {
    let upstream = compilePrivate(dep.node)
    let split = SampledSplit(upstream: upstream, shards: reader.shards, partitioning: partitioning)
    let node = SliceNode(
      op: "split", location: reader.location, schema: dep.node.schema, shards: dep.node.shards, deps: []
    ) { _, deps, _ in deps[0] }
    let samples = TaskDependency(upstream, shuffle: true)
    return upstream.map { source in
      source.sampledFor = split
      let task = makeTask([node], shard: source.shard)
      task.deps = [TaskDependency([source], shuffle: false), samples]
      task.partitions = reader.shards
      task.partitioner = .split(split)
      return task
    }
  }

  private mutating func compilePrivate(_ node: SliceNode) -> [ShardTask] {
    if let results = node.resultTasks {
      // A result's tasks are shared; its shuffle reads pass-through copies of them.
      return results.map { result in
        let task = makeTask([node], shard: result.shard)
        task.deps = [TaskDependency([result], shuffle: false)]
        return task
      }
    }
    // Compile without the memo for this node, then put the memo back.
    let saved = compiled[ObjectIdentifier(node)]
    compiled[ObjectIdentifier(node)] = nil
    let tasks = compile(node)
    compiled[ObjectIdentifier(node)] = saved
    return tasks
  }
}
