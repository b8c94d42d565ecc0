import CSupport
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

/// Reads the lines that start in byte range `shard` of `shards` of a file, without their line
/// endings: shards of one file split its lines between them, none read twice. Or reads every
/// line of a `ByteInput`.
///
/// A file compressed with gzip (any number of members) or zstd (any number of frames),
/// recognised by its first bytes whatever its name, is decompressed as it is read. It cannot
/// be split, so it is one shard's unit of work: shard `fileIndex % shards` reads all of it,
/// and the others none.
public final class LineRangeReader {
  private let path: String
  private let input: any ByteInput
  private var buffer: UnsafeMutablePointer<UInt8>
  private var capacity = 1 << 20
  private var start = 0
  private var end = 0
  /// Offset of `buffer[start]` in the file's (decompressed) bytes.
  private var offset: Int
  private let stop: Int
  private var eof = false
  /// The compressed file's decompressor, and its input, when the file is compressed.
  private var compressed: CompressedInput?

  /// Opens `path` at the start of its range `shard` of `shards`; `fileIndex` is the file's
  /// place in the job's list, which picks the shard that reads a compressed file.
  /// - Throws: `SliceIOError.io` when the file cannot be opened, examined, read or positioned.
  public init(path: String, shard: Int, of shards: Int, fileIndex: Int = 0) throws {
    self.path = path
    let file = try FileDescriptorInput(path: path)
    let fd = file.fd
    input = file
    buffer = .allocate(capacity: capacity)
    // From here every property is set before a throw, so deinit frees the buffer.
    var head = (UInt8(0), UInt8(0), UInt8(0), UInt8(0))
    let got = withUnsafeMutableBytes(of: &head) { pread(fd, $0.baseAddress, 4, 0) }
    guard got >= 0 else {
      offset = 0
      stop = 0
      throw SliceIOError.io(path: path, operation: "read", errno: errno)
    }
    let kind = withUnsafeBytes(of: head) { bs_decomp_sniff($0.baseAddress, got) }
    if kind != BS_DECOMP_NONE {
      offset = 0
      let mine = ((fileIndex % shards) + shards) % shards == shard
      stop = mine ? Int.max : 0
      if mine { compressed = try CompressedInput(kind: kind, path: path) }
      return
    }
    var info = stat()
    guard fstat(fd, &info) == 0 else {
      offset = 0
      stop = 0
      throw SliceIOError.io(path: path, operation: "stat", errno: errno)
    }
    let size = Int(info.st_size)
    let from = shard * size / shards
    stop = (shard + 1) * size / shards
    // A line belongs to the range its first byte is in: start after the first newline at or
    // after from - 1, unless from is 0.
    offset = max(from - 1, 0)
    if lseek(fd, off_t(offset), SEEK_SET) < 0 {
      throw SliceIOError.io(path: path, operation: "seek", errno: errno)
    }
    if from > 0 {
      while true {
        try fill()
        if let nl = memchr(buffer + start, 0x0A, end - start) {
          let skip = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self)) + 1
          consume(skip - start)
          break
        }
        if eof {
          consume(end - start)
          break
        }
        consume(end - start)
      }
    }
  }

  /// Reads every line of `stream`, decompressing it when its first bytes are gzip's or
  /// zstd's.
  /// - Throws: what the stream throws as its first bytes are read.
  public init(stream: any ByteInput) throws {
    path = stream.name
    input = stream
    buffer = .allocate(capacity: capacity)
    offset = 0
    stop = Int.max
    // The first bytes tell the format; a compressed stream's go to its decompressor.
    while end < 4 {
      let n = try stream.read(into: buffer + end, count: 4 - end)
      if n == 0 { break }
      end += n
    }
    let kind = bs_decomp_sniff(buffer, end)
    if kind != BS_DECOMP_NONE {
      compressed = try CompressedInput(kind: kind, path: path, first: UnsafeRawBufferPointer(start: buffer, count: end))
      end = 0
    } else if end < 4 {
      eof = true
    }
  }

  deinit { buffer.deallocate() }

  private func consume(_ n: Int) {
    start += n
    offset += n
  }

  /// Reads more bytes after those not yet consumed; sets `eof` at the end of the file.
  private func fill() throws {
    if start > 0 {
      memmove(buffer, buffer + start, end - start)
      end -= start
      start = 0
    }
    if end == capacity {
      let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
      grown.update(from: buffer, count: end)
      buffer.deallocate()
      buffer = grown
      capacity *= 2
    }
    let n =
      try compressed?.read(from: input, into: buffer + end, count: capacity - end)
      ?? input.read(into: buffer + end, count: capacity - end)
    if n == 0 { eof = true }
    end += n
  }

  /// Up to `rows` more lines, or nil when the range is done.
  public func next(rows: Int) throws -> Frame? {
    var builder = BytesColumnBuilder(type: .string, rows: rows, bytesPerRow: 32)
    while builder.count < rows && offset < stop {
      if let nl = memchr(buffer + start, 0x0A, end - start) {
        let length = buffer.distance(to: nl.assumingMemoryBound(to: UInt8.self)) - start
        var content = length
        if content > 0 && buffer[start + content - 1] == 0x0D { content -= 1 }
        builder.append(bytes: UnsafeRawBufferPointer(start: buffer + start, count: content))
        consume(length + 1)
        continue
      }
      if eof {
        // The last line has no newline.
        if end > start { builder.append(bytes: UnsafeRawBufferPointer(start: buffer + start, count: end - start)) }
        consume(end - start)
        break
      }
      try fill()
    }
    let count = builder.count
    let column = builder.finish()
    return count == 0 ? nil : try Frame([column])
  }
}

