import Frame
import SliceIO
import Synchronization

/// Combines rows of equal keys as they arrive: built-in aggregates in a C combiner, a user
/// closure in its accumulator. Either holds one row per distinct key, up to `limit` bytes:
/// rows go in, in chunks no larger than the accumulator has room for, so its table never grows
/// past the limit (a quarter of which stays free for the copy a drain makes).
///
/// At the limit, what is combined so far leaves memory:
/// - map-side (`overflow` given), it goes straight to the task's output partitions: the
///   reduce side combines again, so nothing needs merging here. When that first drain finds
///   the rows barely reduced (more than `bypassRatio` groups per row), combining is not worth
///   its table: the table is freed and the rest of the rows pass through uncombined. The
///   map tasks of one shuffle share what they found (`CombineRecord`): once the keys of the
///   tasks before barely reduced, a task passes its rows through from the start;
/// - reduce-side, it is cut by the top bits of the combining hash into `HashBuckets` files,
///   and so is everything combined after it. `finish` then combines bucket by bucket, each a
///   fraction of the keys, splitting a bucket that is still too big by the next bits. No
///   bucket shares a key with another, so the output needs no sort and no merge.
final class CombineBuffer {
  /// Nil once map-side combining has been bypassed.
  private var accumulator: (any KeyedAccumulator)?
  private let schema: Schema
  private let store: OutputStore?
  private let limit: Int
  private let overflow: ((Frame) throws -> Void)?
  private let level: Int
  private var buckets: HashBuckets?
  /// One encoder for every bucket file.
  private lazy var encoder = FrameEncoder()
  /// Rows added since the last drain.
  private var rowsSinceDrain = 0

  /// Map-side combining stops when a full table holds more groups per row added than this.
  static let bypassRatio = 0.5
  /// Rows a chunk holds at least, room or not (a tiny limit still makes progress).
  static let minimumChunk = 1024

  /// A buffer for `combining` rows of `schema`, spilling beyond `store.workingLimit` bytes
  /// (never without a store); map-side with `overflow`, where `record` (shared by the
  /// shuffle's map tasks) may say to pass the rows through uncombined from the start.
  convenience init(
    _ combining: Combining, schema: Schema, store: OutputStore? = nil, overflow: ((Frame) throws -> Void)? = nil,
    record: CombineRecord? = nil
  ) throws {
    let skip = overflow != nil && record?.shouldCombine() == false
    // A map task starts with a table the size the tasks before it needed, so it does not
    // grow (rehash and fault in fresh memory) to the same size again.
    let expected = CombineBuffer.presize(overflow == nil ? 0 : record?.groupsSeen ?? 0, limit: store?.workingLimit)
    try self.init(
      accumulator: skip
        ? nil : try combining.accumulator(keyTypes: Array(schema.types[..<schema.prefix]), expectedGroups: expected),
      schema: schema, store: store, overflow: overflow, level: 0)
    self.record = overflow == nil ? nil : record
    if skip { store?.spilled(SpillCounts(bypasses: 1)) }
  }

  private init(
    accumulator: (any KeyedAccumulator)?, schema: Schema, store: OutputStore?, overflow: ((Frame) throws -> Void)?,
    level: Int
  ) throws {
    self.accumulator = accumulator
    self.schema = schema
    self.store = store
    self.overflow = overflow
    self.level = level
    limit = level < HashBuckets.maxLevel ? (store?.workingLimit ?? Int.max) : Int.max
  }

  /// Bytes a group is taken to hold in a table sized in advance: a table slot and a half at
  /// the table's load, its hash, key and an aggregate or two.
  static let presizedGroupBytes = 96

  /// The groups to size a new table for, from `groups` seen by earlier tasks: never fewer
  /// than a combiner starts with, and under a memory limit no more than a quarter of
  /// `limit` holds.
  static func presize(_ groups: Int, limit: Int?) -> Int {
    let least = 1024
    guard groups > least else { return least }
    guard let limit, limit != Int.max else { return groups }
    return max(least, min(groups, limit / 4 / presizedGroupBytes))
  }

  /// Map-side: where this task reports how much its keys reduced.
  private var record: CombineRecord?

  func add(_ frame: Frame) throws {
    guard frame.count > 0 else { return }
    // Rows keep their key as the schema says, whatever prefix a reader gave their frame.
    let frame = frame.prefix == schema.prefix ? frame : try Frame(frame.columns, prefix: schema.prefix)
    guard let accumulator else { return try overflow!(frame) }
    // The limit a drain's copy leaves for the table itself.
    let tableLimit = limit == Int.max ? limit : limit - limit / 4
    var start = 0
    var drained = false
    while start < frame.count {
      let rest = frame.count - start
      let room = accumulator.room(within: tableLimit)
      if room < min(rest, CombineBuffer.minimumChunk) && !drained && canSpill {
        try spill()
        drained = true
        if self.accumulator == nil { return try overflow!(frame.slice(start..<frame.count)) }
        continue
      }
      let n = min(rest, max(room, CombineBuffer.minimumChunk))
      try accumulator.add(n == frame.count ? frame : frame.slice(start..<start + n))
      rowsSinceDrain += n
      start += n
      drained = false
    }
    if accumulator.byteCount > limit && canSpill { try spill() }
  }

