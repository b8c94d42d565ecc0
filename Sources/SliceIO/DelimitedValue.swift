import CSupport
import Frame

/// The fields of one column in a batch of delimited rows, where the splitter found them in
/// the read buffer. A `DelimitedValue` type converts them in one pass.
public struct DelimitedFields {
  let buffer: UnsafePointer<UInt8>
  let starts: UnsafePointer<UInt32>
  let ends: UnsafePointer<UInt32>
  /// The number of fields.
  public let count: Int
  /// One byte per field, set to 1 for a field that holds no value of the column's type.
  let bad: UnsafeMutablePointer<UInt8>

  /// The fields' texts as a string column, doubled quotes unescaped (by
  /// `bs_delim_copy_strings`); empty fields are also marked in `nulls` when given.
  func stringColumn(nulls: UnsafeMutablePointer<UInt8>? = nil) -> Column {
    var builder = BytesColumnBuilder(type: .string, rows: count, bytesPerRow: 0)
    builder.append(rows: count, maxBytes: bs_delim_string_bytes(starts, ends, count)) { offsets, out in
      let result = bs_delim_copy_strings(buffer, starts, ends, count, offsets, out, nulls)
      precondition(result == BS_OK, "bs_delim_copy_strings refused its arguments")
    }
    return builder.finish()
  }

  /// The fields' texts, doubled quotes unescaped; empty fields are also marked in `nulls`
  /// when given.
  func strings(nulls: UnsafeMutablePointer<UInt8>? = nil) -> [String] {
    let view = stringColumn(nulls: nulls).variableWidth
    return (0..<count).map { view.string(at: $0) }
  }

  /// Runs a C parse kernel of type `T` over the fields into `out`.
  func parse<T>(
    _ kernel: DelimitedKernel<T>,
    into out: UnsafeMutableRawPointer?, as _: T.Type, nulls: UnsafeMutablePointer<UInt8>?
  ) {
    let result = kernel(buffer, starts, ends, count, out?.assumingMemoryBound(to: T.self), nulls, bad)
    precondition(result >= 0, "a delimited parse kernel refused its arguments")
  }
}

/// A type that `readDelimited` reads a column of: `Int`, `Int64`, `Int32`, `Double`,
/// `Bool`, `String`, and optionals of them (an empty field is nil).
public protocol DelimitedValue: Hashable, Sendable {
  /// The type's name in errors (`"Int"`).
  static var delimitedName: String { get }
  /// A column of the fields' values; a field that holds no value of the type is marked bad.
  /// - Throws: `FrameError` when the column cannot be built.
  static func delimitedColumn(_ fields: DelimitedFields) throws -> Column
  /// The fields' values; an empty field is marked in `nulls` (its value is unspecified)
  /// instead of bad.
  static func delimitedValues(_ fields: DelimitedFields, nulls: UnsafeMutablePointer<UInt8>) -> [Self]
}

/// A C column kernel of `bs_delimited.h` that parses into values of `T`.
typealias DelimitedKernel<T> = (
  UnsafePointer<UInt8>?, UnsafePointer<UInt32>?, UnsafePointer<UInt32>?, Int, UnsafeMutablePointer<T>?,
  UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt8>?
) -> Int64

/// A fixed-width value that a C kernel parses straight into a column.
protocol DelimitedScalar: DelimitedValue, ScalarValue {
  /// The C type the kernel writes (of the same size and layout).
  associatedtype Parsed
  static var kernel: DelimitedKernel<Parsed> { get }
}

extension DelimitedScalar {
  static func parse(_ fields: DelimitedFields, into out: UnsafeMutableRawPointer?, nulls: UnsafeMutablePointer<UInt8>?)
  {
    fields.parse(kernel, into: out, as: Parsed.self, nulls: nulls)
  }

  public static func delimitedColumn(_ fields: DelimitedFields) throws -> Column {
    Column.scalar(Self.self, count: fields.count) { parse(fields, into: $0.baseAddress, nulls: nil) }
  }

  public static func delimitedValues(_ fields: DelimitedFields, nulls: UnsafeMutablePointer<UInt8>) -> [Self] {
    [Self](unsafeUninitializedCapacity: fields.count) { buffer, initialized in
      parse(fields, into: buffer.baseAddress, nulls: nulls)
      initialized = fields.count
    }
  }
}

extension Int: DelimitedScalar {
  public static var delimitedName: String { "Int" }
  static var kernel: DelimitedKernel<Int64> { bs_delim_parse_i64 }
}

extension Int64: DelimitedScalar {
  public static var delimitedName: String { "Int64" }
  static var kernel: DelimitedKernel<Int64> { bs_delim_parse_i64 }
}

extension Int32: DelimitedScalar {
  public static var delimitedName: String { "Int32" }
  static var kernel: DelimitedKernel<Int32> { bs_delim_parse_i32 }
}

extension Double: DelimitedScalar {
  public static var delimitedName: String { "Double" }
  static var kernel: DelimitedKernel<Double> { bs_delim_parse_f64 }
}

extension Bool: DelimitedScalar {
  public static var delimitedName: String { "Bool" }
  static var kernel: DelimitedKernel<UInt8> { bs_delim_parse_bool }
}

extension String: DelimitedValue {
  public static var delimitedName: String { "String" }

  public static func delimitedColumn(_ fields: DelimitedFields) throws -> Column { fields.stringColumn() }

  public static func delimitedValues(_ fields: DelimitedFields, nulls: UnsafeMutablePointer<UInt8>) -> [String] {
    fields.strings(nulls: nulls)
  }
}

extension Optional: DelimitedValue where Wrapped: DelimitedValue & Codable {
  public static var delimitedName: String { "\(Wrapped.delimitedName)?" }

  public static func delimitedColumn(_ fields: DelimitedFields) throws -> Column {
    try Column.make(erasing: delimitedValues(fields, nulls: nil))
  }

  public static func delimitedValues(_ fields: DelimitedFields, nulls: UnsafeMutablePointer<UInt8>) -> [Wrapped?] {
    delimitedValues(fields, nulls: Optional<UnsafeMutablePointer<UInt8>>.some(nulls))
  }

  /// The values, nil for empty fields (marked in `nulls` too, when given).
  private static func delimitedValues(_ fields: DelimitedFields, nulls outer: UnsafeMutablePointer<UInt8>?)
    -> [Wrapped?]
  {
    let nulls = UnsafeMutablePointer<UInt8>.allocate(capacity: max(fields.count, 1))
    defer { nulls.deallocate() }
    nulls.initialize(repeating: 0, count: max(fields.count, 1))
    let values = Wrapped.delimitedValues(fields, nulls: nulls)
    return (0..<fields.count).map { r in
      guard nulls[r] == 0 else {
        outer?[r] = 1
        return nil
      }
      return values[r]
    }
  }
}
