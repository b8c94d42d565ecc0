import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// Hints for scheduling a slice's tasks.
public struct Pragma: Sendable, Hashable {
  /// The task wants a whole machine.
  public var exclusive = false
  /// Procs the task uses (clamped to a machine's).
  public var procs = 1
  /// Break pipelining: materialise this slice's output.
  public var materialize = false

  public init(exclusive: Bool = false, procs: Int = 1, materialize: Bool = false) {
    self.exclusive = exclusive
    self.procs = max(1, procs)
    self.materialize = materialize
  }

  public static let exclusive = Pragma(exclusive: true)
  public static func procs(_ n: Int) -> Pragma { Pragma(procs: n) }
  public static let materialize = Pragma(materialize: true)
}

/// How rows of an upstream slice reach the shards of a downstream one.
enum Partitioner: Sendable {
  /// By the hash of the key: `(hash(key) * shards) >> 64`.
  case hash
  /// By a user function of the row, returning the shard.
  case custom(@Sendable (Frame, Int) throws -> [UInt32])
  /// By key range, with splitters sampled from the upstream output (`sorted`). The compiler
  /// turns it into a `.split` of each upstream output once all of it is computed.
  case range
  /// By key range, with the splitters of `RangeSplit`.
  case split(RangeSplit)
}

/// A slice's edge to one of its inputs.
struct Dependency: Sendable {
  let node: SliceNode
  /// Shard i reads partition i of every upstream shard (a shuffle), instead of shard i of
  /// the upstream (a narrow, pipelined edge).
  let shuffle: Bool
  let partitioner: Partitioner
}

/// How the shuffle into a node combines rows with equal keys, map-side and reduce-side.
enum Combining: @unchecked Sendable {
  /// Built-in aggregates over `Int64` / `Double` value columns, in C.
  case builtIn(Combiner.Aggregate, ScalarKind)
  /// A user closure over one value column, folded per key by an accumulator that the
  /// factory makes for each task (and again for each reading shard).
  case closure(@Sendable () throws -> any KeyedAccumulator)
}

/// Folds (key, value) rows into one row per key, frame by frame.
protocol KeyedAccumulator: AnyObject {
  func add(_ frame: Frame) throws
  /// One row per key, or nil when nothing was added; the accumulator is then empty again and
  /// takes more rows, including rows it returned before (the output has the input's schema).
  func finish() throws -> Frame?
  /// The memory it holds, in bytes.
  var byteCount: Int { get }
  /// How many new keys it can take before it would hold more than `limit` bytes, counting
  /// the moment it grows; 0 when it must be finished first.
  func room(within limit: Int) -> Int
}

extension KeyedAccumulator {
  /// Accumulators that buffer rows and compact them grow by the rows added, not by doubling:
  /// a whole frame goes in while they are under the limit.
  func room(within limit: Int) -> Int { byteCount < limit ? Int.max : 0 }
}

/// The untyped graph node behind every `Slice`: its schema, shards, inputs, and a reader for
/// each shard given readers of its inputs.
final class SliceNode: @unchecked Sendable {
  let op: String
  let location: String
  let schema: Schema
  let shards: Int
  let deps: [Dependency]
  let pragma: Pragma
  /// Combines rows of equal keys on the way into this node (map-side in every upstream task,
  /// and again on read).
  let combining: Combining?
  /// A problem found while the slice was built (an unsupported column type, say), raised
  /// when the slice runs.
  let problem: BigsliceError?
  /// For the slice of a computed `Result`: its tasks, whose outputs the node reads instead of
  /// computing anything.
  var resultTasks: [Task]? = nil
  /// For a cached slice: where its shards' files are.
  var cache: CacheSpec? = nil
  /// The reader of shard `shard`, given one reader per dependency.
  let reader: @Sendable (_ shard: Int, _ deps: [any Reader], _ context: TaskContext) throws -> any Reader

  init(
    op: String, location: String, schema: Schema, shards: Int, deps: [Dependency], pragma: Pragma = Pragma(),
    combining: Combining? = nil, problem: BigsliceError? = nil,
    reader: @escaping @Sendable (_ shard: Int, _ deps: [any Reader], _ context: TaskContext) throws -> any Reader
  ) {
    self.op = op
    self.location = location
    self.schema = schema
    self.shards = shards
    self.deps = deps
    self.pragma = pragma
    self.combining = combining
    self.problem = problem ?? deps.lazy.compactMap(\.node.problem).first
    self.reader = reader
  }

  /// `op@location`, for errors and status.
  var name: String { "\(op)@\(location)" }
}

/// What a running task's user code can see: its shard and its metric counters.
///
/// User closures reach it with `TaskContext.current`: a task runs on one thread from start to
/// end, and the executor sets the context for that thread while the task runs.
public final class TaskContext: @unchecked Sendable {
  /// The shard this task computes.
  public let shard: Int
  let counters: Counters
  /// The executor's store, for operators that spill.
  let store: OutputStore?
  /// What the task reads from its inputs and writes to its output.
  let io: TaskIOMeter
  /// The task's only node writes its rows straight to files (a machine's store): an operator
  /// may then keep list columns packed, as they are coded (see `Column.packedLists`).
  var rowsOnlyEncoded = false

  init(shard: Int, counters: Counters, store: OutputStore? = nil, io: TaskIOMeter = TaskIOMeter()) {
    self.shard = shard
    self.counters = counters
    self.store = store
    self.io = io
  }

  /// Adds `n` to the counter `name` of this task; counters are merged across tasks into the
  /// result's `metrics`.
  public func increment(_ name: String, by n: Int = 1) { counters.add(name, n) }

  /// The context of the task running on this thread, nil outside a task.
  public static var current: TaskContext? {
    guard let raw = pthread_getspecific(contextKey) else { return nil }
    return Unmanaged<TaskContext>.fromOpaque(raw).takeUnretainedValue()
  }

  /// Runs `body` with `self` as the thread's current context.
  func with<T>(_ body: () throws -> T) rethrows -> T {
    let previous = pthread_getspecific(contextKey)
    pthread_setspecific(contextKey, Unmanaged.passUnretained(self).toOpaque())
    defer { pthread_setspecific(contextKey, previous) }
    return try withExtendedLifetime(self) { try body() }
  }
}

/// The thread-local slot of `TaskContext.current`.
private let contextKey: pthread_key_t = {
  var key = pthread_key_t()
  pthread_key_create(&key, nil)
  return key
}()
