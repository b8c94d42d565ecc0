import CSupport
import Frame
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A private temporary directory for spill files. It and everything left in it are removed
/// when the last reference to it goes, after a failure too.
public final class SpillDirectory: @unchecked Sendable {
  /// The directory's path.
  public let path: String
  /// The directory, open: files in it are opened relative to it, one name to look up rather
  /// than a whole path (a shuffle opens thousands of sections).
  let fd: Int32

  /// Creates a new directory under `parent` (default: `$TMPDIR`, else `/tmp`).
  /// - Throws: `SliceIOError.io` when it cannot be created (missing or unwritable parent).
  public init(parent: String? = nil, prefix: String = "bigslice") throws {
    let base = parent ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
    var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard made != nil else { throw SliceIOError.io(path: base, operation: "mkdtemp", errno: errno) }
    path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
  }

  deinit {
    for file in shared.withLock({ $0.keptOpen }) where file.readFD >= 0 { close(file.readFD) }
    remove()
    if fd >= 0 { close(fd) }
  }

  /// The shared files' state: those not being written now, by group, and those holding a
  /// descriptor open for reading, least recently read first.
  private struct Shared {
    var idle: [String: [SharedFile]] = [:]
    var keptOpen: [SharedFile] = []
  }

  private let shared = Mutex(Shared())

  /// Shared files that keep a descriptor open for reading between reads, at most: a many-way
  /// shuffle reads tens of thousands of small sections from a few shared files, and opening
  /// and closing the file for each cost more than reading it.
  public static let readersKept = 8

  /// A file of the directory for one writer to append to, and the descriptor it writes with
  /// (at the file's end): an idle shared file of `group` under `SharedFile.fullBytes`, else a
  /// new one named `prefix-XXXXXX`. Many outputs of a group share a file, so a job of
  /// thousands of tasks creates few files (creating one is the costly part on some file
  /// systems). Give it back with `finishWriting` or `abandonWriting`.
  /// - Throws: `SliceIOError.io` when no file can be opened or created.
  func takeShared(group: String, prefix: String) throws -> (SharedFile, Int32) {
    // Marked as being written while still under the lock, so that the release of its last
    // output cannot remove it between the two.
    while let file = shared.withLock({ shared -> SharedFile? in
      let file = shared.idle[group]?.popLast()
      file?.writing = true
      return file
    }) {
      let fd =
        name(of: file.path).map { openat(self.fd, $0, O_WRONLY | O_CLOEXEC) } ?? open(file.path, O_WRONLY | O_CLOEXEC)
      if fd >= 0, lseek(fd, off_t(file.size), SEEK_SET) >= 0 { return (file, fd) }
      // A file removed from under the directory (its outputs are lost) takes no more.
      if fd >= 0 { close(fd) }
      shared.withLock { _ in file.writing = false }
    }
    let (path, fd) = try createFile(prefix: prefix)
    let file = SharedFile(path: path, group: group)
    file.writing = true
    return (file, fd)
  }

  /// Ends a write to `file` that kept `bytes` more at its end, holding an output (closes `fd`).
  func finishWriting(_ file: SharedFile, fd: Int32, bytes: Int) {
    close(fd)
    shared.withLock { shared in
      file.size += bytes
      file.live += 1
      file.writing = false
      if file.size < SharedFile.fullBytes { shared.idle[file.group, default: []].append(file) }
    }
  }

  /// Ends a write to `file` that failed or was dropped: what it wrote is cut off (closes
  /// `fd`).
  func abandonWriting(_ file: SharedFile, fd: Int32) {
    _ = ftruncate(fd, off_t(file.size))
    close(fd)
    let remove = shared.withLock { shared -> Bool in
      file.writing = false
      if file.live == 0 { return true }
      if file.size < SharedFile.fullBytes { shared.idle[file.group, default: []].append(file) }
      return false
    }
    if remove { removeShared(file) }
  }

