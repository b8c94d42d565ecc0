import CSupport

#if canImport(Glibc)
  import Glibc
#endif

/// The bytes one shard reads of one input, in a buffer that grows to hold the longest row:
/// those of the rows that start in its byte range of a plain file, or all of a compressed
/// file or stream (decompressed), or nothing. Text readers (`LineRangeReader`,
/// `DelimitedReader`) take their rows from it.
///
/// A plain file is cut into `shards` byte ranges, and a row belongs to the range its first
/// byte is in; the buffer starts at the first row that starts in the shard's range. A
/// compressed file, or a file that must be read whole, goes to shard `fileIndex % shards`.
package final class InputBuffer {
  /// The file's path or the stream's name, for errors.
  package let name: String
  private let input: any ByteInput
  /// The file, when it is a plain file read by byte range (its lines can be counted).
  private let seekable: String?
  package private(set) var buffer: UnsafeMutablePointer<UInt8>
  private var capacity = 1 << 20
  /// The bytes read and not yet consumed are `buffer[start ..< end]`.
  package private(set) var start = 0
  package private(set) var end = 0
  /// Offset of `buffer[start]` in the input's (decompressed) bytes.
  package private(set) var offset: Int
  /// Rows that start at or after this offset belong to the next shard.
  package let stop: Int
  /// Where this shard's rows start in the input.
  package private(set) var rangeStart = 0
  /// The input has no more bytes than `buffer[start ..< end]`.
  package private(set) var eof = false
  private var compressed: CompressedInput?

  /// Opens `path` at the first row of its range `shard` of `shards`. `fileIndex`, the file's
  /// place in the job's list, picks the shard that reads it when it is compressed or when
  /// `whole` says it cannot be cut.
  /// - Throws: `SliceIOError.io` when the file cannot be opened, examined, read or positioned.
  package init(path: String, shard: Int, of shards: Int, fileIndex: Int = 0, whole: Bool = false) throws {
    name = path
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
      seekable = nil
      throw SliceIOError.io(path: path, operation: "read", errno: errno)
    }
    let kind = withUnsafeBytes(of: head) { bs_decomp_sniff($0.baseAddress, got) }
    if kind != BS_DECOMP_NONE || whole {
      offset = 0
      seekable = nil
      let mine = ((fileIndex % shards) + shards) % shards == shard
      stop = mine ? Int.max : 0
      if mine && kind != BS_DECOMP_NONE { compressed = try CompressedInput(kind: kind, path: path) }
      return
    }
    seekable = path
    var info = stat()
    guard fstat(fd, &info) == 0 else {
      offset = 0
      stop = 0
      throw SliceIOError.io(path: path, operation: "stat", errno: errno)
    }
    let size = Int(info.st_size)
    let from = shard * size / shards
    stop = (shard + 1) * size / shards
    // A row belongs to the range its first byte is in: start after the first newline at or
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
    rangeStart = offset
  }

  /// Reads all of `stream`, decompressing it when its first bytes are gzip's or zstd's.
  /// - Throws: what the stream throws as its first bytes are read.
  package init(stream: any ByteInput) throws {
    name = stream.name
    input = stream
    seekable = nil
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
      compressed = try CompressedInput(kind: kind, path: name, first: UnsafeRawBufferPointer(start: buffer, count: end))
      end = 0
    } else if end < 4 {
      eof = true
    }
  }

  deinit { buffer.deallocate() }

  /// Marks the first `n` bytes not yet consumed as read.
  package func consume(_ n: Int) {
    start += n
    offset += n
  }

  /// Reads more bytes after those not yet consumed, growing the buffer when they fill it;
  /// sets `eof` at the end of the input.
  /// - Throws: `SliceIOError.io` or `.compressed` from the input.
  package func fill() throws {
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

  /// Reads until the bytes not yet consumed are at least twice as many as now (64 KiB more at
  /// least), or the input ends: a reader that found no whole row in them calls this, so a row
  /// that arrives in many small reads is scanned a logarithmic number of times, not once a
  /// read.
  package func fillMore() throws {
    let want = max(2 * (end - start), end - start + (64 << 10))
    repeat { try fill() } while !eof && end - start < want
  }

  /// The number of line feeds before `rangeStart` in the input (read again from its start
  /// for a file cut into ranges): with the lines a reader counted since, the line number of
  /// a row, for errors.
  package func linesBeforeRange() -> Int? {
    guard rangeStart > 0 else { return 0 }
    guard let seekable else { return nil }
    let fd = open(seekable, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { chunk.deallocate() }
    var lines = 0
    var at = 0
    while at < rangeStart {
      let n = pread(fd, chunk, min(1 << 20, rangeStart - at), off_t(at))
      guard n > 0 else { return nil }
      lines += lineFeeds(in: UnsafeRawPointer(chunk), count: n)
      at += n
    }
    return lines
  }
}

/// The line feeds in the `count` bytes at `bytes`.
package func lineFeeds(in bytes: UnsafeRawPointer, count: Int) -> Int {
  var lines = 0
  var p = bytes
  var left = count
  while left > 0, let hit = memchr(p, 0x0A, left) {
    lines += 1
    left -= p.distance(to: hit) + 1
    p = UnsafeRawPointer(hit + 1)
  }
  return lines
}
