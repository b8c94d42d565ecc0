import Frame
import SliceIO

/// Shards of a slice that can be read from storage instead of computed: how `cache` keeps its
/// shards in files. The compiler asks which shards are there when it compiles a job; the task
/// of such a shard reads it and needs nothing upstream. Any combinator may set a node's
/// `stored`; the runtime knows nothing else of it.
protocol StoredShards: Sendable {
  /// For each of `shards` shards, whether it is stored and is read instead of computed. Asked
  /// once per compile on the driver; machines replay the driver's answer.
  func available(shards: Int) -> [Bool]
  /// A reader of stored shard `shard` of `shards`, whose rows are of `schema`.
  /// - Throws: when the stored shard cannot be opened, naming it.
  func reader(shard: Int, of shards: Int, schema: Schema) throws -> any Reader
}
