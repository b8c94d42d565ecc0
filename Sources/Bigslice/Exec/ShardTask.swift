import Frame
import Synchronization

/// One unit of work: a pipeline of slice nodes computed for one shard.
///
/// `chain` runs bottom-up: `chain.last` reads the task's dependencies, each earlier node reads
/// the one after it, and `chain[0]` is the slice whose rows the task outputs. The output is
/// cut into `partitions` partitions for the shuffle that reads it (1 when nothing shuffles).
final class ShardTask: @unchecked Sendable {
  let chain: [SliceNode]
  /// `chain.last` reads its stored shard (`SliceNode.stored`) instead of computing it.
  var readsStored = false
  /// The files of the chain's file readers, as this task's compile expanded them.
  var inputFiles: [ObjectIdentifier: [String]] = [:]
  let shard: Int
  /// For each dependency of `chain.last`: the upstream tasks and whether this is a shuffle
  /// (read partition `shard` of every upstream task) or narrow (read its only partition).
  var deps: [TaskDependency] = []
  var partitions = 1
  var partitioner: Partitioner = .hash
  /// Applied map-side to this task's output: the combining of the node that reads it, and
  /// what the map tasks of that shuffle found it achieves.
  var combining: Combining?
  var combineRecord: CombineRecord?
  /// The task's output while it is there (nil: not computed, released or lost). Runs of a
  /// session evaluate at the same time, and a result's tasks are in several of them, so it is
  /// read and set under a lock.
  var output: TaskOutput? {
    get { outputSlot.withLock { $0 } }
    set { outputSlot.withLock { $0 = newValue } }
  }
  private let outputSlot = Mutex<TaskOutput?>(nil)
  /// The task is a root of a `Result`: its output stays in memory until the result is
  /// discarded, and is never released as an interior output of another job.
  var pinned: Bool {
    get { pinnedFlag.load(ordering: .relaxed) }
    set { pinnedFlag.store(newValue, ordering: .relaxed) }
  }
  private let pinnedFlag = Atomic<Bool>(false)
  /// For a task whose output a sampled shuffle splits: the split, which takes a sample of the
  /// output into `sample`.
  var sampledFor: SampledSplit? = nil
  var sample: Frame? = nil

  /// Names the task across processes: the driver and every worker compile an invocation into
  /// the same tasks in the same order.
  var ref = TaskRef(invocation: 0, index: 0)

  /// Unique in the process: names the task in status and trace events.
  let id = ShardTask.ids.add(1, ordering: .relaxed).newValue
  private static let ids = Atomic<Int>(0)

  init(chain: [SliceNode], shard: Int) {
    self.chain = chain
    self.shard = shard
  }

  /// The threads the task takes on a machine of `machine` procs: all of them when a node of
  /// its chain is exclusive, else the largest `procs` pragma of its chain.
  func procs(of machine: Int) -> Int {
    chain.contains { $0.pragma.exclusive } ? machine : chain.map(\.pragma.procs).max() ?? 1
  }

  var name: String { "\(chain.map(\.op).joined(separator: "_"))@\(chain[0].shards):\(shard)" }
  var op: String { chain[0].name }
  /// The operation the task belongs to, for status and traces: the ops of its chain and where
  /// its top slice was made (`count_flatMap_scanReader@Module/File.swift:12`).
  var operation: String { "\(chain.map(\.op).joined(separator: "_"))@\(chain[0].location)" }
}

/// A task's name across processes: its invocation (the session's runs, numbered) and its place
/// in the order that invocation's compile made its tasks.
struct TaskRef: Hashable, Codable, Sendable, CustomStringConvertible {
  var invocation: Int
  var index: Int
  var description: String { "inv\(invocation).\(index)" }
}

/// One dependency of a task: the upstream tasks it reads, and whether it reads partition
/// `shard` of each (a shuffle) or the only partition of one (narrow). Every task reading the
/// same shuffle shares one dependency, so a graph of `n × n` edges takes `O(n)` memory and
/// the evaluator walks each dependency once.
final class TaskDependency: @unchecked Sendable {
  let tasks: [ShardTask]
  let shuffle: Bool
  /// What the tasks reading this dependency share while a round of the evaluator reads it.
  private struct Shared {
    var table: HeldTable.State = .unbuilt
    var sections: SectionCache?
    var holding: UpstreamHolding?
  }

  private let shared = Mutex(Shared())

  init(_ tasks: [ShardTask], shuffle: Bool) {
    self.tasks = tasks
    self.shuffle = shuffle
  }

  /// The outputs of `tasks` as one table of raw chunks, when every one is held in memory with
  /// raw pointers: built by the first reader that asks, shared by the rest. A reader calls
  /// this only once every upstream task is done, and the evaluator drops the table before the
  /// outputs can change (when it releases them, and when a round starts).
  func heldTable() -> HeldTable? {
    shared.withLock { shared in
      if case .unbuilt = shared.table {
        shared.table = HeldTable(tasks, partitions: tasks.first?.partitions ?? 1).map { .built($0) } ?? .unavailable
      }
      if case .built(let table) = shared.table { return table }
      return nil
    }
  }

  /// The cache of the upstream files' sections that the reading tasks share, of at most
  /// `limit` bytes; dropped with the table.
  func sectionCache(limit: Int) -> SectionCache {
    shared.withLock { shared in
      if let cache = shared.sections { return cache }
      let cache = SectionCache(limit: limit, upstreams: tasks.count)
      shared.sections = cache
      return cache
    }
  }

  /// Which upstream outputs may hold each partition's rows: built by the first reader that
  /// asks, once every upstream task is done; dropped with the table.
  func upstreamHolding() -> UpstreamHolding {
    shared.withLock { shared in
      if let holding = shared.holding { return holding }
      let holding = UpstreamHolding(tasks, partitions: tasks.first?.partitions ?? 1)
      shared.holding = holding
      return holding
    }
  }

  /// Forgets the table, the section cache and the holding bits (and the references they hold
  /// to the outputs).
  func dropShared() { shared.withLock { $0 = Shared() } }
}
