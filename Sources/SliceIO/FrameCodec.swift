import CSupport
import Frame

/// How frames become blocks: compression level, column transform and block size.
public struct CodecOptions: Sendable, Hashable {
  /// The zstd level (negative: zstd's fast modes; `BlockEncoder.stored`: no compression;
  /// `BlockEncoder.fast`: runs of repeated bytes, zstd only where that pays).
  public var level: Int32
  /// The transform applied to fixed-width columns (and string lengths) before compression.
  public var transform: ColumnTransform
  /// Frames are cut into blocks of about this many raw bytes, so no block is huge and a
  /// reader holds one block at a time.
  public var targetBlockBytes: Int

  public init(
    level: Int32 = CodecOptions.default.level, transform: ColumnTransform = CodecOptions.default.transform,
    targetBlockBytes: Int = CodecOptions.default.targetBlockBytes
  ) {
    self.level = level
    self.transform = transform
    self.targetBlockBytes = targetBlockBytes
  }

  /// The default for spill files, shuffle partitions and caches: byte shuffling, then zstd
  /// level 1, which compresses keys further than the negative levels at nearly their speed.
  /// Spilling is bound by the disk, not the CPU, so the smaller output wins
  /// (`bigslice-bench kernels --only blocks` measures both).
  public static let `default` = CodecOptions(level: 1, transform: .byteShuffle, targetBlockBytes: 1 << 20)

  /// For a machine's store of task outputs, which stay in the page cache until a peer or the
  /// driver reads them back: CPU-bound, not disk-bound, so runs of repeated bytes (the zero
  /// planes of shuffled small integers), at about memcpy's speed, with zstd only where runs
  /// do little and zstd does clearly better (text). `bigslice-bench kernels --only blocks`
  /// measures both against zstd.
  public static let fast = CodecOptions(level: BlockEncoder.fast, transform: .byteShuffle, targetBlockBytes: 1 << 20)
}

/// What one block of a stream holds.
public enum StreamBlock {
  /// A frame of rows.
  case frame(Frame)
  /// The end marker: the stream holds `rows` rows in `blocks` frame blocks before it, and the
  /// table its writer gave (`FrameEncoder.encodeEnd`). A stream without it was cut short.
  case end(rows: Int, blocks: Int, table: [UInt32]?)
}

private enum PayloadKind: UInt8 {
  case frame = 1
  case end = 2
}

/// Encodes frames, and the end marker, as blocks.
///
/// Payload of a frame block (little-endian): `u8 kind = 1`, `u32 columns`, `u32 prefix`, a type
/// descriptor per column (`u8 tag`, then `u8 scalar kind` or `u16 length + name` for boxed),
/// then each column's encoding (`Column.encode`). The row count is the block header's.
/// Payload of the end block: `u8 kind = 2`, `u64 rows`, `u64 blocks`, and for a stream with a
/// table (a packed shuffle section's rows per partition) `u8 width` (2 or 4), then its values of
/// that many bytes.
public final class FrameEncoder {
  public let options: CodecOptions
  private let blocks: BlockEncoder
  private let payload = ByteWriter()

  /// Records nest at most this deep in a block's types.
  static let recordDepth = 16

  public init(options: CodecOptions = .default) {
    self.options = options
    blocks = BlockEncoder(level: options.level)
  }

  /// The number of rows per block for frames of this shape: about `targetBlockBytes` each.
  public func rowsPerBlock(_ frame: Frame) -> Int {
    guard frame.count > 0 else { return 1 }
    let perRow = max(1, frame.byteCount / frame.count)
    return max(1, options.targetBlockBytes / perRow)
  }

  /// Appends `frame` to `out` as one block. Callers cut big frames with `rowsPerBlock` first.
  public func encode(_ frame: Frame, into out: ByteWriter) throws {
    payload.removeAll()
    payload.append(PayloadKind.frame.rawValue)
    payload.append(UInt32(frame.columns.count))
    payload.append(UInt32(frame.prefix))
    do {
      for column in frame.columns { try encodeType(column.type) }
      for column in frame.columns { try column.encode(into: payload, transform: options.transform) }
    } catch let error as FrameError {
      throw SliceIOError.frame(error)
    }
    try blocks.encode(payload.bytes, rows: frame.count, into: out)
  }

  /// Appends `frame` as blocks of about `targetBlockBytes` each, calling `afterEach` with the
  /// rows of each block once it is in `out` (a sink flushes there).
  public func encodeBlocks(_ frame: Frame, into out: ByteWriter, afterEach: (Int) throws -> Void) throws {
    let step = rowsPerBlock(frame)
    var at = 0
    while at < frame.count {
      let piece = frame.slice(at..<min(at + step, frame.count))
      try encode(piece, into: out)
      at += piece.count
      try afterEach(piece.count)
    }
  }

  /// Appends the end marker of a stream of `blocks` frame blocks holding `rows` rows, carrying
  /// `table` when given (2 bytes a value when they all fit).
  public func encodeEnd(rows: Int, blocks count: Int, table: [UInt32]? = nil, into out: ByteWriter) throws {
    payload.removeAll()
    payload.append(PayloadKind.end.rawValue)
    payload.append(UInt64(rows))
    payload.append(UInt64(count))
    if let table {
      if table.allSatisfy({ $0 <= UInt32(UInt16.max) }) {
        payload.append(UInt8(2))
        for value in table { payload.append(UInt16(value)) }
      } else {
        payload.append(UInt8(4))
        for value in table { payload.append(value) }
      }
    }
    try blocks.encode(payload.bytes, rows: 0, into: out)
  }

