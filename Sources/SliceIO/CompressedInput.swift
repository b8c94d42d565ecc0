import CSupport

#if canImport(Glibc)
  import Glibc
#endif

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