  /// An output in `file` is gone: the file is removed with its last output, unless a writer is
  /// adding one.
  func release(_ file: SharedFile) {
    let remove = shared.withLock { shared -> Bool in
      file.live -= 1
      guard file.live == 0, !file.writing else { return false }
      shared.idle[file.group]?.removeAll { $0 === file }
      return true
    }
    if remove { removeShared(file) }
  }

  /// Removes `file`, which has no outputs left, and closes its reading descriptor.
  private func removeShared(_ file: SharedFile) {
    let fd = shared.withLock { shared -> Int32 in
      shared.keptOpen.removeAll { $0 === file }
      defer { file.readFD = -1 }
      return file.readFD
    }
    if fd >= 0 { close(fd) }
    unlink(file.path)
  }

  /// A descriptor to read `file` with, the caller holding one of its outputs: the one kept
  /// open from an earlier read, else a new one, kept for later reads while fewer than
  /// `readersKept` files keep one. Give it back with `endReading`. A file removed from under
  /// the directory (a lost input) is opened again by name, so that its loss is seen.
  /// - Throws: `SliceIOError.io` when it cannot be opened.
  func startReading(_ file: SharedFile) throws -> Int32 {
    let kept = shared.withLock { shared -> Int32 in
      guard file.readFD >= 0 else { return -1 }
      file.readers += 1
      if shared.keptOpen.last !== file {
        shared.keptOpen.removeAll { $0 === file }
        shared.keptOpen.append(file)
      }
      return file.readFD
    }
    if kept >= 0 {
      var info = stat()
      if fstat(kept, &info) == 0, info.st_nlink > 0 { return kept }
      shared.withLock { _ in file.readers -= 1 }
    }
    let fd =
      name(of: file.path).map { openat(self.fd, $0, O_RDONLY | O_CLOEXEC) } ?? open(file.path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SliceIOError.io(path: file.path, operation: "open", errno: errno) }
    guard kept < 0 else { return fd }
    let evicted = shared.withLock { shared -> Int32 in
      guard file.readFD < 0 else { return -1 }
      // Room for it: the least recently read file that no read is using lets go of its own.
      var evicted: Int32 = -1
      if shared.keptOpen.count >= SpillDirectory.readersKept,
        let i = shared.keptOpen.firstIndex(where: { $0.readers == 0 })
      {
        let old = shared.keptOpen.remove(at: i)
        evicted = old.readFD
        old.readFD = -1
      }
      if shared.keptOpen.count < SpillDirectory.readersKept {
        file.readFD = fd
        file.readers += 1
        shared.keptOpen.append(file)
      }
      return evicted
    }
    if evicted >= 0 { close(evicted) }
    return fd
  }

  /// Gives back a descriptor from `startReading(file)`.
  func endReading(_ file: SharedFile, fd: Int32) {
    let kept = shared.withLock { _ -> Bool in
      guard fd == file.readFD else { return false }
      file.readers -= 1
      return true
    }
    if !kept { close(fd) }
  }

  /// Removes the directory and every file in it now (files still open stay readable until
  /// closed). Removing it again does nothing.
  public func remove() { removeDirectory(path) }

  /// A new empty file in the directory, opened for writing. Returns its path and descriptor.
  func createFile(prefix: String) throws -> (path: String, fd: Int32) {
    var template = Array("\(path)/\(prefix)-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw SliceIOError.io(path: path, operation: "create a spill file", errno: errno) }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    return (template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, fd)
  }
}

/// A file of a `SpillDirectory` that outputs of one group are appended to, one writer at a
/// time: each output is a byte range of it, and the file goes with its last output. Its state
/// changes under the directory's lock.
final class SharedFile: @unchecked Sendable {
  let path: String
  let group: String
  /// Bytes kept: outputs, one after another.
  fileprivate(set) var size = 0
  /// Outputs in the file still referenced.
  fileprivate var live = 0
  /// A writer is appending to it.
  fileprivate var writing = false
  /// A descriptor kept open for reading (-1: none), and the reads using it now.
  fileprivate var readFD: Int32 = -1
  fileprivate var readers = 0

