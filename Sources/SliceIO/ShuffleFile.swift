import Frame

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One task's output cut into partitions, in one file, as Spark's sort-based shuffle does: a
/// shuffle of `n` map tasks makes `n` files whatever the partition count. The file is a run of
/// sections, each a block stream ending in its end marker, at bytes `sectionRange(s)`:
/// - a partition of some size has a section of its own; an empty one has no bytes at all;
/// - small partitions side by side share a packed section (`ShuffleFileWriter`'s `packBytes`):
///   one frame of their rows in partition order, whose end marker carries where the rows of
///   each partition holding some end in it (`PackedSection`). A many-way shuffle leaves a few rows per task
///   and partition, and a section each cost more in framing, encoding and decoding than its
///   rows.
///
/// What is kept in memory grows with the sections, plus a bit per partition: where each
/// partition's rows are in a packed section is read with the section.
///
/// The file is removed when the last reference goes.
public final class ShuffleFile: @unchecked Sendable {
  public let path: String
  public let schema: Schema
  /// The number of partitions.
  public let partitions: Int
  /// Rows and bytes in the whole file.
  public let rows: Int
  public let bytes: Int
  /// Section `s` is `base + offsets[s] ..< base + offsets[s + 1]`.
  private let offsets: CompactOffsets
  /// Where the output starts in the file: 0, unless it is one of many in a shared file.
  public let base: Int
  /// The shared file the output is in, given back when the output goes.
  private let shared: SharedFile?
  /// nil when every section holds one partition (section `s` is partition `s`'s).
  private let packing: Packing?
  /// For a run that will be merged: where each partition's section's end marker starts, and
  /// its rows and blocks (the merge copies the blocks and writes one end marker for them all).
  fileprivate private(set) var runDetail: RunDetail?
  private let directory: SpillDirectory

  fileprivate struct RunDetail {
    var dataEnds: [UInt64]
    var rows: [Int]
    var blocks: [Int]
  }

  /// Which partitions each section holds, and the rows of each section.
  fileprivate final class Packing {
    /// Section `s` holds partitions `first[s] ..< first[s + 1]`.
    let first: CompactOffsets
    /// Section `s` holds the file's rows `rows[s] ..< rows[s + 1]`.
    let rows: CompactOffsets
    /// The partitions holding rows.
    let holding: PartitionBits

    init(first: [UInt64], rows: [UInt64], holding: PartitionBits) {
      self.first = CompactOffsets(first)
      self.rows = CompactOffsets(rows)
      self.holding = holding
    }

    /// The last section whose first partition is at most `p`.
    func section(of p: Int) -> Int { first.lastIndex(atMost: p) }
  }

  fileprivate init(
    path: String, directory: SpillDirectory, shared: SharedFile?, base: Int, schema: Schema, offsets: [UInt64],
    packing: Packing?, partitions: Int, rows: Int, runDetail: RunDetail?
  ) {
    self.path = path
    self.directory = directory
    self.shared = shared
    self.base = base
    self.schema = schema
    self.offsets = CompactOffsets(offsets)
    self.packing = packing
    self.partitions = partitions
    self.rows = rows
    bytes = Int(offsets.last!)
    self.runDetail = runDetail
  }

  deinit {
    if let shared { directory.release(shared) } else { unlink(path) }
  }

  /// Makes a run (`finish(asRun: true)`) a plain file, as if it had been written as one: what
  /// a merge of it would need is let go. Call it before the file is shared.
  public func endRun() { runDetail = nil }

  /// Whether the file is still on disk.
  public var exists: Bool {
    if let name = directory.name(of: path) { return faccessat(directory.fd, name, F_OK, 0) == 0 }
    return access(path, F_OK) == 0
  }

  /// The section holding partition `p`.
  public func section(of p: Int) -> Int { packing?.section(of: p) ?? p }

  /// The partitions section `s` holds.
  public func partitions(inSection s: Int) -> Range<Int> {
    guard let packing else { return s..<(s + 1) }
    return packing.first[s]..<packing.first[s + 1]
  }

