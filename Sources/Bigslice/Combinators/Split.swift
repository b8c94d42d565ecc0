import Frame
import SliceIO

extension SliceProtocol {
  /// The words of every string: each split at runs of ASCII whitespace (space, tab, newline,
  /// vertical tab, form feed, carriage return), as Go's `strings.Fields` splits ASCII text;
  /// other Unicode spaces stay inside words. A built-in kernel, column-at-a-time with no
  /// closure or `String` per row: the fast way to tokenize lines
  /// (`scanReader(…).split().count()`).
  public func split(file: StaticString = #fileID, line: UInt = #line) -> Slice<String> where Self == Slice<String> {
    self.narrow("split", schema: Schema([.string]), file: file, line: line) { _, input in
      TransformReader(input) { frame in try Frame([frame.columns[0].splitWhitespace()]) }
    }
  }

  /// The words of every string, split at each `separator` (one ASCII character), empty words
  /// dropped. As `split()` otherwise.
  public func split(separator: Unicode.Scalar, file: StaticString = #fileID, line: UInt = #line) -> Slice<String>
  where Self == Slice<String> {
    let problem: BigsliceError? =
      separator.isASCII
      ? nil : .invalidArgument("split needs an ASCII separator, got \(separator.escaped(asASCII: true))")
    let byte = UInt8(truncatingIfNeeded: separator.value)
    return self.narrow("split", schema: Schema([.string]), problem: problem, file: file, line: line) { _, input in
      TransformReader(input) { frame in try Frame([frame.columns[0].splitTokens(separator: byte)]) }
    }
  }
}
