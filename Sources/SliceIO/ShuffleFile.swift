import Frame

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// One task's output cut into partitions, in one file: partition `p` is a block stream, ending
/// in its end marker, at bytes `range(p)`; an empty partition has no bytes at all. Sections
/// are in partition order, as in Spark's sort-based shuffle, so a shuffle of `n` map tasks
/// makes `n` files whatever the partition count. The file is removed when the last reference
/// goes.
public final class ShuffleFile: @unchecked Sendable {
  public let path: String
  public let schema: Schema
  /// The number of partitions.
  public let partitions: Int
  /// Rows and bytes in the whole file.
  public let rows: Int
  public let bytes: Int
  /// Section `p` is `offsets[p] ..< offsets[p + 1]`.
  private let offsets: SectionOffsets
  /// For a run that will be merged: where each section's end marker starts, and its rows and
  /// blocks (the merge copies the blocks and writes one end marker for them all).
  fileprivate let runDetail: RunDetail?
  private let directory: SpillDirectory

  fileprivate struct RunDetail {
    var dataEnds: [UInt64]
    var rows: [Int]
    var blocks: [Int]
  }

  fileprivate init(
    path: String, directory: SpillDirectory, schema: Schema, offsets: [UInt64], rows: Int, runDetail: RunDetail?
  ) {
    self.path = path
    self.directory = directory
    self.schema = schema
    self.offsets = SectionOffsets(offsets)
    partitions = offsets.count - 1
    self.rows = rows
    bytes = Int(offsets.last!)
    self.runDetail = runDetail
  }

  deinit { unlink(path) }

  /// Whether the file is still on disk.
  public var exists: Bool {
    if let name = directory.name(of: path) { return faccessat(directory.fd, name, F_OK, 0) == 0 }
    return access(path, F_OK) == 0
  }

  /// The bytes of partition `p`'s section.
  public func range(_ p: Int) -> Range<Int> { offsets[p]..<offsets[p + 1] }

  /// A reader of partition `p`'s frames. It opens the file on its first read, and lets go of
  /// the descriptor and its buffer at the end of the section; it keeps the file alive while
  /// it reads.
  public func reader(_ p: Int) -> any Reader {
    let range = self.range(p)
    if range.isEmpty { return FrameReader([]) }
    return SectionReader(path: path, range: range, schema: schema, owner: self, directory: directory)
  }
}

/// Where each section of a file starts, and where the last ends: 4 bytes a partition while the
/// file is under 4 GiB (a job of thousands of tasks and partitions holds millions of them).
private enum SectionOffsets {
  case narrow([UInt32])
  case wide([UInt64])

  init(_ offsets: [UInt64]) {
    if let last = offsets.last, last <= UInt64(UInt32.max) {
      self = .narrow(offsets.map { UInt32($0) })
    } else {
      self = .wide(offsets)
    }
  }

