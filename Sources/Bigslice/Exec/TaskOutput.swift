import CSupport
import Frame
import SliceIO

/// Frames held in memory, charged to a budget until they go.
final class HeldFrames: @unchecked Sendable {
  /// The frames, each with where its partitions are (nil: the frame is all partition 0).
  let chunks: [(frame: Frame, index: PartitionIndex?)]
  let bytes: Int
  private let budget: MemoryBudget?
  /// The chunks as raw pointers, valid while this lives (empty when a column is boxed): what
  /// a shuffle's read copies row ranges from without a reference count per range.
  let raw: UnsafeMutableBufferPointer<RawChunk>

  /// A chunk's values and partition starts as raw pointers.
  struct RawChunk {
    let frame: RawFrame
    let index: PartitionIndex.Raw?

    /// The rows of partition `p`.
    func range(_ p: Int) -> Range<Int> { index?.range(p) ?? (p == 0 ? 0..<frame.count : 0..<0) }
  }

  /// Chunks whose `bytes` were charged to `budget` (nil: not charged).
  init(_ chunks: [(frame: Frame, index: PartitionIndex?)], bytes: Int, budget: MemoryBudget?) {
    self.chunks = chunks
    self.bytes = bytes
    self.budget = budget
    rowCount = chunks.reduce(0) { $0 + $1.frame.count }
    var raw: [RawChunk] = []
    for chunk in chunks {
      guard let frame = RawFrame(chunk.frame) else {
        for made in raw { made.frame.deallocate() }
        raw = []
        break
      }
      raw.append(RawChunk(frame: frame, index: chunk.index?.raw))
    }
    self.raw = .allocate(capacity: raw.count)
    _ = self.raw.initialize(from: raw)
  }

  /// Frames of one partition each, charged to `budget`.
  convenience init(_ frames: [Frame], bytes: Int, budget: MemoryBudget?) {
    self.init(frames.map { ($0, nil) }, bytes: bytes, budget: budget)
  }

  deinit {
    for chunk in raw { chunk.frame.deallocate() }
    raw.deallocate()
    budget?.release(bytes)
  }

  /// Whether every chunk has raw pointers (no column is boxed).
  var isRaw: Bool { raw.count == chunks.count }

  /// The rows of every chunk.
  let rowCount: Int

  /// The rows of partition `p`: zero-copy slices of the chunks.
  func frames(_ p: Int) -> [Frame] {
    var out: [Frame] = []
    for chunk in chunks {
      guard let index = chunk.index else {
        if p == 0 { out.append(chunk.frame) }
        continue
      }
      let range = index.range(p)
      if !range.isEmpty { out.append(range.count == chunk.frame.count ? chunk.frame : chunk.frame.slice(range)) }
    }
    return out
  }
}

/// The held outputs of a shuffle's upstream tasks as one array of raw chunks in upstream order,
/// so that each reading task finds its rows in every upstream output by walking one array, not
/// by following each upstream task to its output, storage and chunks. When most chunks hold no
/// rows of most partitions (a many-way shuffle over few rows), each partition also has a list
/// of the pieces of chunks holding its rows, and its task walks that instead of every chunk.
/// It keeps the outputs alive.
final class HeldTable: @unchecked Sendable {
  enum State {
    case unbuilt
    case built(HeldTable)
    /// Some upstream output is on disk, elsewhere or boxed.
    case unavailable
  }

  /// A chunk, and the bytes and rows of the output it belongs to (for the input meter).
  struct Entry {
    let chunk: HeldFrames.RawChunk
    let outputBytes: Int
    let outputRows: Int
  }

  /// Rows `start ..< end` of entry `entry`'s chunk.
  struct Piece {
    let entry: UInt32
    let start: UInt32
    let end: UInt32
  }

  /// A `Piece` in 6 bytes, when every entry number and row fits in 16 bits (most tables of a
  /// many-way shuffle: a piece per row at the most).
  struct NarrowPiece {
    let entry: UInt16
    let start: UInt16
    let end: UInt16
  }

  /// One partition's pieces.
  struct Pieces {
    let base: UnsafeRawPointer
    let narrow: Bool
    let count: Int