  /// Outputs are appended to a file until it holds this many bytes.
  static let fullBytes = 64 << 20

  fileprivate init(path: String, group: String) {
    self.path = path
    self.group = group
  }
}

/// A new file written through a buffer that goes out in large chunks. It is removed if it
/// goes away before `finish()`, or if closing it fails: the writer behind spill, cache and
/// shuffle files.
final class FileOutput {
  let path: String
  private var fd: Int32
  /// When appending to a shared file: the file, and its directory to give it back to.
  private let shared: (file: SharedFile, directory: SpillDirectory)?
  /// Where the bytes written start in the file (0 unless shared).
  let base: Int
  /// Bytes waiting to go to the file.
  let buffer = ByteWriter(capacity: 1 << 16)
  /// Bytes gathered before they go to the file: small, as a task may write many files at
  /// once (a partition or bucket each).
  static let flushBytes = 256 << 10
  /// Bytes written to the file so far.
  private(set) var written = 0

  /// Takes over `fd`, open for writing on `path`.
  init(path: String, fd: Int32) {
    self.path = path
    self.fd = fd
    shared = nil
    base = 0
  }

  /// Appends to a shared file of `directory` (`SpillDirectory.takeShared`).
  init(appendingTo file: SharedFile, fd: Int32, in directory: SpillDirectory) {
    path = file.path
    self.fd = fd
    shared = (file, directory)
    base = file.size
  }

  deinit {
    guard fd >= 0 else { return }
    if let shared {
      shared.directory.abandonWriting(shared.file, fd: fd)
    } else {
      close(fd)
      unlink(path)
    }
  }

  /// The file's size once the buffer is written.
  var size: Int { written + buffer.count }

  /// Writes the buffer out when it holds `flushBytes` or more.
  func flushIfFull() throws {
    if buffer.count >= FileOutput.flushBytes { try flush() }
  }

  /// Writes the buffer out.
  /// - Throws: `SliceIOError.io` (`ENOSPC` when the disk is full).
  func flush() throws {
    precondition(fd >= 0, "write after close")
    guard buffer.count > 0 else { return }
    try writeAll(fd: fd, buffer.bytes, path: path)
    written += buffer.count
    buffer.removeAll()
  }

  /// Writes the buffer out and closes the file (after `fsync` when `sync`).
  /// - Throws: `SliceIOError.io`; the file is removed then.
  func finish(sync: Bool = false) throws {
    precondition(fd >= 0, "finished twice")
    try flush()
    if sync, fsync(fd) != 0 { throw SliceIOError.io(path: path, operation: "fsync", errno: errno) }
    if let shared {
      shared.directory.finishWriting(shared.file, fd: fd, bytes: written)
      fd = -1
      return
    }
    let closed = close(fd)
    fd = -1
    if closed != 0 {
      let code = errno
      unlink(path)
      throw SliceIOError.io(path: path, operation: "close", errno: code)
    }
  }
}

/// The names in directory `path` (without `.` and `..`); empty when it cannot be read.
public func directoryEntries(_ path: String) -> [String] {
  guard let dir = opendir(path) else { return [] }
  defer { closedir(dir) }
  var names: [String] = []
  while let entry = readdir(dir) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    if name != "." && name != ".." { names.append(name) }
  }
  return names
}

/// Removes directory `path` and the files in it (it must hold no directories). Removing one
/// that is gone does nothing.
public func removeDirectory(_ path: String) {
  for name in directoryEntries(path) { unlink("\(path)/\(name)") }
  rmdir(path)
}

