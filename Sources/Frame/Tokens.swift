#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

extension Column {
  /// The tokens of every value of this `.string` or `.bytes` column, split at each
  /// `separator` byte with empty tokens dropped, in order, as a new column of the same type.
  /// One pass over the bytes: no closure, `String` or allocation per row or token. For
  /// UTF-8 text any ASCII separator splits between characters.
  public func splitTokens(separator: UInt8) -> Column { splitTokens(OneByte(byte: separator)) }

  /// The tokens of every value, split at runs of ASCII whitespace (space, tab, line feed,
  /// vertical tab, form feed, carriage return), as Go's `strings.Fields` splits ASCII text;
  /// other Unicode spaces are not separators. As `splitTokens(separator:)` otherwise.
  public func splitWhitespace() -> Column { splitTokens(ASCIIWhitespace()) }

  private func splitTokens<S: TokenSeparators>(_ separators: S) -> Column {
    let view = variableWidth
    let first = Int(view.offsets[0])
    let total = Int(view.offsets[count]) - first
    let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(total, 1))
    // A token takes a byte and is followed by a separator or a row's end, so a row of b bytes
    // has at most (b + 1) / 2 tokens.
    let capacity = (total + count) / 2 + 1
    let offsets = UnsafeMutablePointer<Int64>.allocate(capacity: capacity + 1)
    offsets[0] = 0
    var tokens = 0
    var written = 0
    for row in 0..<count {
      var at = Int(view.offsets[row])
      let end = Int(view.offsets[row + 1])
      while at < end {
        if separators.isSeparator(view.bytes[at]) {
          at += 1
          continue
        }
        let stop = separators.next(in: view.bytes, from: at, to: end)
        (bytes + written).update(from: view.bytes + at, count: stop - at)
        written += stop - at
        tokens += 1
        offsets[tokens] = Int64(written)
        at = stop
      }
    }
    let storage = BytesStorage(offsets: offsets, rows: tokens, bytes: bytes, byteCount: written)
    return Column(type: type, count: tokens, offset: 0, storage: .bytes(storage))
  }
}

/// The bytes that separate tokens; specialised per conformer, so the scan has no call per byte.
private protocol TokenSeparators {
  func isSeparator(_ byte: UInt8) -> Bool
  /// The first separator in `bytes[from ..< to]`, or `to`.
  func next(in bytes: UnsafePointer<UInt8>, from: Int, to: Int) -> Int
}

private struct OneByte: TokenSeparators {
  let byte: UInt8

  @inline(__always) func isSeparator(_ b: UInt8) -> Bool { b == byte }

  @inline(__always) func next(in bytes: UnsafePointer<UInt8>, from: Int, to: Int) -> Int {
    guard let found = memchr(bytes + from, Int32(byte), to - from) else { return to }
    return UnsafeRawPointer(bytes).distance(to: UnsafeRawPointer(found))
  }
}

private struct ASCIIWhitespace: TokenSeparators {
  /// Space, or tab through carriage return (9 ... 13).
  @inline(__always) func isSeparator(_ b: UInt8) -> Bool { b == 32 || b &- 9 < 5 }

  @inline(__always) func next(in bytes: UnsafePointer<UInt8>, from: Int, to: Int) -> Int {
    var at = from
    while at < to && !isSeparator(bytes[at]) { at += 1 }
    return at
  }
}