  /// The bytes of section `s` in the file.
  public func sectionRange(_ s: Int) -> Range<Int> { (base + offsets[s])..<(base + offsets[s + 1]) }

  /// The bytes of the section holding partition `p` (shared with its neighbours when packed).
  public func range(_ p: Int) -> Range<Int> { sectionRange(section(of: p)) }

  /// The rows of section `s`; nil when the file is not packed (its sections do not count them).
  public func sectionRows(_ s: Int) -> Int? {
    guard let packing else { return nil }
    return packing.rows[s + 1] - packing.rows[s]
  }

  /// Whether partition `p` has no rows.
  public func isEmpty(_ p: Int) -> Bool {
    guard let packing else { return range(p).isEmpty }
    return !packing.holding[p]
  }

  /// The partitions holding rows.
  public var holding: PartitionBits {
    packing?.holding ?? PartitionBits(count: partitions) { !range($0).isEmpty }
  }

  /// Where a partition is.
  public struct Place {
    /// The section holding it.
    public let section: Int
    /// Whether the section is packed with other partitions: its rows are then found in the
    /// section's `PackedSection`.
    public let isShared: Bool
    public let isEmpty: Bool
  }

  /// Where partition `p` is: one search of the sections.
  public func place(_ p: Int) -> Place {
    guard let packing else { return Place(section: p, isShared: false, isEmpty: range(p).isEmpty) }
    let s = packing.section(of: p)
    return Place(section: s, isShared: packing.first[s + 1] - packing.first[s] > 1, isEmpty: !packing.holding[p])
  }

  /// A reader of partition `p`'s frames. It opens the file on its first read, and lets go of
  /// the descriptor and its buffer at the end of the section; it keeps the file alive while
  /// it reads.
  public func reader(_ p: Int) -> any Reader {
    let place = place(p)
    if place.isEmpty { return FrameReader([]) }
    if place.isShared { return PackedPartitionReader(file: self, partition: p) }
    return SectionReader(path: path, range: range(p), schema: schema, owner: self, directory: directory)
  }

  /// The rows of partition `p`, read whole (a packed section is small).
  /// - Throws: what reading or decoding the file throws.
  public func frames(_ p: Int) throws -> [Frame] {
    if isEmpty(p) { return [] }
    return try readSections(p..<(p + 1)).frames(p)
  }
}

/// A packed section of a `ShuffleFile`, decoded: the rows of its partitions in partition order,
/// and where each partition's rows end.
public struct PackedSection: Sendable {
  /// The rows of all its partitions.
  public let frame: Frame
  /// The partitions it holds.
  public let partitions: Range<Int>
  /// The bytes of `frame`'s rows.
  public let frameBytes: Int
  /// Where the rows of each partition holding some end in `frame`, in partition order; empty
  /// when it holds one partition.
  private let ends: [UInt32]
  private let holding: PartitionBits

  fileprivate init(frame: Frame, partitions: Range<Int>, ends: [UInt32], holding: PartitionBits) {
    self.frame = frame
    self.partitions = partitions
    self.ends = ends
    self.holding = holding
    frameBytes = frame.byteCount
  }

  /// The rows of partition `p` (one of `partitions`) in `frame`.
  public func rows(of p: Int) -> Range<Int> {
    precondition(partitions.contains(p), "partition \(p) is not in the section's \(partitions)")
    if ends.isEmpty { return 0..<frame.count }
    let i = holding.count(in: partitions.lowerBound..<p)
    let start = i == 0 ? 0 : Int(ends[i - 1])
    return holding[p] ? start..<Int(ends[i]) : start..<start
  }

  /// The bytes it takes in memory.
  public var byteCount: Int { frameBytes + 4 * ends.count }
}

/// A partition of a packed section, read on the first `read`.
private final class PackedPartitionReader: Reader {
  private var file: ShuffleFile?
  private let partition: Int

  init(file: ShuffleFile, partition: Int) {
    self.file = file
    self.partition = partition
  }

  func read() throws -> Frame? {
    guard let file else { return nil }
    self.file = nil
    return try file.frames(partition).first
  }
}

