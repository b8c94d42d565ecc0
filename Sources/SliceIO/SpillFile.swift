import CSupport
import Frame

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

  /// Creates a new directory under `parent` (default: `$TMPDIR`, else `/tmp`).
  /// - Throws: `SliceIOError.io` when it cannot be created (missing or unwritable parent).
  public init(parent: String? = nil, prefix: String = "bigslice") throws {
    let base = parent ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
    var template = Array("\(base)/\(prefix)-XXXXXX".utf8CString)
    let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
    guard made != nil else { throw SliceIOError.io(path: base, operation: "mkdtemp", errno: errno) }
    path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
  }

  deinit {
    if let dir = opendir(path) {
      while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
        }
        if name != "." && name != ".." { unlink("\(path)/\(name)") }
      }
      closedir(dir)
    }
    rmdir(path)
  }

  /// A new empty file in the directory, opened for writing. Returns its path and descriptor.
  func createFile(prefix: String) throws -> (path: String, fd: Int32) {
    var template = Array("\(path)/\(prefix)-XXXXXX".utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw SliceIOError.io(path: path, operation: "create a spill file", errno: errno) }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    return (template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }, fd)
  }
}

/// Writes frames to a new spill file as a stream of blocks ending in an end marker.
///
/// The file is removed if the writer goes away before `finish()`, so a failed task leaves no
/// file behind. Writes are buffered and go out in large chunks.
public final class SpillWriter {
  public let schema: Schema
  public let path: String
  private let directory: SpillDirectory
  private var fd: Int32
  private let encoder: FrameEncoder
  private let buffer = ByteWriter(capacity: 1 << 21)
  private var rows = 0
  private var blocks = 0
  private var bytesWritten = 0

  /// Creates a file in `directory` for frames of `schema`.
  /// - Throws: `SliceIOError.io`.
  public init(directory: SpillDirectory, schema: Schema, options: CodecOptions = .default, prefix: String = "spill")
    throws
  {
    self.directory = directory
    self.schema = schema
    encoder = FrameEncoder(options: options)
    (path, fd) = try directory.createFile(prefix: prefix)
  }

  deinit {
    if fd >= 0 {
      close(fd)
      unlink(path)
    }
  }

  /// Appends the rows of `frame`, cut into blocks of about the target size.
  /// - Throws: `SliceIOError.schemaMismatch` for a frame of other types; `SliceIOError.io`
  ///   (`ENOSPC` when the disk is full).
  public func write(_ frame: Frame) throws {
    precondition(fd >= 0, "write after finish")
    guard frame.schema.types == schema.types else {
      throw SliceIOError.schemaMismatch(
        source: path, block: blocks, expected: schema.description, found: frame.schema.description)
    }
    guard frame.count > 0 else { return }
    let step = encoder.rowsPerBlock(frame)
    var at = 0
    while at < frame.count {
      let piece = frame.slice(at..<min(at + step, frame.count))
      try encoder.encode(piece, into: buffer)
      rows += piece.count
      blocks += 1
      at += piece.count
      if buffer.count >= 1 << 20 { try flush() }
    }
  }

  /// Writes the end marker, closes the file and hands it over to a `SpillFile`, which owns it
  /// from now on.
  public func finish() throws -> SpillFile {
    precondition(fd >= 0, "finish twice")
    try encoder.encodeEnd(rows: rows, blocks: blocks, into: buffer)
    try flush()
    let closed = close(fd)
    fd = -1
    if closed != 0 {
      let code = errno
      unlink(path)
      throw SliceIOError.io(path: path, operation: "close", errno: code)
    }
    return SpillFile(path: path, directory: directory, schema: schema, rows: rows, blocks: blocks, bytes: bytesWritten)
  }

  private func flush() throws {
    try writeAll(fd: fd, buffer.bytes, path: path)
    bytesWritten += buffer.count
    buffer.removeAll()
  }
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

  /// Reads `source`, expecting frames of `schema` (nil: any). `owner` is kept alive while
  /// reading (a `SpillFile`, say).
  public init(source: any ByteSource, schema: Schema?, owner: AnyObject? = nil) {
    stream = BlockStreamReader(source)
    decoder = FrameDecoder(schema: schema)
    self.owner = owner
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
      case .end(let total, let count):
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
        return nil
      }
    }
  }
}
