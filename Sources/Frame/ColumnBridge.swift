/// Column access for code that knows a value type only as a generic parameter: the typed
/// slice layer, whose row types are parameter packs.
extension Column {
  /// The column type that holds values of `T`: its native layout for `ColumnValue` types, a
  /// record for other `Codable & Hashable` types whose coding a column can hold (see
  /// `ColumnRecord`), a boxed column (registered with default ops) for the rest and for types
  /// registered with `BoxedOps`.
  /// - Throws: `FrameError.unsupported` for any other type.
  public static func columnType<T>(for _: T.Type) throws -> ColumnType {
    if let native = T.self as? any ColumnValue.Type { return native.columnType }
    if let codable = T.self as? any (Codable & Hashable & Sendable).Type { return codableType(codable) }
    throw FrameError.unsupported("column values of type \(T.self): it must be Codable, Hashable and Sendable")
  }

  /// The column type of a `Codable` type: its record layout when it has one and is not
  /// registered with `BoxedOps`, else boxed.
  static func codableType<B: Codable & Hashable & Sendable>(_: B.Type) -> ColumnType {
    if let native = B.self as? any ColumnValue.Type { return native.columnType }
    if let layout = codableLayout(B.self) { return .record(layout.type) }
    return .boxed(BoxedOps.opsOrRegisterDefault(B.self).name)
  }

  /// The record layout `B` is stored in, unless it is registered boxed.
  static func codableLayout<B: Codable & Hashable & Sendable>(_: B.Type) -> CodableLayout? {
    BoxedOps.isRegistered(B.self) ? nil : CodableLayout.of(B.self)
  }

  /// A record column of the `count` values of `B` at `base`, built through their `Codable`
  /// conformance; nil when `B` is stored boxed.
  static func codableRecords<B: Codable & Hashable & Sendable>(_: B.Type, at base: UnsafeRawPointer?, count: Int)
    throws -> Column?
  {
    guard let layout = codableLayout(B.self) else { return nil }
    guard let base, count > 0 else { return try Column.empty(.record(layout.type)) }
    return try layout.column(B.self, at: base.assumingMemoryBound(to: B.self), count: count)
  }

  /// A column of `values` in the layout that suits `T`, for a `T` known only generically.
  /// - Throws: `FrameError.unsupported` when `T` can have no column.
  public static func make<T>(erasing values: [T]) throws -> Column {
    if let column = try ColumnBridge.make(values) { return column }
    throw FrameError.unsupported("column values of type \(T.self): it must be Codable, Hashable and Sendable")
  }

  /// The first value of a scalar column, as raw memory (`count` values of its width follow);
  /// nil for other columns. Valid while the column is alive.
  package var rawBase: UnsafeRawPointer? {
    guard case .scalar(let s) = storage, let width = type.scalarWidth else { return nil }
    return UnsafeRawPointer(s.base + offset * width)
  }

  /// The values of a boxed column as `U`. Traps when `U` is not the boxed type.
  public func boxedValues<U>(_: U.Type) -> ArraySlice<U> {
    guard case .boxed(let s) = storage, let values = (s as! any AnyBoxedStorage).values(as: U.self) else {
      preconditionFailure("column of type \(type) read as boxed \(U.self)")
    }
    return values[(values.startIndex + offset)..<(values.startIndex + offset + count)]
  }

  /// A scalar column of `type` and `count` values, and where its values go: the caller fills
  /// every one before the column is read or shared (a `map` writes each row's value in place).
  /// - Throws: `FrameError.typeMismatch` when `type` is not scalar.
  package static func unfilledScalars(_ type: ColumnType, count: Int) throws -> (Column, UnsafeMutableRawPointer) {
    guard let width = type.scalarWidth else {
      throw FrameError.typeMismatch(expected: "a scalar type", found: type.description)
    }
    let storage = ScalarStorage(byteCount: count * width)
    return (Column(type: type, count: count, offset: 0, storage: .scalar(storage)), storage.base)
  }

  /// A scalar column of `type` holding a copy of `count` values at `source`.
  package static func copyScalars(_ type: ColumnType, from source: UnsafeRawPointer, count: Int) throws -> Column {
    let (column, base) = try unfilledScalars(type, count: count)
    base.copyMemory(from: source, byteCount: count * type.scalarWidth!)
    return column
  }
}