/// Non-decreasing offsets (where each section of a file starts and the last ends, its first
/// partition, or its first row): 2 bytes each while they are under 64 Ki (most files of a
/// many-way shuffle), 4 under 4 Gi (a job of thousands of tasks holds millions of them).
private enum CompactOffsets {
  case short([UInt16])
  case narrow([UInt32])
  case wide([UInt64])

  init(_ offsets: [UInt64]) {
    let last = offsets.last ?? 0
    if last <= UInt64(UInt16.max) {
      self = .short(offsets.map { UInt16($0) })
    } else if last <= UInt64(UInt32.max) {
      self = .narrow(offsets.map { UInt32($0) })
    } else {
      self = .wide(offsets)
    }
  }

  subscript(i: Int) -> Int {
    switch self {
    case .short(let offsets): return Int(offsets[i])
    case .narrow(let offsets): return Int(offsets[i])
    case .wide(let offsets): return Int(offsets[i])
    }
  }

  /// The last index below `count - 1` whose value is at most `value` (0 when none is): a
  /// binary search, its width chosen once rather than at every probe.
  func lastIndex(atMost value: Int) -> Int {
    switch self {
    case .short(let offsets): return CompactOffsets.lastIndex(in: offsets, atMost: value)
    case .narrow(let offsets): return CompactOffsets.lastIndex(in: offsets, atMost: value)
    case .wide(let offsets): return CompactOffsets.lastIndex(in: offsets, atMost: value)
    }
  }

  private static func lastIndex<T: FixedWidthInteger>(in offsets: [T], atMost value: Int) -> Int {
    offsets.withUnsafeBufferPointer { offsets in
      var lo = 0
      var hi = offsets.count - 1
      while hi - lo > 1 {
        let mid = (lo + hi) >> 1
        if Int(offsets[mid]) <= value { lo = mid } else { hi = mid }
      }
      return lo
    }
  }
}

extension ShuffleFile {
  /// Sections `partitions`, which lie side by side in the file, read with one call: the
  /// reading tasks of a many-way shuffle share one read of their neighbouring sections.
  /// - Throws: `SliceIOError.io` when the file cannot be opened or read, `.integrity` when
  ///   it ends before the sections do.
  public func readSections(_ partitions: Range<Int>) throws -> SectionBlock {
    let bytes = range(partitions.lowerBound).lowerBound..<range(partitions.upperBound - 1).upperBound
    let block = SectionBlock(file: self, partitions: partitions, start: bytes.lowerBound, count: bytes.count)
    let got: Int
    if let shared {
      // A shared file keeps a descriptor open between reads.
      let fd = try directory.startReading(shared)
      defer { directory.endReading(shared, fd: fd) }
      got = try FileRangeSource(path: path, fd: fd, range: bytes).readFully(
        into: block.bytes.baseAddress!, count: bytes.count)
    } else {
      got = try FileRangeSource(path: path, range: bytes, in: directory).readFully(
        into: block.bytes.baseAddress!, count: bytes.count)
    }
    guard got == bytes.count else {
      throw SliceIOError.integrity(
        source: "\(path) bytes \(bytes)", block: 0,
        problem: .truncated("the file ends \(bytes.count - got) bytes early"))
    }
    return block
  }
}

/// Neighbouring sections of a `ShuffleFile`, read at once; each decodes from memory. Keeps the
/// file alive.
public final class SectionBlock: @unchecked Sendable {
  private let file: ShuffleFile
  /// The partitions whose sections these are.
  public let partitions: Range<Int>
  /// Where the bytes start in the file.
  private let start: Int
  fileprivate let bytes: UnsafeMutableRawBufferPointer

  fileprivate init(file: ShuffleFile, partitions: Range<Int>, start: Int, count: Int) {
    self.file = file
    self.partitions = partitions
    self.start = start
    bytes = .allocate(byteCount: max(count, 1), alignment: 16)
  }

  deinit { bytes.deallocate() }

