import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// How rows of an upstream slice reach the shards of a downstream one.
enum Partitioner: Sendable {
  /// By the hash of the key: `(hash(key) * shards) >> 64`.
  case hash
  /// By a user function of the row, returning the shard.
  case custom(@Sendable (Frame, Int) throws -> [UInt32])
  /// By a function that `SampledPartitioning` makes from a sample of every upstream output
  /// (`sorted` cuts by key ranges so). The compiler turns it into a `.split` of each upstream
  /// output, run once all of them are computed.
  case sampled(any SampledPartitioning)
  /// By the function of one compiled sampled shuffle.
  case split(SampledSplit)
}

/// A slice's edge to one of its inputs.
struct Dependency: Sendable {
  let node: SliceNode
  /// Shard i reads partition i of every upstream shard (a shuffle), instead of shard i of
  /// the upstream (a narrow, pipelined edge).
  let shuffle: Bool
  let partitioner: Partitioner
}

/// The untyped graph node behind every `Slice`: its schema, shards, inputs, and a reader for
/// each shard given readers of its inputs.
@usableFromInline
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
  var resultTasks: [ShardTask]? = nil
  /// Shards of this slice kept in storage, read instead of computed where present (`cache`).
  var stored: (any StoredShards)? = nil
  /// The paths this slice reads, expanded into files by each compile (`scanReader`,
  /// `readDelimited`).
  var inputFiles: InputFiles? = nil
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
