import CSupport
import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// Reads the lines that start in byte range `shard` of `shards` of a file, without their line
/// endings: shards of one file split its lines between them, none read twice. Or reads every
/// line of a `ByteInput`.
///
/// A file compressed with gzip (any number of members) or zstd (any number of frames),
/// recognised by its first bytes whatever its name, is decompressed as it is read. It cannot
/// be split, so it is one shard's unit of work: shard `fileIndex % shards` reads all of it,
/// and the others none.
public final class LineRangeReader: FrameSource {
  private let input: InputBuffer

  /// Opens `path` at the start of its range `shard` of `shards`; `fileIndex` is the file's
  /// place in the job's list, which picks the shard that reads a compressed file.
  /// - Throws: `SliceIOError.io` when the file cannot be opened, examined, read or positioned.
  public init(path: String, shard: Int, of shards: Int, fileIndex: Int = 0) throws {
    input = try InputBuffer(path: path, shard: shard, of: shards, fileIndex: fileIndex)
  }

  /// Reads every line of `stream`, decompressing it when its first bytes are gzip's or
  /// zstd's.
  /// - Throws: what the stream throws as its first bytes are read.
  public init(stream: any ByteInput) throws {
    input = try InputBuffer(stream: stream)
  }

  /// Up to `rows` more lines, or nil when the range is done.
  public func next(rows: Int) throws -> Frame? {
    var builder = BytesColumnBuilder(type: .string, rows: rows, bytesPerRow: 32)
    let input = self.input
    while builder.count < rows && input.offset < input.stop {
      let at = input.buffer + input.start
      let available = input.end - input.start
      if let nl = memchr(at, 0x0A, available) {
        let length = at.distance(to: nl.assumingMemoryBound(to: UInt8.self))
        var content = length
        if content > 0 && at[content - 1] == 0x0D { content -= 1 }
        builder.append(bytes: UnsafeRawBufferPointer(start: at, count: content))
        input.consume(length + 1)
        continue
      }
      if input.eof {
        // The last line has no newline.
        if available > 0 { builder.append(bytes: UnsafeRawBufferPointer(start: at, count: available)) }
        input.consume(available)
        break
      }
      try input.fillMore()
    }
    let count = builder.count
    let column = builder.finish()
    return count == 0 ? nil : try Frame([column])
  }
}
