/// A frame's column values as raw pointers, for copying many small row ranges of many frames
/// into one (a many-way shuffle's read) without touching a reference count per range: two
/// threads reading ranges of the same frames would otherwise contend on its columns' counts.
///
/// The pointers are valid while the frame lives: the owner of a `RawFrame` keeps the frame and
/// calls `deallocate()` once.
public struct RawFrame: @unchecked Sendable {
  @usableFromInline enum RawColumn {
    /// Values of `width` bytes each, from `base`.
    case scalar(base: UnsafeRawPointer, width: Int)
    /// `offsets` (absolute into `bytes`) of rows 0 …
    case bytes(offsets: UnsafePointer<Int64>, bytes: UnsafePointer<UInt8>)
  }

  private let columns: UnsafeMutableBufferPointer<RawColumn>
  /// The frame's rows.
  public let count: Int

  /// The raw columns of `frame`, records as their leaves; nil when a column is boxed (its
  /// values are objects).
  public init?(_ frame: Frame) {
    var raw: [RawColumn] = []
    for column in frame.leaves {
      switch (column.type, column.storage) {
      case (.scalar(let kind), .scalar(let s)):
        raw.append(.scalar(base: UnsafeRawPointer(s.base) + column.offset * kind.width, width: kind.width))
      case (.string, .bytes), (.bytes, .bytes):
        let view = column.variableWidth
        raw.append(.bytes(offsets: view.offsets, bytes: view.bytes))
      default:
        return nil
      }
    }
    columns = .allocate(capacity: raw.count)
    _ = columns.initialize(from: raw)
    count = frame.count
  }

  /// Frees the pointers (not the frame's values).
  public func deallocate() { columns.deallocate() }

  /// One frame of `schema` holding rows `rows` of each piece in order. Every piece must come
  /// from a frame of `schema`'s types.
  public static func concat(_ pieces: [(frame: RawFrame, rows: Range<Int>)], schema: Schema) throws -> Frame {
    let rows = pieces.reduce(0) { $0 + $1.rows.count }
    var out: [Column] = []
    for (c, type) in schema.types.flatMap(\.leafTypes).enumerated() {
      switch type {
      case .scalar(let kind):
        let storage = ScalarStorage(byteCount: rows * kind.width)
        var at = storage.base
        for (frame, range) in pieces {
          guard case .scalar(let base, let width) = frame.columns[c] else {
            preconditionFailure("column \(c) is not \(type)")
          }
          let n = range.count * width
          at.copyMemory(from: base + range.lowerBound * width, byteCount: n)
          at += n
        }
        out.append(Column(type: type, count: rows, offset: 0, storage: .scalar(storage)))
      case .string, .bytes:
        var total = 0
        for (frame, range) in pieces {
          guard case .bytes(let offsets, _) = frame.columns[c] else {
            preconditionFailure("column \(c) is not \(type)")
          }
          total += Int(offsets[range.upperBound] - offsets[range.lowerBound])
        }
        let storage = BytesStorage(rows: rows, byteCount: total)
        var row = 0
        var byte: Int64 = 0
        storage.offsets[0] = 0
        for (frame, range) in pieces {
          guard case .bytes(let offsets, let bytes) = frame.columns[c] else {
            preconditionFailure("column \(c) is not \(type)")
          }
          let start = offsets[range.lowerBound]
          let n = Int(offsets[range.upperBound] - start)
          if n > 0 { (storage.bytes + Int(byte)).update(from: bytes + Int(start), count: n) }
          for i in 0..<range.count { storage.offsets[row + i + 1] = offsets[range.lowerBound + i + 1] - start + byte }
          row += range.count
          byte += Int64(n)
        }
        out.append(Column(type: type, count: rows, offset: 0, storage: .bytes(storage)))
      case .boxed, .record:
        preconditionFailure("a raw frame has no boxed columns, and records as their leaves")
      }
    }
    let columns = try Column.assemble(schema.types, count: rows, from: out)
    return Frame(unchecked: columns, count: rows, prefix: schema.prefix)
  }
}
