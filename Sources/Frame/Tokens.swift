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
  public func splitTokens(separator: UInt8) -> Column {
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
    let sep = Int32(separator)
    for row in 0..<count {
      var at = Int(view.offsets[row])
      let end = Int(view.offsets[row + 1])
      while at < end {
        if view.bytes[at] == separator {
          at += 1
          continue
        }
        let found = memchr(view.bytes + at, sep, end - at)
        let stop = found.map { UnsafeRawPointer(view.bytes).distance(to: UnsafeRawPointer($0)) } ?? end
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