/// A compressed file's bytes on their way through its decompressor (`bs_decomp`): what was
/// read of the file and not yet decompressed, and where it is in the file.
final class CompressedInput {
  private let path: String
  private let kind: bs_decomp_kind
  private let decomp: OpaquePointer
  private let input: UnsafeMutablePointer<UInt8>
  private let inputCapacity = 1 << 20
  private var start = 0
  private var end = 0
  /// File offset of `input[0]`.
  private var base = 0
  private var fileEnded = false
  /// The last stream (gzip member or zstd frame) ended, and no other has begun.
  private var streamEnded = false

  /// A decompressor of `kind` for the stream called `path`, whose `first` bytes were read
  /// already.
  init(kind: bs_decomp_kind, path: String, first: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0))
    throws
  {
    guard let decomp = bs_decomp_new(kind) else {
      throw SliceIOError.io(path: path, operation: "start decompressing", errno: ENOMEM)
    }
    self.path = path
    self.kind = kind
    self.decomp = decomp
    input = .allocate(capacity: inputCapacity)
    if let base = first.baseAddress, first.count > 0 {
      input.update(from: base.assumingMemoryBound(to: UInt8.self), count: first.count)
      end = first.count
    }
  }

  deinit {
    bs_decomp_free(decomp)
    input.deallocate()
  }

  private var format: String { kind == BS_DECOMP_GZIP ? "gzip" : "zstd" }

  /// Decompresses into `out[0..<count]` (count > 0) from `source`; returns the bytes made, 0
  /// at its end.
  /// - Throws: `SliceIOError.compressed` for corrupt or truncated data, naming the offset in
  ///   the file; `SliceIOError.io` when the file cannot be read.
  func read(from source: any ByteInput, into out: UnsafeMutablePointer<UInt8>, count: Int) throws -> Int {
    while true {
      if start == end || (stalled && !fileEnded) {
        try readInput(from: source)
      }
      if start == end && fileEnded {
        guard streamEnded else {
          throw SliceIOError.compressed(
            path: path, offset: base + end, problem: "truncated: the file ends inside a \(format) stream")
        }
        return 0
      }
      var used = 0
      var made = 0
      let status = bs_decomp_run(decomp, input + start, end - start, &used, out, count, &made)
      start += used
      switch status {
      case BS_DECOMP_CORRUPT:
        throw SliceIOError.compressed(
          path: path, offset: base + start, problem: String(cString: bs_decomp_problem(decomp)))
      case BS_DECOMP_NOMEM:
        throw SliceIOError.io(path: path, operation: "decompress", errno: ENOMEM)
      case BS_DECOMP_END:
        streamEnded = true
      default:
        if used > 0 || made > 0 { streamEnded = false }
      }
      stalled = used == 0 && made == 0 && status != BS_DECOMP_END
      if stalled && fileEnded {
        // Too few bytes left to start another stream.
        throw SliceIOError.compressed(
          path: path, offset: base + start, problem: "truncated: the file ends inside a \(format) stream")
      }
      if made > 0 { return made }
    }
  }

  /// The decompressor took nothing from what it was given: it needs more bytes at once.
  private var stalled = false

  /// Moves the bytes not yet decompressed to the front and reads more of the file after them.
  private func readInput(from source: any ByteInput) throws {
    if start > 0 {
      memmove(input, input + start, end - start)
      base += start
      end -= start
      start = 0
    }
    let n = try source.read(into: input + end, count: inputCapacity - end)
    if n == 0 { fileEnded = true }
    end += n
    stalled = false
  }
}