    /// Piece `k`: its entry and rows.
    @inline(__always) subscript(k: Int) -> (entry: Int, rows: Range<Int>) {
      if narrow {
        let piece = base.load(fromByteOffset: k &* MemoryLayout<NarrowPiece>.stride, as: NarrowPiece.self)
        return (Int(piece.entry), Int(piece.start)..<Int(piece.end))
      }
      let piece = base.load(fromByteOffset: k &* MemoryLayout<Piece>.stride, as: Piece.self)
      return (Int(piece.entry), Int(piece.start)..<Int(piece.end))
    }
  }

  let entries: UnsafeMutableBufferPointer<Entry>
  /// Each entry's partition index, for `bs_partition_ranges`.
  let indexes: UnsafeMutableBufferPointer<bs_part_index>
  /// The frame of each entry (a large range is handed out as a slice of it).
  let frames: [Frame]
  private let outputs: [HeldFrames]
  /// Partition `p`'s pieces are `pieces[pieceStarts[p] ..< pieceStarts[p + 1]]`, in upstream
  /// order; nil unless the table is sparse.
  private let pieceStarts: UnsafeMutableBufferPointer<Int>?
  /// `Piece`s, or `NarrowPiece`s when `narrow`.
  private let pieces: UnsafeMutableRawPointer?
  private let narrow: Bool

  /// The table lists each partition's pieces when fewer than this share of (chunk, partition)
  /// pairs hold rows: 6 or 12 bytes a piece then cost less than a walk over every chunk.
  static let sparseShare = 0.25

  /// nil unless every task's output is held in memory with raw pointers, in `partitions`
  /// partitions.
  init?(_ tasks: [ShardTask], partitions: Int) {
    var outputs: [HeldFrames] = []
    var entries: [Entry] = []
    var frames: [Frame] = []
    for task in tasks {
      guard case .memory(let held)? = task.output?.storage, held.isRaw, task.output?.partitions == partitions else {
        return nil
      }
      outputs.append(held)
      for (i, chunk) in held.raw.enumerated() {
        entries.append(Entry(chunk: chunk, outputBytes: held.bytes, outputRows: held.rowCount))
        frames.append(held.chunks[i].frame)
      }
    }
    self.outputs = outputs
    self.frames = frames
    self.entries = .allocate(capacity: entries.count)
    _ = self.entries.initialize(from: entries)
    indexes = .allocate(capacity: entries.count)
    for (i, entry) in entries.enumerated() {
      let index = entry.chunk.index
      indexes[i] = bs_part_index(
        starts: index?.base, rows: UInt32(entry.chunk.frame.count), parts: UInt32(partitions),
        ids: UInt32(index?.idCount ?? 0), narrow: index?.narrow == true ? 1 : 0, sparse: index?.isSparse == true ? 1 : 0
      )
    }
    // Count each partition's pieces, then place them.
    let starts = UnsafeMutableBufferPointer<Int>.allocate(capacity: partitions + 1)
    starts.initialize(repeating: 0)
    var lastRow = 0
    for entry in entries {
      HeldTable.forEachPiece(of: entry.chunk, partitions: partitions) { p, rows in
        starts[p + 1] += 1
        lastRow = max(lastRow, rows.upperBound)
      }
    }
    for p in 0..<partitions { starts[p + 1] += starts[p] }
    guard Double(starts[partitions]) < HeldTable.sparseShare * Double(entries.count) * Double(partitions) else {
      starts.deallocate()
      pieceStarts = nil
      pieces = nil
      narrow = false
      return
    }
    let narrow = entries.count <= Int(UInt16.max) + 1 && lastRow <= Int(UInt16.max)
    let stride = narrow ? MemoryLayout<NarrowPiece>.stride : MemoryLayout<Piece>.stride
    let pieces = UnsafeMutableRawPointer.allocate(
      byteCount: max(starts[partitions], 1) * stride, alignment: MemoryLayout<Piece>.alignment)
    var next = Array(starts[0..<partitions])
    for (i, entry) in entries.enumerated() {
      HeldTable.forEachPiece(of: entry.chunk, partitions: partitions) { p, rows in
        if narrow {
          pieces.storeBytes(
            of: NarrowPiece(entry: UInt16(i), start: UInt16(rows.lowerBound), end: UInt16(rows.upperBound)),
            toByteOffset: next[p] * stride, as: NarrowPiece.self)
        } else {
          pieces.storeBytes(
            of: Piece(entry: UInt32(i), start: UInt32(rows.lowerBound), end: UInt32(rows.upperBound)),
            toByteOffset: next[p] * stride, as: Piece.self)
        }
        next[p] += 1
      }
    }
    pieceStarts = starts
    self.pieces = pieces
    self.narrow = narrow
  }

