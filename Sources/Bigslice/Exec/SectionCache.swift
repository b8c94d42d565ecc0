import Frame
import SliceIO
import Synchronization

/// Sections of a shuffle's upstream output files, read a block of neighbouring partitions at a
/// time and kept until each of those partitions' tasks has taken its own. Under a memory limit
/// a many-way shuffle reads about a row per upstream file and partition, and reading each
/// section alone (an open, a read and a close) cost more than its rows.
///
/// Tasks reading a shuffle run in partition order, so a block's other partitions are read soon
/// after it. The blocks kept take at most `limit` bytes; a block that does not fit is read and
/// used by its task alone.
final class SectionCache: @unchecked Sendable {
  private struct Entry {
    let block: SectionBlock
    /// The block's partitions with rows whose tasks have not taken their section yet.
    var left: Int
  }

  private struct State {
    var entries: [Int: Entry] = [:]
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

  /// The frames of partition `p` of `file`, the output of the shuffle's upstream task number
  /// `upstream`. The partition must have rows, and at most `largestSection` bytes.
  /// - Throws: what reading or decoding the file throws.
  func frames(_ file: ShuffleFile, upstream: Int, partition p: Int) throws -> [Frame] {
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
    if let block = state.withLock({ take(key, from: &$0) }) { return try block.frames(p) }
    let block = try file.readSections(first..<end)
    let left = block.partitions.filter { $0 != p && !block.isEmpty($0) }.count
    state.withLock { s in
      if s.entries[key] != nil {
        // Another task read the same block meanwhile and kept it: this partition is taken.
        _ = take(key, from: &s)
      } else if left > 0, s.bytes + block.byteCount <= limit {
        s.entries[key] = Entry(block: block, left: left)
        s.bytes += block.byteCount
      }
    }
    return try block.frames(p)
  }

  /// The block `key`, with one more of its partitions taken (it goes once all are).
  private func take(_ key: Int, from s: inout State) -> SectionBlock? {
    guard var entry = s.entries[key] else { return nil }
    entry.left -= 1
    if entry.left == 0 {
      s.entries[key] = nil
      s.bytes -= entry.block.byteCount
    } else {
      s.entries[key] = entry
    }
    return entry.block
  }
}