  private func encodeType(_ type: ColumnType, depth: Int = 0) throws {
    switch type {
    case .scalar(let kind):
      payload.append(UInt8(1))
      payload.append(kind.rawValue)
    case .string: payload.append(UInt8(2))
    case .bytes: payload.append(UInt8(3))
    case .boxed(let name):
      payload.append(UInt8(4))
      appendName(name)
    case .record(let record):
      // What the decoder would refuse is refused here, before anything is written.
      guard depth < Self.recordDepth, record.fields.count <= Int(UInt16.max) else {
        throw FrameError.unsupported(
          "record \(record.name): records nest at most \(Self.recordDepth) deep, with at most \(UInt16.max) fields")
      }
      payload.append(UInt8(5))
      appendName(record.name)
      payload.append(UInt16(record.fields.count))
      for field in record.fields { try encodeType(field, depth: depth + 1) }
    }
  }

  private func appendName(_ name: String) {
    let utf8 = Array(name.utf8.prefix(Int(UInt16.max)))
    payload.append(UInt16(utf8.count))
    payload.append(utf8)
  }
}

/// Decodes blocks back into frames, checking each against the expected schema.
public final class FrameDecoder {
  /// The schema every frame must have; nil accepts any.
  public let schema: Schema?

  public init(schema: Schema?) { self.schema = schema }

  /// Decodes the block in `block` (exactly one block), which is block `index` of `source`.
  /// - Throws: `SliceIOError.integrity` for damaged bytes or a malformed frame,
  ///   `SliceIOError.schemaMismatch` for a frame of other types.
  package func decode(_ block: UnsafeRawBufferPointer, source: String, index: Int) throws -> StreamBlock {
    // The thread's block decoder: its bytes are used up before this returns.
    let (raw, rows) = try BlockDecoder.current.decode(block, source: source, index: index)
    var reader = ByteReader(raw)
    do {
      let kind = try reader.read(UInt8.self, "payload kind")
      switch PayloadKind(rawValue: kind) {
      case .end:
        let total = try reader.readCount("end marker row count", limit: Int.max)
        let count = try reader.readCount("end marker block count", limit: Int.max)
        guard reader.remaining > 0 else { return .end(rows: total, blocks: count, table: nil) }
        let width = Int(try reader.read(UInt8.self, "end marker table width"))
        guard width == 2 || width == 4, reader.remaining % width == 0 else {
          throw FrameError.corrupt("an end marker table of \(width)-byte values in \(reader.remaining) bytes")
        }
        var table: [UInt32] = []
        table.reserveCapacity(reader.remaining / width)
        while reader.remaining > 0 {
          table.append(
            width == 2
              ? UInt32(try reader.read(UInt16.self, "table value")) : try reader.read(UInt32.self, "table value"))
        }
        return .end(rows: total, blocks: count, table: table)
      case .frame:
        guard rows <= UInt64(Int32.max) else { throw FrameError.corrupt("a frame of \(rows) rows") }
        let columnCount = Int(try reader.read(UInt32.self, "column count"))
        let prefix = Int(try reader.read(UInt32.self, "key prefix"))
        guard columnCount <= 4096, prefix <= columnCount else {
          throw FrameError.corrupt("\(columnCount) columns with prefix \(prefix)")
        }
        var types: [ColumnType] = []
        for _ in 0..<columnCount { types.append(try decodeType(&reader)) }
        if let schema, schema.types != types {
          throw SliceIOError.schemaMismatch(
            source: source, block: index, expected: schema.description, found: Schema(types, prefix: prefix).description
          )
        }
        var columns: [Column] = []
        for type in types { columns.append(try Column.decode(type, count: Int(rows), from: &reader)) }
        guard reader.remaining == 0 else { throw FrameError.corrupt("\(reader.remaining) bytes after the last column") }
        return .frame(try Frame(columns, prefix: schema?.prefix ?? prefix))
      case nil:
        throw FrameError.corrupt("unknown payload kind \(kind)")
      }
    } catch let error as FrameError {
      switch error {
      case .corrupt(let what):
        throw SliceIOError.integrity(source: source, block: index, problem: .malformedPayload(what))
      default:
        throw SliceIOError.frame(error)
      }
    }
  }

  private func decodeType(_ reader: inout ByteReader, depth: Int = 0) throws -> ColumnType {
    let tag = try reader.read(UInt8.self, "column type tag")
    switch tag {
    case 1:
      let raw = try reader.read(UInt8.self, "scalar kind")
      guard let kind = ScalarKind(rawValue: raw) else { throw FrameError.corrupt("unknown scalar kind \(raw)") }
      return .scalar(kind)
    case 2: return .string
    case 3: return .bytes
    case 4:
      let n = Int(try reader.read(UInt16.self, "boxed type name length"))
      let name = try reader.take(n, "boxed type name")
      return .boxed(String(decoding: name, as: UTF8.self))
    case 5:
      guard depth < FrameEncoder.recordDepth else {
        throw FrameError.corrupt("records nested deeper than \(FrameEncoder.recordDepth)")
      }
      let n = Int(try reader.read(UInt16.self, "record type name length"))
      let name = String(decoding: try reader.take(n, "record type name"), as: UTF8.self)
      let count = Int(try reader.read(UInt16.self, "record field count"))
      // Every field's type takes at least a byte.
      guard count <= reader.remaining else { throw FrameError.corrupt("a record of \(count) fields") }
      var fields: [ColumnType] = []
      for _ in 0..<count { fields.append(try decodeType(&reader, depth: depth + 1)) }
      return .record(RecordType(name: name, fields: fields))
    default:
      throw FrameError.corrupt("unknown column type tag \(tag)")
    }
  }
}
