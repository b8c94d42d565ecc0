import SliceIO

/// Which upstream outputs of a shuffle may hold each partition's rows: a bit per (partition,
/// upstream), partition by partition. A task reading a many-way shuffle on disk skips the
/// upstream outputs holding none of its rows by scanning its partition's words, instead of
/// visiting each output (4096 × 4096 visits, most finding nothing, for 2M rows on 4096
/// shards). An output that is not a file of this process counts as holding every partition,
/// so it is visited as before. The bits take partitions × upstreams / 8 bytes.
final class UpstreamHolding: @unchecked Sendable {
  /// Partition `p`'s words are `bits[p * words ..< (p + 1) * words]`; upstream `i` is bit
  /// `i & 63` of word `i >> 6`.
  private let bits: UnsafeMutablePointer<UInt64>
  private let words: Int
  private let partitions: Int
  let upstreams: Int

  /// The bits of `tasks`' outputs, cut into `partitions` partitions.
  init(_ tasks: [ShardTask], partitions: Int) {
    upstreams = tasks.count
    self.partitions = partitions
    words = (tasks.count + 63) >> 6
    let count = max(words * partitions, 1)
    bits = .allocate(capacity: count)
    bits.initialize(repeating: 0, count: count)
    for (i, task) in tasks.enumerated() {
      let word = i >> 6
      let bit = UInt64(1) << UInt64(i & 63)
      if case .file(let file)? = task.output?.storage, file.partitions == partitions {
        for p in file.holding.members { bits[p * words + word] |= bit }
      } else {
        for p in 0..<partitions { bits[p * words + word] |= bit }
      }
    }
  }

  deinit { bits.deallocate() }

  /// The first upstream from `i` on that may hold rows of partition `p`; `upstreams` when
  /// none does.
  func next(_ p: Int, from i: Int) -> Int {
    precondition(p >= 0 && p < partitions, "partition \(p) of \(partitions)")
    guard i < upstreams else { return upstreams }
    let row = bits + p * words
    var w = i >> 6
    var word = row[w] & (UInt64.max << UInt64(i & 63))
    while word == 0 {
      w += 1
      if w == words { return upstreams }
      word = row[w]
    }
    return w << 6 + word.trailingZeroBitCount
  }
}