/// Encodes frames as a stream of blocks ending in an end marker, into a new file. The one
/// writer behind spill files and cache files.
final class BlockFileSink {
  let schema: Schema
  private let file: FileOutput
  private let encoder: FrameEncoder
  private(set) var rows = 0
  private(set) var blocks = 0
  var path: String { file.path }
  var bytesWritten: Int { file.written }

  init(path: String, fd: Int32, schema: Schema, options: CodecOptions, encoder: FrameEncoder?) {
    file = FileOutput(path: path, fd: fd)
    self.schema = schema
    self.encoder = encoder ?? FrameEncoder(options: options)
  }

  func write(_ frame: Frame) throws {
    guard frame.schema.types == schema.types else {
      throw SliceIOError.schemaMismatch(
        source: path, block: blocks, expected: schema.description, found: frame.schema.description)
    }
    guard frame.count > 0 else { return }
    try encoder.encodeBlocks(frame, into: file.buffer) { n in
      rows += n
      blocks += 1
      try file.flushIfFull()
    }
  }

  /// Writes the end marker and closes the file (after `fsync` when `sync`); on failure the
  /// file is removed.
  func finish(sync: Bool = false) throws {
    try encoder.encodeEnd(rows: rows, blocks: blocks, into: file.buffer)
    try file.finish(sync: sync)
  }
}

/// Writes frames to a new spill file as a stream of blocks ending in an end marker.
///
/// The file is removed if the writer goes away before `finish()`, so a failed task leaves no
/// file behind. Writes are buffered and go out in large chunks.
public final class SpillWriter {
  public var schema: Schema { sink.schema }
  public var path: String { sink.path }
  private let directory: SpillDirectory
  private let sink: BlockFileSink

  /// Creates a file in `directory` for frames of `schema`. Writers used by one thread can
  /// share an `encoder` (its compression context and buffers are the bulk of a writer's
  /// memory); it then sets the options.
  /// - Throws: `SliceIOError.io`.
  public init(
    directory: SpillDirectory, schema: Schema, options: CodecOptions = .default, prefix: String = "spill",
    encoder: FrameEncoder? = nil
  ) throws {
    self.directory = directory
    let (path, fd) = try directory.createFile(prefix: prefix)
    sink = BlockFileSink(path: path, fd: fd, schema: schema, options: options, encoder: encoder)
  }

  /// Appends the rows of `frame`, cut into blocks of about the target size.
  /// - Throws: `SliceIOError.schemaMismatch` for a frame of other types; `SliceIOError.io`
  ///   (`ENOSPC` when the disk is full).
  public func write(_ frame: Frame) throws { try sink.write(frame) }

  /// Writes the end marker, closes the file and hands it over to a `SpillFile`, which owns it
  /// from now on.
  public func finish() throws -> SpillFile {
    try sink.finish()
    return SpillFile(
      path: path, directory: directory, schema: schema, rows: sink.rows, blocks: sink.blocks,
      bytes: sink.bytesWritten)
  }
}

/// Writes frames to a block file at a path of the caller's (a cache file), atomically: the
/// rows go to a temporary file beside it, which `commit()` syncs and renames into place. A
/// writer that goes away uncommitted removes its temporary file, so a reader never sees a
/// partial file under the final name.
public final class AtomicBlockFileWriter {
  /// The final path.
  public let path: String
  private let sink: BlockFileSink

