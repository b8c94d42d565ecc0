import CSupport
import Frame

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Compresses raw bytes into blocks (see `bs_block.h` for the format). Holds a reusable zstd
/// context: one encoder per thread.
public final class BlockEncoder {
  /// The zstd level; negative levels are zstd's fast modes, `BlockEncoder.stored` skips
  /// compression, and `BlockEncoder.fast` codes runs of repeated bytes.
  public let level: Int32
  /// The level that stores bytes uncompressed.
  public static let stored = Int32(BS_BLOCK_LEVEL_RAW)
  /// The level that codes runs of a repeated byte at about memcpy's speed, and tries zstd −1
  /// only on blocks of 1 KiB or more where runs do little, for as long as zstd does clearly
  /// better there (see `bs_block_encode`): a block's coding then depends on what this encoder
  /// coded before.
  public static let fast = Int32(BS_BLOCK_LEVEL_FAST)
  private let context: OpaquePointer

  public init(level: Int32) {
    self.level = level
    guard let context = bs_block_encoder_new() else { fatalError("out of memory creating a zstd context") }
    self.context = context
  }

  deinit { bs_block_encoder_free(context) }

  /// Appends `raw` as one block holding `rows` rows to `out`.
  /// - Throws: `SliceIOError.frame(.unsupported)` when `raw` is over the 1 GiB block bound.
  package func encode(_ raw: UnsafeRawBufferPointer, rows: Int, into out: ByteWriter) throws {
    guard raw.count <= Int(BS_BLOCK_MAX_RAW) else {
      throw SliceIOError.frame(.unsupported("a block of \(raw.count) bytes (the bound is \(BS_BLOCK_MAX_RAW))"))
    }
    let bound = Int(bs_block_bound(raw.count))
    let dst = out.reserve(bound)
    let n = bs_block_encode(context, raw.baseAddress, raw.count, UInt64(rows), Int32(level), dst, bound)
    guard n >= 0 else {
      let error = String(cString: bs_error_name(Int32(clamping: n)))
      throw SliceIOError.frame(.unsupported("a block could not be encoded (\(error))"))
    }
    out.commit(Int(n))
  }
}

/// Checks and decompresses blocks. Holds a reusable zstd context: one decoder per thread.
public final class BlockDecoder {
  private let context: OpaquePointer
  private let raw = ByteWriter()

  public init() {
    guard let context = bs_block_decoder_new() else { fatalError("out of memory creating a zstd context") }
    self.context = context
  }

  deinit { bs_block_decoder_free(context) }

  /// Decodes the block in `block` (which must hold exactly one whole block) after checking
  /// every length and both checksums. The returned bytes are valid until the next call.
  /// - Throws: `SliceIOError.integrity` naming `source`, `index` and the failed check.
  package func decode(_ block: UnsafeRawBufferPointer, source: String, index: Int) throws -> (
    raw: UnsafeRawBufferPointer, rows: UInt64
  ) {
    var info = bs_block_info()
    let total = bs_block_peek(block.baseAddress, block.count, &info)
    if total < 0 { throw SliceIOError.integrity(source: source, block: index, problem: problem(total, index)) }
    raw.removeAll()
    let dst = raw.reserve(Int(info.raw_len))
    let n = bs_block_decode(context, block.baseAddress, block.count, dst, Int(info.raw_len), &info)
    if n < 0 { throw SliceIOError.integrity(source: source, block: index, problem: problem(n, index)) }
    raw.commit(Int(n))
    return (raw.bytes, info.rows)
  }

  private func problem(_ code: Int64, _ index: Int) -> IntegrityProblem {
    blockProblem(code, index)
  }

  /// The calling thread's decoder, made on its first use and freed with the thread. For
  /// decoders that use the bytes before they return: a reader that opens thousands of small
  /// streams (a shuffle's sections) would otherwise make and free a zstd context for each.
  static var current: BlockDecoder { perThread.value }

  private static let perThread = PerThread { BlockDecoder() }
}

/// One object per thread, made on the thread's first use and released when the thread ends.
final class PerThread<T: AnyObject>: @unchecked Sendable {
  private var key = pthread_key_t()
  private let make: () -> T

  init(_ make: @escaping () -> T) {
    self.make = make
    let made = pthread_key_create(&key) { held in
      guard let held else { return }
      Unmanaged<AnyObject>.fromOpaque(held).release()
    }
    precondition(made == 0, "pthread_key_create failed: \(made)")
  }

  /// The calling thread's object.
  var value: T {
    if let held = pthread_getspecific(key) {
      return Unmanaged<AnyObject>.fromOpaque(held).takeUnretainedValue() as! T
    }
    let made = make()
    pthread_setspecific(key, Unmanaged<AnyObject>.passRetained(made).toOpaque())
    return made
  }
}

/// Maps a `bs_block` error code (a negative result of `bs_block_peek` or `bs_block_decode`)
/// to its meaning.
func blockProblem(_ code: Int64, _ index: Int) -> IntegrityProblem {
  let error = bs_error(rawValue: Int32(clamping: code))
  switch error {
  case BS_ESHORT: return .truncated("the bytes end inside block \(index)")
  case BS_EMAGIC: return .badMagic
  case BS_EVERSION: return .unsupportedVersion
  case BS_EHEADER: return .headerChecksum
  case BS_ECODEC: return .badCodec
  case BS_ELENGTH, BS_EDSTSIZE: return .badLength
  case BS_EDECOMPRESS: return .decompression
  case BS_ECHECKSUM: return .checksum
  default: return .malformedPayload(String(cString: bs_error_name(error.rawValue)))
  }
}
