import Frame
import SliceIO

/// The rows of one shard, read as typed tuples (`next()`) or whole frames (`nextFrame()`).
public final class RowScanner<each C> {
  private let input: any Reader
  private var frame: Frame?
  private var getters: Getters<repeat each C>?
  private var row = 0

  init(_ input: any Reader) { self.input = input }

  /// The next row, or nil at the end of the shard.
  /// - Throws: what reading the shard throws (a failed upstream operation, a damaged file).
  public func next() throws -> (repeat each C)? {
    while frame == nil || row == frame!.count {
      guard let next = try input.read() else { return nil }
      frame = next
      row = 0
      getters = next.count > 0 ? Getters<repeat each C>(next) : nil
    }
    let g = getters!.getters
    defer { row += 1 }
    return (repeat (each g).get(row))
  }

  /// The rest of the current frame (or the next frame), for column-at-a-time work; nil at
  /// the end of the shard.
  public func nextFrame() throws -> Frame? {
    if let frame, row < frame.count {
      defer { self.frame = nil }
      return frame.slice(row..<frame.count)
    }
    frame = nil
    return try input.read()
  }
}

extension Slice {
  /// Runs `f` once per shard with a scanner of the shard's rows, for its side effects (the
  /// original's `Scan`). The slice has no columns and no rows; run it to run `f`.
  /// - Note: `f` runs on a task thread, concurrently for different shards.
  public func scan(
    file: StaticString = #fileID, line: UInt = #line,
    _ f: @escaping @Sendable (_ shard: Int, _ rows: RowScanner<repeat each C>) throws -> Void
  ) -> Slice<> {
    narrow("scan", schema: Schema([], prefix: 0), file: file, line: line) { shard, input in
      var done = false
      return FunctionReader {
        if !done {
          done = true
          try f(shard, RowScanner<repeat each C>(input))
        }
        return nil
      }
    }
  }
}
