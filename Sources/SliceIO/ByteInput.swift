import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// Something that yields bytes in order, read to its end: a pipe, standard input, a
/// subprocess's output, a network stream, a file. `scanReader(_:openers:)` reads one.
public protocol ByteInput: AnyObject {
  /// What to call the stream in errors (a path, a command, a URL).
  var name: String { get }
  /// Reads up to `count` bytes into `buffer`; returns how many, 0 only at the end.
  /// - Throws: what the stream's source throws (`SliceIOError.io` for a file descriptor).
  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int
}

/// The bytes of an open file descriptor (a pipe, standard input, a file), read with `read(2)`.
public final class FileDescriptorInput: ByteInput {
  public let name: String
  let fd: Int32
  private let owned: Bool

  /// Reads `fd`, called `name` in errors; with `closing`, closes it when done with.
  public init(fd: Int32, name: String, closing: Bool = true) {
    self.fd = fd
    self.name = name
    owned = closing
  }

  /// Opens `path` for reading.
  /// - Throws: `SliceIOError.io` when it cannot be opened.
  public convenience init(path: String) throws {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SliceIOError.io(path: path, operation: "open", errno: errno) }
    self.init(fd: fd, name: path)
  }

  deinit { if owned { close(fd) } }

  public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    while true {
      let n = Glibc.read(fd, buffer, count)
      if n >= 0 { return n }
      if errno != EINTR { throw SliceIOError.io(path: name, operation: "read", errno: errno) }
    }
  }
}

/// A reader of one input's rows in frames: a text file's lines, a delimited file's rows.
public protocol FrameSource: AnyObject {
  /// Up to `rows` more rows, or nil at the end.
  func next(rows: Int) throws -> Frame?
  /// Rows the source skipped as bad so far.
  var skippedRows: Int { get }
}

extension FrameSource {
  public var skippedRows: Int { 0 }
}