  deinit {
    entries.deallocate()
    indexes.deallocate()
    pieceStarts?.deallocate()
    pieces?.deallocate()
  }

  /// The pieces holding partition `p`'s rows, in upstream order; nil unless the table is sparse.
  func pieces(of p: Int) -> Pieces? {
    guard let pieces, let pieceStarts else { return nil }
    let stride = narrow ? MemoryLayout<NarrowPiece>.stride : MemoryLayout<Piece>.stride
    return Pieces(
      base: UnsafeRawPointer(pieces + pieceStarts[p] * stride), narrow: narrow,
      count: pieceStarts[p + 1] - pieceStarts[p])
  }

  /// Calls `body` with each partition of `chunk` that has rows, and its rows.
  private static func forEachPiece(
    of chunk: HeldFrames.RawChunk, partitions: Int, _ body: (Int, Range<Int>) -> Void
  ) {
    guard let index = chunk.index else {
      if chunk.frame.count > 0 { body(0, 0..<chunk.frame.count) }
      return
    }
    if index.isSparse {
      for i in 0..<index.idCount { body(index.id(i), index.start(i)..<index.start(i + 1)) }
      return
    }
    for p in 0..<partitions where index.start(p + 1) > index.start(p) {
      body(p, index.start(p)..<index.start(p + 1))
    }
  }
}

/// Where each partition's rows are in a frame whose rows are in partition order: dense (one
/// start per partition) when most partitions have rows, else only the partitions that do,
/// so a small frame cut many ways costs its rows, not the partition count. Entries take 16
/// bits when every start and partition id fits, else 32: a many-way shuffle holds thousands
/// of indexes, and most of its frames are short.
final class PartitionIndex: @unchecked Sendable {
  /// Dense: partition `p` is `start(p) ..< start(p + 1)`. Sparse: `id(i)` are the non-empty
  /// partitions in order, and `id(i)` is `start(i) ..< start(i + 1)`. Both in one buffer for
  /// data that outlives its task (`bs_lasting_alloc`).
  private let storage: UnsafeMutableRawPointer
  private let storageBytes: Int

  /// The index as a raw pointer, valid while it lives.
  struct Raw {
    let base: UnsafeRawPointer
    /// Entries of 16 bits, else 32.
    let narrow: Bool
    let isSparse: Bool
    /// The non-empty partitions when sparse; 0 when dense.
    let idCount: Int

    @inline(__always) private func entry(_ i: Int) -> Int {
      narrow
        ? Int(base.load(fromByteOffset: i &* 2, as: UInt16.self))
        : Int(base.load(fromByteOffset: i &* 4, as: UInt32.self))
    }

    /// Where the rows of the `i`th entry start (dense: partition `i`; sparse: `id(i)`).
    @inline(__always) func start(_ i: Int) -> Int { entry(i) }

    /// The partition of the `i`th entry of a sparse index.
    @inline(__always) func id(_ i: Int) -> Int { entry(idCount + 1 + i) }

    /// The rows of partition `p`.
    @inline(__always) func range(_ p: Int) -> Range<Int> {
      guard isSparse else { return start(p)..<start(p + 1) }
      return sparseRange(p)
    }

    /// `range(p)` of a sparse index: a binary search of the ids.
    private func sparseRange(_ p: Int) -> Range<Int> {
      var lo = 0
      var hi = idCount
      while lo < hi {
        let mid = (lo + hi) >> 1
        if id(mid) < p { lo = mid + 1 } else { hi = mid }
      }
      guard lo < idCount, id(lo) == p else { return 0..<0 }
      return start(lo)..<start(lo + 1)
    }
  }

