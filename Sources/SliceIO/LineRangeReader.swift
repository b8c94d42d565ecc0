import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// Reads the lines that start in byte range `shard` of `shards` of a file, without their line
/// endings: shards of one file split its lines between them, none read twice.
public final class LineRangeReader {
  private let path: String
  private let fd: Int32
  private var buffer: UnsafeMutablePointer<UInt8>
  private var capacity = 1 << 20
  private var start = 0
  private var end = 0
  /// File offset of `buffer[start]`.
  private var offset: Int
  private let stop: Int
  private var eof = false

  /// Opens `path` at the start of its range `shard` of `shards`.
  /// - Throws: `SliceIOError.io` when the file cannot be opened, examined or positioned.
  public init(path: String, shard: Int, of shards: Int) throws {
    self.path = path
    fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 { throw SliceIOError.io(path: path, operation: "open", errno: errno) }
    var info = stat()
    guard fstat(fd, &info) == 0 else {
      let code = errno
      close(fd)
      throw SliceIOError.io(path: path, operation: "stat", errno: code)
    }
    let size = Int(info.st_size)
    let from = shard * size / shards
    stop = (shard + 1) * size / shards
    buffer = .allocate(capacity: capacity)
    // A line belongs to the range its first byte is in: start after the first newline at or
    // after from - 1, unless from is 0.
    offset = max(from - 1, 0)
    if lseek(fd, off_t(offset), SEEK_SET) < 0 {
      // Every property is set, so deinit closes the file and frees the buffer.
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

  deinit {
    close(fd)
    buffer.deallocate()
  }

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
    let n = read(fd, buffer + end, capacity - end)
    if n < 0 { throw SliceIOError.io(path: path, operation: "read", errno: errno) }
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
