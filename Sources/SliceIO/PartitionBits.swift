/// A bit per partition of a task's output, set for those holding rows: what a reader needs to
/// skip the empty ones without opening anything. A many-way shuffle keeps one per task, so it
/// takes a bit per partition, not the bytes each holds.
public struct PartitionBits: Sendable, Equatable, Codable {
  /// The number of partitions.
  public let count: Int
  private var words: [UInt64]

  /// `count` partitions, none holding rows.
  public init(count: Int) {
    precondition(count >= 0, "a negative partition count")
    self.count = count
    words = [UInt64](repeating: 0, count: (count + 63) >> 6)
  }

  /// The partitions `0..<count` for which `holdsRows` is true.
  public init(count: Int, where holdsRows: (Int) -> Bool) {
    self.init(count: count)
    for p in 0..<count where holdsRows(p) { insert(p) }
  }

  /// Whether partition `p` holds rows.
  @inline(__always)
  public subscript(p: Int) -> Bool {
    precondition(p >= 0 && p < count, "partition \(p) of \(count)")
    return words[p >> 6] & (1 << UInt64(p & 63)) != 0
  }

  /// Marks partition `p` as holding rows.
  /// The partitions in the set, in order.
  public var members: Members { Members(words: words) }

  /// The partitions in a `PartitionBits`, in order.
  public struct Members: Sequence, IteratorProtocol {
    fileprivate let words: [UInt64]
    private var w = 0
    private var rest: UInt64

    fileprivate init(words: [UInt64]) {
      self.words = words
      rest = words.first ?? 0
    }

    public mutating func next() -> Int? {
      while rest == 0 {
        w += 1
        guard w < words.count else { return nil }
        rest = words[w]
      }
      defer { rest &= rest - 1 }
      return w << 6 + rest.trailingZeroBitCount
    }
  }

  public mutating func insert(_ p: Int) {
    precondition(p >= 0 && p < count, "partition \(p) of \(count)")
    words[p >> 6] |= 1 << UInt64(p & 63)
  }

  /// How many of `partitions` hold rows.
  public func count(in partitions: Range<Int>) -> Int {
    precondition(partitions.lowerBound >= 0 && partitions.upperBound <= count, "partitions \(partitions) of \(count)")
    var n = 0
    var p = partitions.lowerBound
    while p < partitions.upperBound {
      let bit = p & 63
      let take = min(64 - bit, partitions.upperBound - p)
      let mask = take == 64 ? UInt64.max : ((1 << UInt64(take)) - 1) << UInt64(bit)
      n += (words[p >> 6] & mask).nonzeroBitCount
      p += take
    }
    return n
  }

  public init(from decoder: any Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    count = try container.decode(Int.self, forKey: .count)
    words = try container.decode([UInt64].self, forKey: .words)
    guard count >= 0, words.count == (count + 63) >> 6 else {
      throw DecodingError.dataCorruptedError(
        forKey: .words, in: container, debugDescription: "\(words.count) words for \(count) partitions")
    }
    if count & 63 != 0, words[words.count - 1] >> UInt64(count & 63) != 0 {
      throw DecodingError.dataCorruptedError(
        forKey: .words, in: container, debugDescription: "bits set past partition \(count - 1)")
    }
  }

  private enum CodingKeys: String, CodingKey {
    case count
    case words
  }
}
