/// A user type stored as one column per field, so that hashing, comparing, sorting, coding and
/// the built-in aggregates run over its fields column by column, in C.
///
/// A conforming type lists its fields once, as its initializer and their key paths:
///
/// ```swift
/// struct Cell: ColumnRecord {
///   var row: Int
///   var column: Int
///   static let columns = RecordColumns(Cell.init(row:column:), \.row, \.column)
/// }
/// ```
///
/// Two values are equal keys when every listed field is equal, and keys order field by field
/// in the listed order. Fields may be scalars, `String`, `[UInt8]`, other records, or any
/// other `Codable` type (a record of its own, or boxed). A `Codable` struct that does not
/// conform is a record too when its decoding allows (see `CodableLayout`), coded through
/// `Encoder` and `Decoder`, which costs more per row than key paths.
public protocol ColumnRecord: ColumnValue, Codable {
  /// The type's fields, in key order.
  static var columns: RecordColumns<Self> { get }
}

extension ColumnRecord {
  public static var columnType: ColumnType { .record(columns.type) }
}

/// The fields of a `ColumnRecord`: how its values become field columns and back.
///
/// Stored properties are read straight from the values' memory, a field column in one pass;
/// a computed property's key path is applied per value. Building values back (for a closure
/// or a scan that reads the record) calls the initializer once per row.
public struct RecordColumns<Root>: @unchecked Sendable {
  /// The record's column layout.
  public let type: RecordType
  /// The field columns of `count` values at `base`, `stride` bytes apart.
  let split: (UnsafeRawPointer, Int, Int) throws -> [Column]
  /// `count` values built from the field columns.
  let build: ([Column], Int) throws -> [Root]

  /// The fields `paths`, and `make`, which builds a value from them (taking them in the same
  /// order; a memberwise initializer usually serves).
  public init<each F: Codable & Hashable & Sendable>(
    _ make: @escaping (repeat each F) -> Root, _ paths: repeat KeyPath<Root, each F>
  ) {
    var fields: [ColumnType] = []
    for field in repeat (each F).self { fields.append(fieldType(field)) }
    type = RecordType(name: String(reflecting: Root.self), fields: fields)
    split = { base, stride, count in
      var columns: [Column] = []
      for path in repeat each paths { columns.append(try fieldColumn(path, base, stride, count)) }
      return columns
    }
    build = { columns, count in
      let cursor = FieldCursor(columns)
      let arrays = (repeat try cursor.next().values(as: (each F).self))
      var values: [Root] = []
      values.reserveCapacity(count)
      var i = 0
      while i < count {
        values.append(make(repeat (each arrays)[i]))
        i += 1
      }
      return values
    }
  }
}

extension Column {
  /// A record column of `values`.
  /// - Throws: `FrameError.unsupported` for a field that has no column.
  public init<R: ColumnRecord>(records values: [R]) throws {
    self = try values.withUnsafeBufferPointer { buffer in
      guard let base = buffer.baseAddress else { return try Column.empty(R.columnType) }
      return try Column.records(opening: R.self, at: UnsafeRawPointer(base), count: buffer.count)
    }
  }

  /// A record column of the `count` values of `T` at `base`: by its key paths for a
  /// `ColumnRecord`, through its `Codable` conformance for another type with a record layout.
  /// - Throws: `FrameError.unsupported` when `T` has no record layout.
  package static func records<T>(_: T.Type, at base: UnsafeRawPointer, count: Int) throws -> Column {
    if let record = T.self as? any ColumnRecord.Type { return try records(opening: record, at: base, count: count) }
    if let codable = T.self as? any (Codable & Hashable & Sendable).Type,
      let column = try codableRecords(codable, at: base, count: count)
    {
      return column
    }
    throw FrameError.unsupported("a record column of \(T.self), which has no record layout")
  }

  private static func records<R: ColumnRecord>(opening _: R.Type, at base: UnsafeRawPointer, count: Int) throws
    -> Column
  {
    let columns = R.columns
    return try Column(
      record: columns.type, fields: try columns.split(base, MemoryLayout<R>.stride, count), count: count)
  }

  /// The rows of a record column of `R`, built once per column storage and kept.
  /// - Throws: `FrameError.typeMismatch` when the column does not hold `R`.
  public func records<R: ColumnRecord>(_: R.Type) throws -> ArraySlice<R> { try storedRecords(R.self) }

  /// The rows of a record column as values of `T` (a `ColumnRecord`, or a `Codable` type whose
  /// record layout this column has), built once per column storage and kept.
  /// - Throws: `FrameError.typeMismatch` otherwise.
  package func recordValues<T>(_: T.Type) throws -> [T] { Array(try storedRecords(T.self)) }

  private func storedRecords<T>(_: T.Type) throws -> ArraySlice<T> {
    guard case .record(let storage) = self.storage else {
      throw FrameError.typeMismatch(expected: "a record column of \(T.self)", found: type.description)
    }
    let all: [T] = try storage.values {
      let whole = Column(type: type, count: storage.rows, offset: 0, storage: self.storage)
      return try whole.buildRecords(T.self)
    }
    return all[offset..<(offset + count)]
  }

  /// Every row of this whole record column as a `T`.
  private func buildRecords<T>(_: T.Type) throws -> [T] {
    if let record = T.self as? any ColumnRecord.Type, type == record.columnType, let fields {
      return try build(record, fields) as! [T]
    }
    if let codable = T.self as? any (Codable & Hashable & Sendable).Type, let values = try decodeRecords(codable) {
      return values as! [T]
    }
    throw FrameError.typeMismatch(expected: "a record column of \(T.self)", found: type.description)
  }

