import Frame
import SliceIO

/// A slice whose shards are produced by `read`, called repeatedly with the shard, its state
/// (made by `initial(shard)`) and an emitter, until it returns false (end of shard). Each call
/// should emit a batch of rows; the rows emitted in one call form one frame.
public func readerFunc<S, each C>(
  _ shards: Int, initial: @escaping @Sendable (Int) throws -> S,
  file: StaticString = #fileID, line: UInt = #line,
  _ read: @escaping @Sendable (_ shard: Int, _ state: inout S, _ out: RowEmitter<repeat each C>) throws -> Bool
) -> Slice<repeat each C> {
  let (types, typeProblem) = columnTypes(repeat (each C).self)
  let problem = typeProblem ?? (shards < 1 ? .invalidArgument("readerFunc needs at least 1 shard, got \(shards)") : nil)
  let node = SliceNode(
    op: "reader", location: location(file, line), schema: Schema(types), shards: max(shards, 1), deps: [],
    problem: problem
  ) { shard, _, _ in
    var state = try initial(shard)
    let emitter = RowEmitter<repeat each C>(types: types, prefix: 1)
    var done = false
    return FunctionReader {
      while !done {
        // A call that emits nothing ends no frame: the run's cancellation is checked here too.
        if TaskContext.current?.isCancelled == true { throw CancellationError() }
        done = try !read(shard, &state, emitter)
        if emitter.count > 0 { return try emitter.frame() }
      }
      return nil
    }
  }
  return Slice(node)
}