  /// The bytes held.
  public var byteCount: Int { file.range(partitions.upperBound - 1).upperBound - start }

  /// Whether partition `p` has no rows.
  public func isEmpty(_ p: Int) -> Bool { file.isEmpty(p) }

  /// The frames of partition `p` (one of `partitions`); none when it is empty. A partition of a
  /// packed section is a slice of the section's frame, decoded for this call.
  /// - Throws: `SliceIOError.integrity` when its blocks are damaged.
  public func frames(_ p: Int) throws -> [Frame] {
    precondition(partitions.contains(p), "partition \(p) is not in the block's \(partitions)")
    let place = file.place(p)
    if place.isEmpty { return [] }
    guard place.isShared else { return try decode(file.range(p)) }
    let section = try packedSection(place.section)
    return [section.frame.slice(section.rows(of: p))]
  }

  /// Section `s` (one of those held, in a packed file) decoded: its partitions' rows in
  /// partition order as one frame, and where each partition's rows are.
  /// - Throws: `SliceIOError.integrity` when its blocks are damaged or hold other than the
  ///   rows the file wrote there.
  public func packedSection(_ s: Int) throws -> PackedSection {
    let range = file.sectionRange(s)
    let held = file.partitions(inSection: s)
    let holding = held.count > 1 ? file.holding : PartitionBits(count: 0)
    let (frames, table) = try SectionReader.decodeStream(
      slice(range), path: file.path, section: range, schema: file.schema)
    let ends = held.count > 1 ? table ?? [] : []
    if held.count > 1, ends.count != holding.count(in: held) {
      throw SliceIOError.integrity(
        source: "\(file.path) bytes \(range)", block: 0,
        problem: .malformedPayload(
          "the row table has \(ends.count) entries for \(holding.count(in: held)) partitions with rows"))
    }
    let frame: Frame
    do {
      frame = frames.count == 1 ? frames[0] : try Frame.concat(frames)
    } catch let error as FrameError {
      throw SliceIOError.frame(error)
    }
    if let expected = file.sectionRows(s), frame.count != expected {
      throw SliceIOError.integrity(
        source: "\(file.path) bytes \(range)", block: 0,
        problem: .truncated("the section holds \(frame.count) rows, not the \(expected) written"))
    }
    var before = 0
    for (i, end) in ends.enumerated() {
      let end = Int(end)
      guard end > before, end <= frame.count else {
        throw SliceIOError.integrity(
          source: "\(file.path) bytes \(range)", block: 0,
          problem: .malformedPayload("the row table's entry \(i) (\(end)) disagrees with the section"))
      }
      before = end
    }
    if held.count > 1, before != frame.count {
      throw SliceIOError.integrity(
        source: "\(file.path) bytes \(range)", block: 0,
        problem: .malformedPayload("the row table ends at row \(before) of \(frame.count)"))
    }
    return PackedSection(frame: frame, partitions: held, ends: ends, holding: holding)
  }

  /// Bytes `section` of the file, held here.
  private func slice(_ section: Range<Int>) -> UnsafeRawBufferPointer {
    precondition(section.lowerBound >= start && section.upperBound <= start + byteCount, "section outside the block")
    return UnsafeRawBufferPointer(rebasing: bytes[(section.lowerBound - start)..<(section.upperBound - start)])
  }

  private func decode(_ section: Range<Int>) throws -> [Frame] {
    try SectionReader.decode(slice(section), path: file.path, section: section, schema: file.schema)
  }
}

/// Reads one section of a file as a block stream, opening the file on the first read and
/// closing it (and freeing the read-ahead buffer, no larger than the section) at the end.
public final class SectionReader: Reader {
  private let path: String
  private let range: Range<Int>
  private let schema: Schema?
  private var owner: AnyObject?
  private let directory: SpillDirectory?
  private var reader: BlockFileReader?
  private var decoded: [Frame]?
  private var decodedNext = 0
  private var done = false

  /// Reads bytes `range` of the file at `path`; `owner` is kept alive until the end. A file in
  /// `directory` is opened relative to it.
  public convenience init(path: String, range: Range<Int>, schema: Schema?, owner: AnyObject?) {
    self.init(path: path, range: range, schema: schema, owner: owner, directory: nil)
  }