  /// Whether anything can leave memory: without a store, there is nowhere to spill to.
  private var canSpill: Bool { overflow != nil || store != nil }

  /// `frame` in slices of `HashBuckets.chunk` rows: what reads them (partitioning, hashing)
  /// then works in scratch memory that stays in cache and is reused, not in fresh pages as
  /// large as every group.
  private static func pieces(of frame: Frame) -> [Frame] {
    guard frame.count > HashBuckets.chunk else { return [frame] }
    return stride(from: 0, to: frame.count, by: HashBuckets.chunk).map {
      frame.slice($0..<min($0 + HashBuckets.chunk, frame.count))
    }
  }

  /// Moves what is combined so far out of memory.
  private func spill() throws {
    guard canSpill, let accumulator, let combined = try accumulator.finish() else { return }
    let rows = rowsSinceDrain
    rowsSinceDrain = 0
    if let overflow {
      record?.add(rows: rows, groups: combined.count)
      record = nil
      if Double(combined.count) > CombineBuffer.bypassRatio * Double(rows) {
        self.accumulator = nil
        store?.spilled(SpillCounts(bypasses: 1))
      }
      for piece in Self.pieces(of: combined) { try overflow(piece) }
      return
    }
    if buckets == nil { buckets = HashBuckets(schema: schema, store: store!, level: level, encoder: encoder) }
    try buckets!.write(combined)
    store!.spilled(SpillCounts(runs: 1))
  }

  /// The combined rows, one per key; map-side, only what is left after the overflows.
  func finish() throws -> any Reader {
    guard let accumulator else { return FrameReader([]) }
    guard let buckets else {
      let combined = try accumulator.finish()
      if let combined { record?.add(rows: rowsSinceDrain, groups: combined.count) }
      return FrameReader(combined.map(Self.pieces) ?? [])
    }
    try spill()
    let files = try buckets.finish().compactMap { $0 }
    self.buckets = nil
    return BucketCombineReader(
      files, accumulator: accumulator, schema: schema, store: store!, level: level + 1)
  }

  /// Combines spilled buckets one at a time, each in a buffer of the next level.
  private final class BucketCombineReader: Reader {
    private var files: [SpillFile]
    private let accumulator: any KeyedAccumulator
    private let schema: Schema
    private let store: OutputStore
    private let level: Int
    private var current: (any Reader)?

    init(_ files: [SpillFile], accumulator: any KeyedAccumulator, schema: Schema, store: OutputStore, level: Int) {
      self.files = files.reversed()
      self.accumulator = accumulator
      self.schema = schema
      self.store = store
      self.level = level
    }

    func read() throws -> Frame? {
      while true {
        if let frame = try current?.read() { return frame }
        current = nil
        // The file goes (and is removed) once its rows are combined.
        guard let file = files.popLast() else { return nil }
        let buffer = try CombineBuffer(
          accumulator: accumulator, schema: schema, store: store, overflow: nil, level: level)
        let rows = try file.reader()
        while let frame = try rows.read() { try buffer.add(frame) }
        current = try buffer.finish()
      }
    }
  }
}

/// How much the keys of a shuffle's map tasks reduced, shared by those tasks: once the tasks
/// that combined found more than `skipRatio` groups per row, a new task passes its rows
/// through uncombined (the reduce side combines them), except every `probeEvery`-th, which
/// combines to see whether that still holds. A task of a few thousand rows of barely
/// repeating keys (a shuffle of many shards) otherwise fills and drains a table it gains
/// little from.
final class CombineRecord: Sendable {
  private struct State {
    /// Tasks that combined and reported, and the groups per row they found (a running
    /// average weighing the latest report as much as all before it).
    var reports = 0
    var ratio = 0.0
    var started = 0
    /// The most groups a task reported.
    var groups = 0
  }
  private let state = Mutex(State())

  /// Tasks that combine and report before any task passes its rows through.
  static let reportsBeforeSkipping = 2
  /// Every this many tasks, one combines anyway.
  static let probeEvery = 8
  /// Tasks skip combining once those before found more groups per row than this: combining
  /// saves less than a tenth of the rows (held, written and read), and costs a table insert
  /// per row.
  static let skipRatio = 0.9

  /// Whether a task starting now should combine.
  func shouldCombine() -> Bool {
    state.withLock { s in
      s.started += 1
      return s.reports < CombineRecord.reportsBeforeSkipping || s.ratio <= CombineRecord.skipRatio
        || s.started % CombineRecord.probeEvery == 0
    }
  }

  /// A task's `rows` reduced to `groups`.
  func add(rows: Int, groups: Int) {
    guard rows > 0 else { return }
    let ratio = Double(groups) / Double(rows)
    state.withLock { s in
      s.ratio = s.reports == 0 ? ratio : (s.ratio + ratio) / 2
      s.reports += 1
      s.groups = max(s.groups, groups)
    }
  }

  /// The most groups any task reported so far (0 before the first report).
  var groupsSeen: Int { state.withLock { $0.groups } }
}
