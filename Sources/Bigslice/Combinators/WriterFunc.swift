import Frame
import SliceIO

extension Slice {
  /// The same rows, passed through unchanged, after `write` has seen each batch. `write` is
  /// called with the shard, its state (made by `initial(shard)`), the batch, and nil; at the
  /// end once more with a nil batch and the error that ended the shard, or nil when it ended
  /// normally. A throw from `write` fails the task.
  public func writerFunc<S>(
    initial: @escaping @Sendable (Int) throws -> S, file: StaticString = #fileID, line: UInt = #line,
    _ write:
      @escaping @Sendable (_ shard: Int, _ state: inout S, _ batch: RowBatch<repeat each C>?, _ error: Error?) throws
      -> Void
  ) -> Slice<repeat each C> {
    narrow("writer", schema: schema, file: file, line: line) { shard, input in
      var state = try initial(shard)
      return FunctionReader {
        let frame: Frame?
        do {
          frame = try input.read()
        } catch {
          try write(shard, &state, nil, error)
          throw error
        }
        guard let frame else {
          try write(shard, &state, nil, nil)
          return nil
        }
        try write(shard, &state, RowBatch<repeat each C>(frame), nil)
        return frame
      }
    }
  }
}
