import SliceIO

extension Slice {
  /// The first `n` rows of each shard.
  public func head(_ n: Int, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    narrow(
      "head", schema: schema, problem: n < 0 ? .invalidArgument("head needs n >= 0, got \(n)") : nil, file: file,
      line: line
    ) {
      _, input in
      var left = max(n, 0)
      return FunctionReader {
        guard left > 0, let frame = try input.read() else { return nil }
        let take = min(left, frame.count)
        left -= take
        return frame.slice(0..<take)
      }
    }
  }
}