  subscript(i: Int) -> Int {
    switch self {
    case .narrow(let offsets): return Int(offsets[i])
    case .wide(let offsets): return Int(offsets[i])
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
    let source = try FileRangeSource(path: path, range: bytes, in: directory)
    let block = SectionBlock(file: self, partitions: partitions, start: bytes.lowerBound, count: bytes.count)
    let got = try source.readFully(into: block.bytes.baseAddress!, count: bytes.count)
    guard got == bytes.count else {
      throw SliceIOError.integrity(
        source: source.name, block: 0, problem: .truncated("the file ends \(bytes.count - got) bytes early"))
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

  /// Whether partition `p` has rows.
  public func isEmpty(_ p: Int) -> Bool { file.range(p).isEmpty }

  /// The frames of partition `p` (one of `partitions`); none when it is empty.
  /// - Throws: `SliceIOError.integrity` when its blocks are damaged.
  public func frames(_ p: Int) throws -> [Frame] {
    precondition(partitions.contains(p), "partition \(p) is not in the block's \(partitions)")
    let section = file.range(p)
    if section.isEmpty { return [] }
    let bytes = UnsafeRawBufferPointer(
      rebasing: self.bytes[(section.lowerBound - start)..<(section.upperBound - start)])
    return try SectionReader.decode(bytes, path: file.path, section: section, schema: file.schema)
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
    do {
      let reader = BlockFileReader(stream: BlockStreamReader(borrowing: bytes, name: path), schema: schema)
      var frames: [Frame] = []
      while let frame = try reader.read() { frames.append(frame) }
      return frames
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
  private var at: Int
  private let end: Int

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
    at = range.lowerBound
    end = range.upperBound
  }

  deinit { close(fd) }

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
/// section is a block stream with its own end marker. Finished runs can be merged into one
/// file by copying their blocks, without decoding them.
///
/// The file is removed if the writer goes away before `finish()`.
public final class ShuffleFileWriter {
  private let directory: SpillDirectory
  private let schema: Schema
  private let file: FileOutput
  private var path: String { file.path }
  private let encoder: FrameEncoder
  private var offsets: [UInt64]
  private var detail: ShuffleFile.RunDetail
  /// The partition being written.
  private var current = 0
  private var totalRows = 0
  private var finished = false

  /// A new file in `directory` for frames of `schema` cut into `partitions` sections. Writers
  /// used by one thread can share an `encoder`.
  /// - Throws: `SliceIOError.io`.
  public init(
    directory: SpillDirectory, schema: Schema, partitions: Int, prefix: String = "shuffle",
    encoder: FrameEncoder? = nil, options: CodecOptions = .default
  ) throws {
    precondition(partitions >= 1, "a shuffle file of \(partitions) partitions")
    self.directory = directory
    self.schema = schema
    let (path, fd) = try directory.createFile(prefix: prefix)
    file = FileOutput(path: path, fd: fd)
    self.encoder = encoder ?? FrameEncoder(options: options)
    offsets = [UInt64](repeating: 0, count: partitions + 1)
    detail = ShuffleFile.RunDetail(
      dataEnds: [UInt64](repeating: 0, count: partitions), rows: [Int](repeating: 0, count: partitions),
      blocks: [Int](repeating: 0, count: partitions))
  }

  /// Appends `frame` to partition `p`, which is the partition last written or a later one.
  /// - Throws: `SliceIOError.schemaMismatch`, `SliceIOError.io` (`ENOSPC` when the disk is
  ///   full).
  public func write(_ frame: Frame, to p: Int) throws {
    guard frame.schema.types == schema.types else {
      throw SliceIOError.schemaMismatch(
        source: path, block: 0, expected: schema.description, found: frame.schema.description)
    }
    guard frame.count > 0 else { return }
    try moveTo(p)
    try encoder.encodeBlocks(frame, into: file.buffer) { n in
      detail.rows[p] += n
      detail.blocks[p] += 1
      totalRows += n
      try file.flushIfFull()
    }
  }

  /// Appends the blocks of `run`'s partition `p` to partition `p`, copying their bytes.
  /// - Precondition: `run` was finished with `asRun`, with this file's partition count.
  /// - Throws: `SliceIOError.io`.
  public func copy(_ p: Int, of run: ShuffleFile) throws {
    guard let source = run.runDetail else { preconditionFailure("copying from a shuffle file that is not a run") }
    precondition(run.partitions == offsets.count - 1, "merging runs of other partition counts")
    let start = Int(run.range(p).lowerBound)
    let count = Int(source.dataEnds[p]) - start
    guard count > 0 else { return }
    try moveTo(p)
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
    try moveTo(offsets.count - 1)
    try file.finish()
    return ShuffleFile(
      path: path, directory: directory, schema: schema, offsets: offsets, rows: totalRows,
      runDetail: asRun ? detail : nil)
  }

  /// Ends the sections before partition `p` (the one in progress gets its end marker) and
  /// makes `p` current.
  private func moveTo(_ p: Int) throws {
    precondition(p >= current, "partition \(p) written after partition \(current)")
    while current < p {
      detail.dataEnds[current] = UInt64(file.size)
      if detail.blocks[current] > 0 {
        try encoder.encodeEnd(rows: detail.rows[current], blocks: detail.blocks[current], into: file.buffer)
      }
      current += 1
      offsets[current] = UInt64(file.size)
    }
  }
}