  init(path: String, range: Range<Int>, schema: Schema?, owner: AnyObject?, directory: SpillDirectory?) {
    self.path = path
    self.range = range
    self.schema = schema
    self.owner = owner
    self.directory = directory
  }

  public func read() throws -> Frame? {
    if done { return nil }
    if reader == nil && decoded == nil {
      let source = try FileRangeSource(path: path, range: range, in: directory)
      if range.count <= SectionReader.wholeBytes {
        decoded = try decodeWhole(source)
        decodedNext = 0
      } else {
        reader = BlockFileReader(stream: BlockStreamReader(source, readAhead: 1 << 20), schema: schema)
      }
    }
    if let decoded {
      if decodedNext < decoded.count {
        decodedNext += 1
        return decoded[decodedNext - 1]
      }
    } else if let frame = try reader!.read() {
      return frame
    }
    done = true
    reader = nil
    decoded = nil
    owner = nil
    return nil
  }

  /// Sections up to this size are read in one call into the thread's scratch buffer and
  /// decoded at once; larger ones stream through a read-ahead buffer.
  static let wholeBytes = 1 << 20

  /// The frames of the whole section, read with one call into the thread's scratch buffer
  /// (a shuffle reads thousands of small sections: no buffer is made or freed for each).
  private func decodeWhole(_ source: FileRangeSource) throws -> [Frame] {
    let scratch = SectionReader.scratch.value
    scratch.removeAll()
    let got = try source.readFully(into: scratch.reserve(range.count), count: range.count)
    scratch.commit(got)
    return try SectionReader.decode(scratch.bytes, path: path, section: range, schema: schema)
  }

  /// The frames of the block stream `bytes`, bytes `section` of the file at `path`. Errors
  /// name the section; the name is made only for one (a shuffle decodes millions).
  static func decode(
    _ bytes: UnsafeRawBufferPointer, path: String, section: Range<Int>, schema: Schema?
  ) throws -> [Frame] {
    try decodeStream(bytes, path: path, section: section, schema: schema).frames
  }

  /// `decode`, with the table the stream's end marker carries.
  static func decodeStream(
    _ bytes: UnsafeRawBufferPointer, path: String, section: Range<Int>, schema: Schema?
  ) throws -> (frames: [Frame], table: [UInt32]?) {
    do {
      let reader = BlockFileReader(stream: BlockStreamReader(borrowing: bytes, name: path), schema: schema)
      var frames: [Frame] = []
      while let frame = try reader.read() { frames.append(frame) }
      return (frames, reader.table)
    } catch SliceIOError.integrity(_, let block, let problem) {
      throw SliceIOError.integrity(source: "\(path) bytes \(section)", block: block, problem: problem)
    } catch SliceIOError.schemaMismatch(_, let block, let expected, let found) {
      throw SliceIOError.schemaMismatch(
        source: "\(path) bytes \(section)", block: block, expected: expected, found: found)
    }
  }

  private static let scratch = PerThread { ByteWriter(capacity: 1 << 16) }
}

extension SpillDirectory {
  /// The name of `path` relative to the directory's descriptor; nil when it is not in the
  /// directory or the directory has no descriptor.
  func name(of path: String) -> String? {
    guard fd >= 0, path.hasPrefix(self.path + "/") else { return nil }
    return String(path.dropFirst(self.path.utf8.count + 1))
  }
}

/// Reads bytes `range` of a file with `pread`. Closes the descriptor on deinit.
final class FileRangeSource: ByteSource {
  /// The file and the bytes read, for errors.
  var name: String { "\(path) bytes \(start)..<\(end)" }
  private let path: String
  private let start: Int
  private let fd: Int32
  /// Whether `fd` is this source's, to close when it goes.
  private let owned: Bool
  private var at: Int
  private let end: Int