  /// Creates the temporary file for frames of `schema`.
  /// - Throws: `SliceIOError.io` when the directory is missing or unwritable.
  public init(path: String, schema: Schema, options: CodecOptions = .default) throws {
    self.path = path
    var template = Array("\(path).tmp-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw SliceIOError.io(path: path, operation: "create", errno: errno) }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    sink = BlockFileSink(path: temporary, fd: fd, schema: schema, options: options, encoder: nil)
  }

  /// Appends the rows of `frame`.
  /// - Throws: `SliceIOError.schemaMismatch`, `SliceIOError.io`.
  public func write(_ frame: Frame) throws { try sink.write(frame) }

  /// Ends the stream, syncs the file and renames it to `path`.
  /// - Throws: `SliceIOError.io`; the temporary file is removed then.
  public func commit() throws {
    try sink.finish(sync: true)
    guard rename(sink.path, path) == 0 else {
      let code = errno
      unlink(sink.path)
      throw SliceIOError.io(path: path, operation: "rename into place", errno: code)
    }
  }
}

/// Opens a block file written by `AtomicBlockFileWriter` (or any block stream) for reading,
/// checking every block against `schema` when given.
/// - Throws: `SliceIOError.io` when the file cannot be opened.
public func blockFileReader(path: String, schema: Schema?) throws -> BlockFileReader {
  try BlockFileReader(source: FileSource(path: path), schema: schema)
}

/// A finished spill file. The file is removed when the last reference goes.
public final class SpillFile: @unchecked Sendable {
  public let path: String
  public let schema: Schema
  /// Rows, frame blocks and bytes in the file.
  public let rows: Int
  public let blocks: Int
  public let bytes: Int
  private let directory: SpillDirectory

  init(path: String, directory: SpillDirectory, schema: Schema, rows: Int, blocks: Int, bytes: Int) {
    self.path = path
    self.directory = directory
    self.schema = schema
    self.rows = rows
    self.blocks = blocks
    self.bytes = bytes
  }

  deinit { unlink(path) }

  /// A reader of the file's frames. It keeps the file alive while it reads.
  /// - Throws: `SliceIOError.io` when the file cannot be opened.
  public func reader() throws -> BlockFileReader {
    try BlockFileReader(source: FileSource(path: path), schema: schema, owner: self)
  }
}

/// Reads a stream of frame blocks that must end with its end marker: a spill file, a stored
/// shuffle partition, a cache file, or the same bytes from a socket.
///
/// Every block is checked before use. A stream cut at a block boundary is caught by the
/// missing end marker, and one whose end marker disagrees with the blocks read is corrupt.
public final class BlockFileReader: Reader {
  private let stream: BlockStreamReader
  private let decoder: FrameDecoder
  private let owner: AnyObject?
  private var rows = 0
  private var frames = 0
  private var done = false
  /// The table the end marker carried, once read.
  public private(set) var table: [UInt32]?

  /// Reads `source`, expecting frames of `schema` (nil: any). `owner` is kept alive while
  /// reading (a `SpillFile`, say).
  public init(source: any ByteSource, schema: Schema?, owner: AnyObject? = nil) {
    stream = BlockStreamReader(source)
    decoder = FrameDecoder(schema: schema)
    self.owner = owner
  }

  /// Reads the blocks of `stream`, expecting frames of `schema` (nil: any).
  init(stream: BlockStreamReader, schema: Schema?) {
    self.stream = stream
    decoder = FrameDecoder(schema: schema)
    owner = nil
  }

  public func read() throws -> Frame? {
    if done { return nil }
    let name = stream.source.name
    while true {
      let index = stream.index
      guard let block = try stream.next() else {
        throw SliceIOError.integrity(
          source: name, block: index,
          problem: .truncated("the stream ends after block \(index - 1) without its end marker"))
      }
      switch try decoder.decode(block, source: name, index: index) {
      case .frame(let frame):
        rows += frame.count
        frames += 1
        if frame.count > 0 { return frame }
      case .end(let total, let count, let table):
        guard total == rows, count == frames else {
          throw SliceIOError.integrity(
            source: name, block: index,
            problem: .malformedPayload(
              "end marker counts \(total) rows in \(count) blocks, the stream held \(rows) in \(frames)"))
        }
        if try stream.next() != nil {
          throw SliceIOError.integrity(
            source: name, block: index + 1, problem: .malformedPayload("data after the end marker"))
        }
        done = true
        self.table = table
        return nil
      }
    }
  }
}
