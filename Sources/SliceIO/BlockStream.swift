import CSupport
import Frame
import SystemPackage

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A source of bytes: a file, a socket, a buffer. `read` returns 0 only at the end.
public protocol ByteSource: AnyObject {
  /// Reads up to `count` bytes into `buffer`; returns how many, 0 at the end.
  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int
  /// A name for error messages: a path or an address.
  var name: String { get }
}

/// Reads a file descriptor opened on `path`. Closes it on deinit.
public final class FileSource: ByteSource {
  public let name: String
  private let fd: Int32

  /// Opens `path` for reading.
  /// - Throws: `SliceIOError.io`.
  public init(path: String) throws {
    name = path
    fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SliceIOError.io(path: path, operation: "open", errno: errno) }
  }

  deinit { close(fd) }

  public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    while true {
      let n = Glibc.read(fd, buffer, count)
      if n >= 0 { return n }
      if errno == EINTR { continue }
      throw SliceIOError.io(path: name, operation: "read", errno: errno)
    }
  }
}

/// Splits a byte source into whole blocks, checking each header before trusting its lengths.
/// Reads ahead in large chunks; a block is handed out as a buffer valid until the next call.
public final class BlockStreamReader {
  public let source: any ByteSource
  /// The index of the next block.
  public private(set) var index = 0
  private var buffer: UnsafeMutableRawPointer
  private var capacity: Int
  private var start = 0
  private var end = 0
  private var atEOF = false
  /// False when the bytes are borrowed (`init(borrowing:name:)`).
  private let owned: Bool

  public init(_ source: any ByteSource, readAhead: Int = 1 << 20) {
    self.source = source
    capacity = max(readAhead, Int(BS_BLOCK_HEADER_SIZE))
    buffer = .allocate(byteCount: capacity, alignment: 16)
    owned = true
  }

  /// Splits `bytes`, which must stay valid while this reads them, named `name` in errors.
  init(borrowing bytes: UnsafeRawBufferPointer, name: String) {
    source = NamedSource(name: name)
    buffer = UnsafeMutableRawPointer(mutating: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 16)!)
    capacity = bytes.count
    end = bytes.count
    atEOF = true
    owned = false
  }

  deinit { if owned { buffer.deallocate() } }

  /// The next whole block, or nil when the source ends exactly at a block boundary.
  /// - Throws: `SliceIOError.integrity` for a bad header or a block cut short.
  package func next() throws -> UnsafeRawBufferPointer? {
    let header = Int(BS_BLOCK_HEADER_SIZE)
    try fill(header)
    if end - start == 0 { return nil }
    if end - start < header {
      throw SliceIOError.integrity(
        source: source.name, block: index, problem: .truncated("the stream ends inside block \(index)'s header"))
    }
    var info = bs_block_info()
    let total = bs_block_peek(buffer + start, end - start, &info)
    if total < 0 {
      throw SliceIOError.integrity(source: source.name, block: index, problem: blockProblem(total, index))
    }
    try fill(Int(total))
    if end - start < Int(total) {
      throw SliceIOError.integrity(
        source: source.name, block: index,
        problem: .truncated("the stream ends after \(end - start) of block \(index)'s \(total) bytes"))
    }
    let block = UnsafeRawBufferPointer(start: buffer + start, count: Int(total))
    start += Int(total)
    index += 1
    return block
  }

  /// Makes `n` bytes available from `start`, or as many as the source has left.
  private func fill(_ n: Int) throws {
    if end - start >= n || atEOF { return }
    if n > capacity - start {
      if n > capacity {
        let grown = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 16)
        grown.copyMemory(from: buffer + start, byteCount: end - start)
        buffer.deallocate()
        buffer = grown
        capacity = n
      } else {
        memmove(buffer, buffer + start, end - start)
      }
      end -= start
      start = 0
    }
    while end - start < n {
      let got = try source.read(into: buffer + end, count: capacity - end)
      if got == 0 {
        atEOF = true
        return
      }
      end += got
    }
  }
}

/// A source with a name and no bytes: the name of borrowed bytes.
private final class NamedSource: ByteSource {
  let name: String
  init(name: String) { self.name = name }
  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int { 0 }
}

/// Writes bytes to a file descriptor, all of them, retrying short writes.
func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
  do {
    _ = try FileDescriptor(rawValue: fd).writeAll(bytes)
  } catch let error as Errno {
    throw SliceIOError.io(path: path, operation: "write", errno: error.rawValue)
  }
}
