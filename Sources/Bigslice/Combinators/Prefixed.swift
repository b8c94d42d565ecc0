import Frame
import SliceIO

extension Slice {
  /// The same rows with the first `prefix` columns as the key.
  public func prefixed(_ prefix: Int, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    let count = schema.count
    let problem: BigsliceError? =
      prefix < 1 || prefix > count ? .invalidArgument("prefix \(prefix) out of 1...\(count)") : nil
    return narrow("prefixed", schema: Schema(schema.types, prefix: prefix), problem: problem, file: file, line: line) {
      _, input in TransformReader(input) { try Frame($0.columns, prefix: prefix) }
    }
  }
}

extension Slice {
  /// The key prefix reset to the first column (the inverse of `prefixed`).
  public func unwrap(file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    prefixed(1, file: file, line: line)
  }
}