  /// Reads `range` of `path` through `fd`, which stays open (the caller's).
  init(path: String, fd: Int32, range: Range<Int>) {
    self.path = path
    self.fd = fd
    owned = false
    start = range.lowerBound
    at = range.lowerBound
    end = range.upperBound
  }

  /// Opens `path` for reading; relative to `directory` when it is in it.
  /// - Throws: `SliceIOError.io`.
  init(path: String, range: Range<Int>, in directory: SpillDirectory? = nil) throws {
    self.path = path
    start = range.lowerBound
    if let directory, let name = directory.name(of: path) {
      fd = openat(directory.fd, name, O_RDONLY | O_CLOEXEC)
    } else {
      fd = open(path, O_RDONLY | O_CLOEXEC)
    }
    if fd < 0 { throw SliceIOError.io(path: path, operation: "open", errno: errno) }
    owned = true
    at = range.lowerBound
    end = range.upperBound
  }

  deinit { if owned { close(fd) } }

  /// Reads until `count` bytes are in or the range ends; returns the bytes read.
  func readFully(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    var got = 0
    while got < count {
      let n = try read(into: buffer + got, count: count - got)
      if n == 0 { break }
      got += n
    }
    return got
  }

  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    let want = min(count, end - at)
    if want <= 0 { return 0 }
    while true {
      let n = pread(fd, buffer, want, off_t(at))
      if n >= 0 {
        at += n
        return n
      }
      if errno == EINTR { continue }
      throw SliceIOError.io(path: name, operation: "read", errno: errno)
    }
  }
}

/// Writes a `ShuffleFile`: frames go to their partition's section, in partition order, and a
/// section is a block stream with its own end marker. With `packBytes`, a partition whose
/// first frame is smaller starts or joins a packed section, which ends with the first
/// partition after which it holds `packBytes` or more; a larger partition has a section of its
/// own. Finished runs can be merged into one file by copying their sections' blocks without
/// decoding them; a packed section's rows are decoded and written again.
///
/// The file is removed if the writer goes away before `finish()`.
public final class ShuffleFileWriter {
  private let directory: SpillDirectory
  private let schema: Schema
  private let file: FileOutput
  private let shared: SharedFile?
  private var path: String { file.path }
  private let encoder: FrameEncoder
  private let partitions: Int
  private let packBytes: Int
  /// Where each section starts (the file's size follows the last once it ends).
  private var offsets: [UInt64] = [0]
  /// Each section's first partition (the partition after the last follows once it ends).
  private var firsts: [UInt32] = [0]
  /// The rows written before each partition.
  private var rowsBefore: [UInt64]
  private var detail: ShuffleFile.RunDetail
  /// The partition being written, and where its rows go.
  private var current = 0
  private var mode = Mode.noRows
  /// Whether the section in progress is packed, and the frames gathered for it (those of the
  /// current partition from `currentFrom` on).
  private var packing = false
  private var pending: [Frame] = []
  private var pendingBytes = 0
  private var currentFrom = 0
  private var totalRows = 0
  private var finished = false
  /// The packed section of each run being merged last decoded, for its next partitions.
  private var decoded: [ObjectIdentifier: PackedSection] = [:]

  private enum Mode {
    case noRows
    /// The current partition's blocks go to a section of its own.
    case own
    /// Its rows gather in the packed section in progress.
    case packed
  }

  /// A new file in `directory` for frames of `schema` cut into `partitions` sections, packing
  /// partitions under `packBytes` (0: never). With a `group`, the output is appended to a file
  /// shared with other outputs of the group (`ShuffleFile.base` says where it starts). Writers
  /// used by one thread can share an `encoder`.
  /// - Throws: `SliceIOError.io`.
  public init(
    directory: SpillDirectory, schema: Schema, partitions: Int, prefix: String = "shuffle", group: String? = nil,
    encoder: FrameEncoder? = nil, options: CodecOptions = .default, packBytes: Int = 0
  ) throws {
    precondition(partitions >= 1, "a shuffle file of \(partitions) partitions")
    self.directory = directory
    self.schema = schema
    self.partitions = partitions
    self.packBytes = partitions > 1 ? max(packBytes, 0) : 0
    if let group {
      let (shared, fd) = try directory.takeShared(group: group, prefix: prefix)
      file = FileOutput(appendingTo: shared, fd: fd, in: directory)
      self.shared = shared
    } else {
      let (path, fd) = try directory.createFile(prefix: prefix)
      file = FileOutput(path: path, fd: fd)
      shared = nil
    }
    self.encoder = encoder ?? FrameEncoder(options: options)
    rowsBefore = [UInt64](repeating: 0, count: partitions + 1)
    detail = ShuffleFile.RunDetail(
      dataEnds: [UInt64](repeating: 0, count: partitions), rows: [Int](repeating: 0, count: partitions),
      blocks: [Int](repeating: 0, count: partitions))
  }

