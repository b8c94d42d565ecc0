import Frame
import SliceIO

/// Spills rows into `fanOut` files by bits of their key's combining hash: the grace-hash split
/// behind the combiner's and cogroup's spills. Level `l` takes bits `64 - 4(l+1) ..< 64 - 4l`,
/// so a bucket split again at the next level divides its keys evenly, and no key is ever in
/// two buckets of one level: each bucket can be finished on its own, with no sort or merge.
final class HashBuckets {
  /// Bits per level, buckets per split, and the level past which a bucket is held in memory
  /// whatever its size (16^6 buckets: only a few very heavy keys get there).
  static let bits = 4
  static let fanOut = 1 << bits
  static let maxLevel = 6
  /// Rows hashed and cut at once, so a big frame is copied in small pieces.
  static let chunk = 65_536

  private let schema: Schema
  private let store: OutputStore
  private let level: Int
  private let encoder: FrameEncoder
  private var writers: [SpillWriter?] = Array(repeating: nil, count: HashBuckets.fanOut)

  /// Buckets for rows of `schema` at `level`, in `store`'s spill directory; `encoder` may be
  /// shared with the task's other spill files.
  init(schema: Schema, store: OutputStore, level: Int, encoder: FrameEncoder) {
    self.schema = schema
    self.store = store
    self.level = level
    self.encoder = encoder
  }

  /// The bucket of each key hash at `level`.
  static func bucketIDs(_ hashes: [UInt64], level: Int) -> [UInt32] {
    let shift = UInt64(64 - bits * (level + 1))
    let mask = UInt64(fanOut - 1)
    return hashes.map { UInt32(truncatingIfNeeded: ($0 >> shift) & mask) }
  }

  func write(_ frame: Frame) throws {
    var start = 0
    while start < frame.count {
      let end = min(start + HashBuckets.chunk, frame.count)
      let piece = start == 0 && end == frame.count ? frame : frame.slice(start..<end)
      let ids = HashBuckets.bucketIDs(try piece.hashKeys(seed: combineSeed), level: level)
      for (b, part) in piece.partition(ids: ids, into: HashBuckets.fanOut).enumerated() where part.count > 0 {
        if writers[b] == nil {
          writers[b] = try SpillWriter(
            directory: try store.spillDirectory(), schema: schema, prefix: "bucket", encoder: encoder)
        }
        try writers[b]!.write(part)
      }
      start = end
    }
  }

  /// The bucket files, nil where a bucket got no rows; counted as spilled.
  func finish() throws -> [SpillFile?] {
    defer { writers = [] }
    return try writers.map { writer in
      guard let writer else { return nil }
      let file = try writer.finish()
      store.spilled(file)
      return file
    }
  }
}
