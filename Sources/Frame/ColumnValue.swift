/// A Swift type with a native column layout.
///
/// Fixed-width scalars (`ScalarValue`) live in one contiguous buffer; `String` and `[UInt8]`
/// live as offsets plus bytes. Every other `Codable & Hashable` type can still be stored, in a
/// boxed column (see `BoxedOps`), which is the escape hatch and not the fast path.
public protocol ColumnValue: Hashable, Sendable {
  /// The column type that holds values of this type.
  static var columnType: ColumnType { get }
}

/// A fixed-width value stored bit for bit in a contiguous buffer.
public protocol ScalarValue: ColumnValue, BitwiseCopyable {
  /// The scalar kind, whose `width` is `MemoryLayout<Self>.size`.
  static var scalarKind: ScalarKind { get }
}

extension ScalarValue {
  public static var columnType: ColumnType { .scalar(scalarKind) }
}

extension Int8: ScalarValue { public static var scalarKind: ScalarKind { .int8 } }
extension Int16: ScalarValue { public static var scalarKind: ScalarKind { .int16 } }
extension Int32: ScalarValue { public static var scalarKind: ScalarKind { .int32 } }
extension Int64: ScalarValue { public static var scalarKind: ScalarKind { .int64 } }
extension Int: ScalarValue { public static var scalarKind: ScalarKind { .int64 } }
extension UInt8: ScalarValue { public static var scalarKind: ScalarKind { .uint8 } }
extension UInt16: ScalarValue { public static var scalarKind: ScalarKind { .uint16 } }
extension UInt32: ScalarValue { public static var scalarKind: ScalarKind { .uint32 } }
extension UInt64: ScalarValue { public static var scalarKind: ScalarKind { .uint64 } }
extension UInt: ScalarValue { public static var scalarKind: ScalarKind { .uint64 } }
extension Float: ScalarValue { public static var scalarKind: ScalarKind { .float } }
extension Double: ScalarValue { public static var scalarKind: ScalarKind { .double } }
extension Bool: ScalarValue { public static var scalarKind: ScalarKind { .bool } }

extension String: ColumnValue { public static var columnType: ColumnType { .string } }
extension Array: ColumnValue where Element == UInt8 {
  public static var columnType: ColumnType { .bytes }
}