  /// Appends `frame` to partition `p`, which is the partition last written or a later one.
  /// - Throws: `SliceIOError.schemaMismatch`, `SliceIOError.io` (`ENOSPC` when the disk is
  ///   full).
  public func write(_ frame: Frame, to p: Int) throws {
    guard frame.hasTypes(schema.types) else {
      throw SliceIOError.schemaMismatch(
        source: path, block: 0, expected: schema.description, found: frame.schema.description)
    }
    guard frame.count > 0 else { return }
    try moveTo(p)
    let small = frame.byteCount < packBytes
    switch mode {
    case .noRows:
      if small {
        packing = true
        currentFrom = pending.count
        mode = .packed
      } else {
        try becomeOwn()
      }
    case .packed where !small: try becomeOwn()
    case .packed, .own: break
    }
    totalRows += frame.count
    if mode == .packed {
      pending.append(frame)
      pendingBytes += frame.byteCount
      return
    }
    try encodeOwn(frame)
  }

  /// Appends the rows of `run`'s partition `p` to partition `p`: the blocks of a section of
  /// its own are copied as bytes.
  /// - Precondition: `run` was finished with `asRun`, with this file's partition count.
  /// - Throws: `SliceIOError.io`, or what decoding a packed section throws.
  public func copy(_ p: Int, of run: ShuffleFile) throws {
    guard let source = run.runDetail else { preconditionFailure("copying from a shuffle file that is not a run") }
    precondition(run.partitions == partitions, "merging runs of other partition counts")
    if run.isEmpty(p) { return }
    if source.blocks[p] == 0 {
      // Its rows are in a packed section (perhaps alone).
      let s = run.section(of: p)
      let key = ObjectIdentifier(run)
      let section: PackedSection
      if let last = decoded[key], last.partitions.contains(p) {
        section = last
      } else {
        section = try run.readSections(p..<(p + 1)).packedSection(s)
        decoded[key] = section
      }
      return try write(section.frame.slice(section.rows(of: p)), to: p)
    }
    try moveTo(p)
    if mode != .own { try becomeOwn() }
    let start = Int(run.range(p).lowerBound)
    let count = run.base + Int(source.dataEnds[p]) - start
    guard count > 0 else { return }
    let input = open(run.path, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { throw SliceIOError.io(path: run.path, operation: "open", errno: errno) }
    defer { close(input) }
    var done = 0
    while done < count {
      let want = min(count - done, 1 << 20)
      let into = file.buffer.reserve(want)
      let n = pread(input, into, want, off_t(start + done))
      if n < 0 {
        if errno == EINTR { continue }
        throw SliceIOError.io(path: run.path, operation: "read", errno: errno)
      }
      if n == 0 {
        throw SliceIOError.integrity(
          source: run.path, block: 0, problem: .truncated("the run ends inside partition \(p)'s section"))
      }
      file.buffer.commit(n)
      done += n
      try file.flushIfFull()
    }
    detail.rows[p] += source.rows[p]
    detail.blocks[p] += source.blocks[p]
    totalRows += source.rows[p]
  }

  /// Ends the last section, closes the file and hands it to a `ShuffleFile`. With `asRun`, the
  /// file keeps what a merge needs (`copy`).
  /// - Throws: `SliceIOError.io`; the file is removed then.
  public func finish(asRun: Bool = false) throws -> ShuffleFile {
    precondition(!finished, "finish twice")
    finished = true
    try moveTo(partitions - 1)
    try endPartition()
    if Int(firsts.last!) < partitions { try endSection(at: partitions) }
    try file.finish()
    decoded = [:]
    var packed: ShuffleFile.Packing?
    if firsts.count - 1 != partitions {
      let holding = PartitionBits(count: partitions) { rowsBefore[$0 + 1] > rowsBefore[$0] }
      packed = ShuffleFile.Packing(
        first: firsts.map { UInt64($0) }, rows: firsts.map { rowsBefore[Int($0)] }, holding: holding)
    }
    return ShuffleFile(
      path: path, directory: directory, shared: shared, base: file.base, schema: schema, offsets: offsets,
      packing: packed, partitions: partitions, rows: totalRows, runDetail: asRun ? detail : nil)
  }

  /// Ends the partitions before `p` and makes `p` current.
  private func moveTo(_ p: Int) throws {
    precondition(p >= current, "partition \(p) written after partition \(current)")
    while current < p {
      try endPartition()
      current += 1
      mode = .noRows
    }
  }

  /// Ends the current partition: its own section ends; a packed section ends once it holds
  /// `packBytes`; an empty partition has an empty section of its own, or is in the packed one.
  private func endPartition() throws {
    rowsBefore[current + 1] = UInt64(totalRows)
    switch mode {
    case .own: try endSection(at: current + 1)
    case .packed: if pendingBytes >= packBytes { try endSection(at: current + 1) }
    case .noRows:
      if packBytes == 0 {
        try endSection(at: current + 1)
      } else {
        packing = true
      }
    }
  }

  /// Gives the current partition a section of its own: the packed section in progress ends
  /// before it, and its rows gathered there so far are its section's first.
  private func becomeOwn() throws {
    var mine: [Frame] = []
    if mode == .packed {
      mine = Array(pending[currentFrom...])
      pending.removeSubrange(currentFrom...)
      pendingBytes -= mine.reduce(0) { $0 + $1.byteCount }
    }
    if packing { try endSection(at: current) }
    mode = .own
    for frame in mine { try encodeOwn(frame) }
  }

  private func encodeOwn(_ frame: Frame) throws {
    let p = current
    try encoder.encodeBlocks(frame, into: file.buffer) { n in
      detail.rows[p] += n
      detail.blocks[p] += 1
      try file.flushIfFull()
    }
  }

  /// Ends the section in progress before partition `next`: a packed one is written now as one
  /// frame, its end marker carrying where each partition's rows end when it holds more than
  /// one; an own one gets its end marker.
  private func endSection(at next: Int) throws {
    if packing {
      if !pending.isEmpty {
        let frame: Frame
        do {
          // A merge writes slices of one frame side by side: they join with no copy.
          frame = try Frame.joinedSlices(pending) ?? Frame.concat(pending)
        } catch let error as FrameError {
          throw SliceIOError.frame(error)
        }
        var blocks = 0
        try encoder.encodeBlocks(frame, into: file.buffer) { _ in
          blocks += 1
          try file.flushIfFull()
        }
        let first = Int(firsts.last!)
        var table: [UInt32]?
        if next - first > 1 {
          let base = rowsBefore[first]
          table = (first..<next).filter { rowsBefore[$0 + 1] > rowsBefore[$0] }.map {
            UInt32(rowsBefore[$0 + 1] - base)
          }
        }
        try encoder.encodeEnd(rows: frame.count, blocks: blocks, table: table, into: file.buffer)
        pending.removeAll(keepingCapacity: true)
        pendingBytes = 0
        currentFrom = 0
      }
      packing = false
    } else if mode == .own, detail.blocks[current] > 0 {
      detail.dataEnds[current] = UInt64(file.size)
      try encoder.encodeEnd(rows: detail.rows[current], blocks: detail.blocks[current], into: file.buffer)
    }
    offsets.append(UInt64(file.size))
    firsts.append(UInt32(next))
  }
}