  let raw: Raw

  /// From the `partitions + 1` starts of a counting sort.
  init(starts all: UnsafeBufferPointer<UInt64>) {
    let partitions = all.count - 1
    var nonEmpty = 0
    for p in 0..<partitions where all[p + 1] > all[p] { nonEmpty += 1 }
    let dense = nonEmpty * 2 >= partitions
    let count = dense ? all.count : 2 * nonEmpty + 1
    let narrow = all[partitions] <= UInt16.max && (dense || partitions <= Int(UInt16.max) + 1)
    storageBytes = count * (narrow ? 2 : 4)
    guard let buffer = bs_lasting_alloc(storageBytes) else {
      fatalError("out of memory for a partition index of \(storageBytes) bytes")
    }
    storage = buffer
    func put(_ i: Int, _ value: UInt64) {
      if narrow {
        buffer.storeBytes(of: UInt16(value), toByteOffset: i * 2, as: UInt16.self)
      } else {
        buffer.storeBytes(of: UInt32(value), toByteOffset: i * 4, as: UInt32.self)
      }
    }
    if dense {
      for (i, start) in all.enumerated() { put(i, start) }
    } else {
      var i = 0
      for p in 0..<partitions where all[p + 1] > all[p] {
        put(nonEmpty + 1 + i, UInt64(p))
        put(i, all[p])
        i += 1
      }
      put(nonEmpty, all[partitions])
    }
    raw = Raw(base: UnsafeRawPointer(buffer), narrow: narrow, isSparse: !dense, idCount: dense ? 0 : nonEmpty)
  }

  deinit { bs_lasting_free(storage, storageBytes) }

  /// The rows of partition `p`.
  func range(_ p: Int) -> Range<Int> { raw.range(p) }
}

/// A task's output, cut into the partitions of the shuffle that reads it (one partition when
/// nothing shuffles): frames in memory (charged to the budget), one shuffle file with a
/// section per partition, or a file in the store of the machine that computed it.
///
/// Whether it is there is known without asking the disk: a file that vanished is found when it
/// is read, as a lost input.
final class TaskOutput: @unchecked Sendable {
  enum Storage {
    case memory(HeldFrames)
    case file(ShuffleFile)
    case remote(RemoteOutput)
  }

  let storage: Storage
  let partitions: Int
  /// Rows and bytes of the whole output.
  let rows: Int
  let bytes: Int

  init(_ storage: Storage, partitions: Int, rows: Int, bytes: Int) {
    self.storage = storage
    self.partitions = partitions
    self.rows = rows
    self.bytes = bytes
  }

  /// A reader of partition `p`'s frames; nil when it certainly holds no rows (so a reader
  /// need not open it).
  func reader(_ p: Int) -> (any Reader)? {
    switch storage {
    case .memory(let held):
      let frames = held.frames(p)
      return frames.isEmpty ? nil : FrameReader(frames)
    case .file(let file): return file.isEmpty(p) ? nil : file.reader(p)
    case .remote(let remote): return remote.reader(p)
    }
  }

  /// The partitions holding rows.
  var holding: PartitionBits {
    switch storage {
    case .memory(let held): return PartitionBits(count: partitions) { !held.frames($0).isEmpty }
    case .file(let file): return file.holding
    case .remote(let remote): return remote.holding
    }
  }

  /// False when the machine holding the output stopped.
  var isAvailable: Bool {
    if case .remote(let remote) = storage { return remote.worker.isAlive }
    return true
  }

  /// Whether the output is a file in this process.
  var isOnDisk: Bool {
    if case .file = storage { return true }
    return false
  }

  /// `isAvailable`, and for an output on disk, whether its file is still there: one system
  /// call, asked only once some input was found lost.
  var isStillThere: Bool {
    if case .file(let file) = storage { return file.exists }
    return isAvailable
  }

  /// The frames of partition `p` held in memory; empty for an output on disk.
  func frames(_ p: Int) -> [Frame] {
    if case .memory(let held) = storage { return held.frames(p) }
    return []
  }
}
