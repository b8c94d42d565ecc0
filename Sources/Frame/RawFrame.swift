import CSupport

/// Where each piece's rows start in each scalar column, and each piece's row count: what
/// `bs_copy_pieces` copies, found in one pass over the pieces.
private struct ScalarSources {
  /// `pieces.count` sources per leaf column (nil for a column of bytes).
  private let sources: UnsafeMutablePointer<UnsafeRawPointer?>
  private let count: Int
  let rows: UnsafeMutablePointer<UInt32>

  init(_ pieces: [(frame: RawFrame, rows: Range<Int>)], _ leaves: [ColumnType]) {
    count = pieces.count
    sources = .allocate(capacity: max(count * leaves.count, 1))
    rows = .allocate(capacity: max(count, 1))
    pieces.withUnsafeBufferPointer { pieces in
      for (k, (frame, range)) in pieces.enumerated() {
        // The next pieces' column pointers, each in an allocation of its own.
        if k + 8 < pieces.count { bs_prefetch(pieces[k + 8].frame.columns.baseAddress) }
        precondition(range.count <= Int(UInt32.max), "a piece of \(range.count) rows")
        rows[k] = UInt32(range.count)
        for c in leaves.indices {
          guard case .scalar(let base, let width) = frame.columns[c] else {
            sources[c * count + k] = nil
            continue
          }
          sources[c * count + k] = base + range.lowerBound * width
        }
      }
    }
  }

  /// Column `c`'s source for each piece.
  func column(_ c: Int) -> UnsafePointer<UnsafeRawPointer?> { UnsafePointer(sources + c * count) }

  func deallocate() {
    sources.deallocate()
    rows.deallocate()
  }
}

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

  fileprivate let columns: UnsafeMutableBufferPointer<RawColumn>
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
    let leaves = schema.types.flatMap(\.leafTypes)
    let sources = ScalarSources(pieces, leaves)
    defer { sources.deallocate() }
    var out: [Column] = []
    for (c, type) in leaves.enumerated() {
      switch type {
      case .scalar(let kind):
        let storage = ScalarStorage(byteCount: rows * kind.width)
        let status = bs_copy_pieces(sources.column(c), sources.rows, pieces.count, kind.width, storage.base)
        precondition(status == BS_OK, "bs_copy_pieces refused width \(kind.width)")
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
