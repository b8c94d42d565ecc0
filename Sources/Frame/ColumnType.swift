import CSupport

/// The fixed-width scalar kinds a column can hold in one contiguous buffer.
///
/// `Int` and `UInt` map to `int64` and `uint64` (64-bit platforms only). `bool` is one byte,
/// 0 or 1.
public enum ScalarKind: UInt8, Sendable, Codable, CaseIterable {
  case int8 = 1
  case int16, int32, int64, uint8, uint16, uint32, uint64, float, double, bool

  /// Bytes per value.
  public var width: Int {
    switch self {
    case .int8, .uint8, .bool: 1
    case .int16, .uint16: 2
    case .int32, .uint32, .float: 4
    case .int64, .uint64, .double: 8
    }
  }

  /// The order-preserving transform that maps this kind to radix-sortable u64 keys.
  var radixKind: bs_key_kind {
    switch self {
    case .int8: BS_KEY_I8
    case .int16: BS_KEY_I16
    case .int32: BS_KEY_I32
    case .int64: BS_KEY_I64
    case .uint8, .bool: BS_KEY_U8
    case .uint16: BS_KEY_U16
    case .uint32: BS_KEY_U32
    case .uint64: BS_KEY_U64
    case .float: BS_KEY_F32
    case .double: BS_KEY_F64
    }
  }
}

/// What a column holds. This is the unit of type checking between stages, files and machines:
/// two columns with equal `ColumnType`s have the same layout and the same `Ops`.
public enum ColumnType: Hashable, Sendable, Codable, CustomStringConvertible {
  /// Fixed-width values in one contiguous buffer.
  case scalar(ScalarKind)
  /// UTF-8 strings, as offsets plus bytes.
  case string
  /// Byte arrays (`[UInt8]`), as offsets plus bytes.
  case bytes
  /// Any other `Codable & Hashable` type, held boxed in a Swift array. The name is the one the
  /// type was registered under (see `BoxedOps`).
  case boxed(String)
  /// A user type stored as one column per field (`ColumnRecord`): the kernels hash, compare,
  /// sort and code its fields column by column.
  case record(RecordType)

  public var description: String {
    switch self {
    case .scalar(let kind): "\(kind)"
    case .string: "string"
    case .bytes: "bytes"
    case .boxed(let name): "boxed(\(name))"
    case .record(let record): record.description
    }
  }

  /// True for a boxed column, or a record with a boxed field or no fields: one the C kernels
  /// cannot hash, compare or group.
  public var isBoxed: Bool {
    switch self {
    case .boxed: true
    case .record(let record): record.fields.contains(where: \.isBoxed) || leafTypes.isEmpty
    default: false
    }
  }

  /// The field types of a record; nil for other types.
  public var fields: [ColumnType]? {
    if case .record(let record) = self { return record.fields }
    return nil
  }

  /// The types of the columns this type is stored as, records expanded field by field in
  /// order: itself for any other type.
  public var leafTypes: [ColumnType] {
    guard case .record(let record) = self else { return [self] }
    return record.fields.flatMap(\.leafTypes)
  }

  /// True for columns stored as offsets plus bytes.
  public var isVariableWidth: Bool {
    switch self {
    case .string, .bytes: true
    default: false
    }
  }
}

/// The layout of a record column: the type's name and one column type per field, in the
/// order its `ColumnRecord.columns` lists them.
public struct RecordType: Hashable, Sendable, Codable, CustomStringConvertible {
  /// The Swift type's full name: records of different types never mix, whatever their fields.
  public var name: String
  /// One type per field.
  public var fields: [ColumnType]

  public init(name: String, fields: [ColumnType]) {
    self.name = name
    self.fields = fields
  }

  public var description: String {
    "\(name)(" + fields.map(\.description).joined(separator: ", ") + ")"
  }
}

/// The column types of a frame or slice, and how many leading columns form its key.
public struct Schema: Hashable, Sendable, Codable, CustomStringConvertible {
  /// One type per column.
  public var types: [ColumnType]
  /// The number of leading columns that form the key (0 ... types.count).
  public var prefix: Int

  /// Creates a schema. `prefix` is clamped to `0 ... types.count`.
  public init(_ types: [ColumnType], prefix: Int = 1) {
    self.types = types
    self.prefix = max(0, min(prefix, types.count))
  }

  public var count: Int { types.count }

  public var description: String {
    "(" + types.map(\.description).joined(separator: ", ") + ") prefix \(prefix)"
  }
}
