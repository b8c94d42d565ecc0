import Frame
import SliceIO
import Synchronization

/// Sections of a shuffle's upstream output files, read a block of neighbouring partitions at a
/// time and kept until each of those partitions' tasks has taken its own. Under a memory limit
/// a many-way shuffle reads about a row per upstream file and partition, and reading each
/// section alone (an open, a read and a close) cost more than its rows.
///
/// Tasks reading a shuffle run in partition order, so a block's other partitions are read soon
/// after it. A packed section (partitions too small for sections of their own) is kept decoded,
/// so that each of its partitions' tasks takes its rows as a slice. What is kept takes at most
/// `limit` bytes; a block or section that does not fit is read and used by its task alone.
final class SectionCache: @unchecked Sendable {
  private struct State {
    /// Blocks of sections of their own, by upstream and block.
    var blocks = KeptForReaders<Int, SectionBlock>()
    /// Packed sections, decoded, by upstream and section.
    var sections = KeptForReaders<Int, PackedSection>()
    var bytes = 0
    /// Partitions per block; 0 until the first file sets it.
    var span = 0
  }

  private let limit: Int
  private let upstreams: Int
  private let state = Mutex(State())

  /// A cache of at most `limit` bytes for the files of `upstreams` tasks.
  init(limit: Int, upstreams: Int) {
    self.limit = limit
    self.upstreams = upstreams
  }

  /// The bytes of the blocks kept.
  var bytes: Int { state.withLock { $0.bytes } }

  /// The most partitions a block spans.
  static let maxSpan = 64

  /// The largest section read whole into memory; a larger one streams (`ShuffleFile.reader`).
  static let largestSection = 1 << 20

  /// Blocks up to this size are read however many upstream files share the cache.
  static let smallestShare = 64 << 10

  /// The rows of partition `p` of `file` (at `place`), the output of the shuffle's upstream
  /// task number `upstream`, as rows of frames and the bytes they take: a packed section's
  /// frame is shared by its partitions' tasks. A section of its own holds at most `largestSection` bytes.
  /// - Throws: what reading or decoding the file throws.
  func pieces(
    _ file: ShuffleFile, at place: ShuffleFile.Place, upstream: Int, partition p: Int
  ) throws -> [(frame: Frame, rows: Range<Int>, bytes: Int)] {
    if place.isEmpty { return [] }
    if place.isShared { return [try packedPiece(file, at: place, upstream: upstream, partition: p)] }
    return try ownSection(file, upstream: upstream, partition: p).map { ($0, 0..<$0.count, $0.byteCount) }
  }

  /// `pieces` of a partition in a packed section (`place.isShared`): always one.
  func packedPiece(
    _ file: ShuffleFile, at place: ShuffleFile.Place, upstream: Int, partition p: Int
  ) throws -> (frame: Frame, rows: Range<Int>, bytes: Int) {
    let section = try packed(file, section: place.section, upstream: upstream, partition: p)
    let rows = section.rows(of: p)
    return (section.frame, rows, section.frameBytes * rows.count / max(section.frame.count, 1))
  }

  /// The frames of partition `p`'s own section.
  private func ownSection(_ file: ShuffleFile, upstream: Int, partition p: Int) throws -> [Frame] {
    let span = state.withLock { s in
      if s.span == 0 {
        // Two blocks of every file may be held at once (tasks straddle a block's end).
        let section = max(file.bytes / max(file.partitions, 1), 1)
        s.span = min(max(limit / (2 * max(upstreams, 1) * section), 1), SectionCache.maxSpan)
      }
      return s.span
    }
    let first = p / span * span
    let end = min(first + span, file.partitions)
    // A block of one partition, or one that a skewed partition makes larger than a share of
    // the cache, is not read: the task reads its own section alone.
    let blockBytes = file.range(end - 1).upperBound - file.range(first).lowerBound
    if span == 1 || blockBytes > max(limit / max(upstreams, 1), SectionCache.smallestShare) {
      return try file.readSections(p..<(p + 1)).frames(p)
    }
    let blocks = (file.partitions + span - 1) / span
    let key = upstream * blocks + p / span
    if let block = state.withLock({ $0.blocks.take(key, total: &$0.bytes) }) {
      return try block.frames(p)
    }
    let block = try file.readSections(first..<end)
    // Partitions in packed sections take their rows from those.
    let left = block.partitions.filter { $0 != p && !block.isEmpty($0) && !file.place($0).isShared }.count
    state.withLock {
      $0.blocks.keep(block, bytes: block.byteCount, left: left, as: key, limit: limit, total: &$0.bytes)
    }
    return try block.frames(p)
  }

  /// The packed section `s` of `file`, which holds partition `p`.
  private func packed(_ file: ShuffleFile, section s: Int, upstream: Int, partition p: Int) throws -> PackedSection {
    let key = upstream * file.partitions + s
    if let kept = state.withLock({ $0.sections.take(key, total: &$0.bytes) }) { return kept }
    let section = try file.readSections(p..<(p + 1)).packedSection(s)
    let left = file.partitions(inSection: s).filter { $0 != p && !file.isEmpty($0) }.count
    state.withLock {
      $0.sections.keep(section, bytes: section.byteCount, left: left, as: key, limit: limit, total: &$0.bytes)
    }
    return section
  }
}