  private func build<R: ColumnRecord>(_: R.Type, _ fields: [Column]) throws -> [R] {
    try R.columns.build(fields, count)
  }

  private func decodeRecords<B: Codable & Hashable & Sendable>(_: B.Type) throws -> [B]? {
    // The column's own layout, whether or not `B` was registered boxed since it was made (a
    // registration while a job runs must not make its record columns unreadable).
    guard let layout = CodableLayout.of(B.self), type == .record(layout.type) else { return nil }
    return try layout.values(B.self, from: self)
  }

  /// Every row as a `T`, which must be the type this column holds.
  /// - Throws: `FrameError.typeMismatch` otherwise.
  package func values<T>(as _: T.Type) throws -> [T] {
    switch storage {
    case .scalar(let s):
      guard let scalar = T.self as? any ScalarValue.Type, type == scalar.columnType else { break }
      return [T](unsafeUninitializedCapacity: count) { out, n in
        if count > 0 {
          UnsafeMutableRawPointer(out.baseAddress!).copyMemory(
            from: s.base + offset * MemoryLayout<T>.stride, byteCount: count * MemoryLayout<T>.stride)
        }
        n = count
      }
    case .bytes:
      let view = variableWidth
      if T.self == String.self, type == .string {
        return unsafeBitCast((0..<count).map { view.string(at: $0) }, to: [T].self)
      }
      if T.self == [UInt8].self, type == .bytes {
        return unsafeBitCast((0..<count).map { view.bytes(at: $0) }, to: [T].self)
      }
    case .boxed(let s):
      if let values = (s as! any AnyBoxedStorage).values(as: T.self) {
        return Array(values[(values.startIndex + offset)..<(values.startIndex + offset + count)])
      }
    case .record:
      return try recordValues(T.self)
    }
    throw FrameError.typeMismatch(expected: "\(T.self)", found: type.description)
  }

  /// The first row of a record column of `T` built as values, kept alive by the column's
  /// storage. Traps when `T` is not the record type (a programming error, as reading a boxed
  /// column as another type is).
  package func recordBase<T>(_: T.Type) -> UnsafeRawPointer? {
    do {
      return try storedRecords(T.self).withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
    } catch {
      preconditionFailure("record column \(type) read as \(T.self): \(error)")
    }
  }
}

/// Hands out the field columns of a record in order.
private final class FieldCursor {
  private var rest: ArraySlice<Column>
  init(_ columns: [Column]) { rest = columns[...] }

  func next() throws -> Column {
    guard let column = rest.popFirst() else { throw FrameError.invalidArgument("a record with too few field columns") }
    return column
  }
}

/// The column type of a record field of type `F`.
private func fieldType<F: Codable & Hashable & Sendable>(_: F.Type) -> ColumnType { Column.codableType(F.self) }

/// The column of field `path` of `count` values at `base`, `stride` bytes apart.
private func fieldColumn<Root, F: Codable & Hashable & Sendable>(
  _ path: KeyPath<Root, F>, _ base: UnsafeRawPointer, _ stride: Int, _ count: Int
) throws -> Column {
  if let offset = MemoryLayout<Root>.offset(of: path) {
    let field = base + offset
    if let scalar = F.self as? any ScalarValue.Type {
      return Column.strided(scalar.scalarKind, field, stride: stride, count: count)
    }
    if F.self == String.self {
      var builder = BytesColumnBuilder(type: .string, rows: count)
      for i in 0..<count { builder.append((field + i * stride).assumingMemoryBound(to: String.self).pointee) }
      return builder.finish()
    }
    if let record = F.self as? any ColumnRecord.Type {
      return try nestedRecord(record, field, stride: stride, count: count)
    }
  }
  var values: [F] = []
  values.reserveCapacity(count)
  for i in 0..<count { values.append((base + i * stride).assumingMemoryBound(to: Root.self).pointee[keyPath: path]) }
  return try Column.make(erasing: values)
}

private func nestedRecord<R: ColumnRecord>(_: R.Type, _ base: UnsafeRawPointer, stride: Int, count: Int) throws
  -> Column
{
  let columns = R.columns
  return try Column(record: columns.type, fields: try columns.split(base, stride, count), count: count)
}

extension Column {
  /// A scalar column of `count` values of `kind` read at `base`, `stride` bytes apart.
  static func strided(_ kind: ScalarKind, _ base: UnsafeRawPointer, stride: Int, count: Int) -> Column {
    let storage = ScalarStorage(byteCount: count * kind.width)
    switch kind.width {
    case 1: copyStrided(UInt8.self, base, stride, count, storage.base)
    case 2: copyStrided(UInt16.self, base, stride, count, storage.base)
    case 4: copyStrided(UInt32.self, base, stride, count, storage.base)
    default: copyStrided(UInt64.self, base, stride, count, storage.base)
    }
    return Column(type: .scalar(kind), count: count, offset: 0, storage: .scalar(storage))
  }
}

private func copyStrided<T: FixedWidthInteger>(
  _: T.Type, _ base: UnsafeRawPointer, _ stride: Int, _ count: Int, _ out: UnsafeMutableRawPointer
) {
  let dst = out.assumingMemoryBound(to: T.self)
  for i in 0..<count { dst[i] = (base + i &* stride).loadUnaligned(as: T.self) }
}
