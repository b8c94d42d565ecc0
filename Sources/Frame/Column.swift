import CSupport
import Synchronization

/// Owns the contiguous buffer of a fixed-width column. Immutable once built.
@usableFromInline
final class ScalarStorage: @unchecked Sendable {
  @usableFromInline let base: UnsafeMutableRawPointer
  let byteCount: Int
  private let lasting: Bool

  /// A buffer of `byteCount` bytes; `lasting` for data that outlives its task (`bs_lasting_alloc`).
  init(byteCount: Int, lasting: Bool = false) {
    self.byteCount = byteCount
    self.lasting = lasting
    // Big columns come from the pool of freed mappings, already faulted in.
    let p = lasting ? bs_lasting_alloc(byteCount) : bs_buffer_alloc(byteCount)
    guard let p else { fatalError("out of memory for a column of \(byteCount) bytes") }
    base = p
  }

  deinit {
    if lasting { bs_lasting_free(base, byteCount) } else { bs_buffer_free(base, byteCount) }
  }
}

/// Owns the offsets and bytes of a variable-width column. `offsets` has `rows + 1` entries,
/// non-decreasing, absolute positions in `bytes`, so a column slice shares both buffers.
@usableFromInline
final class BytesStorage: @unchecked Sendable {
  @usableFromInline let offsets: UnsafeMutablePointer<Int64>
  @usableFromInline let bytes: UnsafeMutablePointer<UInt8>
  let rows: Int
  let byteCount: Int

  init(rows: Int, byteCount: Int) {
    self.rows = rows
    self.byteCount = byteCount
    offsets = .allocate(capacity: rows + 1)
    bytes = .allocate(capacity: max(byteCount, 1))
  }

  /// Takes ownership of buffers allocated with `allocate`.
  init(offsets: UnsafeMutablePointer<Int64>, rows: Int, bytes: UnsafeMutablePointer<UInt8>, byteCount: Int) {
    self.offsets = offsets
    self.rows = rows
    self.bytes = bytes
    self.byteCount = byteCount
  }

  deinit {
    offsets.deallocate()
    bytes.deallocate()
  }
}

/// Holds the values of a boxed column.
@usableFromInline
final class BoxedStorage<T: Codable & Hashable & Sendable>: @unchecked Sendable {
  @usableFromInline let values: [T]
  init(_ values: [T]) { self.values = values }
}

/// Holds the field columns of a record column, all of one length, and the rows as Swift
/// values once something has read them so (`Column.recordValues`).
@usableFromInline
final class RecordStorage: @unchecked Sendable {
  let fields: [Column]
  let rows: Int
  private let materialized = Mutex<[ObjectIdentifier: AnyObject]>([:])

  init(fields: [Column], rows: Int) {
    self.fields = fields
    self.rows = rows
  }

  /// The rows as `[T]`, built by `make` the first time `T` is asked for and kept.
  func values<T>(_ make: () throws -> [T]) rethrows -> [T] {
    let id = ObjectIdentifier(T.self)
    if let kept = materialized.withLock({ $0[id] }) as? RecordValues<T> { return kept.values }
    let made = RecordValues(try make())
    let kept = materialized.withLock { slots -> AnyObject in
      if let kept = slots[id] { return kept }
      slots[id] = made
      return made
    }
    return (kept as! RecordValues<T>).values
  }
}

private final class RecordValues<T>: @unchecked Sendable {
  let values: [T]
  init(_ values: [T]) { self.values = values }
}

/// A typed, immutable column of values.
///
/// A column is a view (`offset`, `count`) into storage it shares, so slicing is free and
/// copying a `Column` copies a reference. Fixed-width scalars are one contiguous buffer,
/// strings and byte arrays are offsets plus bytes (the Arrow layout), and any other
/// `Codable & Hashable` type is a boxed Swift array.
public struct Column: @unchecked Sendable {
  @usableFromInline
  enum Storage {
    case scalar(ScalarStorage)
    case bytes(BytesStorage)
    case boxed(AnyObject)
    case record(RecordStorage)

    /// The object holding the values: slices of one column share it.
    var object: AnyObject {
      switch self {
      case .scalar(let s): s
      case .bytes(let b): b
      case .boxed(let b): b
      case .record(let r): r
      }
    }
  }

  /// The type of every value in the column.
  public let type: ColumnType
  /// The number of rows.
  public let count: Int
  /// The first row of this view within its storage.
  @usableFromInline let offset: Int
  @usableFromInline let storage: Storage

  @usableFromInline
  init(type: ColumnType, count: Int, offset: Int, storage: Storage) {
    self.type = type
    self.count = count
    self.offset = offset
    self.storage = storage
  }

  // MARK: Building

  /// A scalar column holding `values`. Cost: one copy.
  public init<T: ScalarValue>(_ values: [T]) {
    self = Column.scalar(T.self, count: values.count) { out in
      _ = out.initialize(from: values)
    }
  }

  /// A scalar column of `count` values written by `body`, which must initialise every
  /// element of the buffer it is given. This is the fast way to build a column: no
  /// intermediate array.
  public static func scalar<T: ScalarValue>(
    _ type: T.Type, count: Int, initializingWith body: (UnsafeMutableBufferPointer<T>) throws -> Void
  ) rethrows -> Column {
    precondition(count >= 0, "negative column length")
    let storage = ScalarStorage(byteCount: count * MemoryLayout<T>.stride)
    try body(UnsafeMutableBufferPointer(start: storage.base.assumingMemoryBound(to: T.self), count: count))
    return Column(type: T.columnType, count: count, offset: 0, storage: .scalar(storage))
  }

  /// A string column. Cost: one copy of the UTF-8 bytes.
  public init(strings: some Sequence<String>) {
    var builder = BytesColumnBuilder(type: .string)
    for var s in strings { builder.append(&s) }
    self = builder.finish()
  }

  /// A byte-array column. Cost: one copy of the bytes.
  public init(byteArrays: some Sequence<[UInt8]>) {
    var builder = BytesColumnBuilder(type: .bytes)
    for b in byteArrays { b.withUnsafeBytes { builder.append(bytes: $0) } }
    self = builder.finish()
  }

  /// A boxed column of any `Codable & Hashable` type. The type is registered with default
  /// `BoxedOps` if it is not yet registered.
  public init<T: Codable & Hashable & Sendable>(boxed values: [T]) {
    let ops = BoxedOps.opsOrRegisterDefault(T.self)
    self.init(type: .boxed(ops.name), count: values.count, offset: 0, storage: .boxed(BoxedStorage(values)))
  }

  /// A column of `values` in the layout that suits `T`: scalar, offsets+bytes, or boxed.
  /// The type switch happens once per column.
  public static func make<T: Hashable & Sendable>(_ values: [T]) throws -> Column {
    try make(erasing: values)
  }

  /// An empty column of the given type.
  public static func empty(_ type: ColumnType) throws -> Column {
    switch type {
    case .scalar:
      return Column(type: type, count: 0, offset: 0, storage: .scalar(ScalarStorage(byteCount: 0)))
    case .string, .bytes:
      let storage = BytesStorage(rows: 0, byteCount: 0)
      storage.offsets[0] = 0
      return Column(type: type, count: 0, offset: 0, storage: .bytes(storage))
    case .boxed(let name):
      return try BoxedOps.lookup(name).makeColumn(decoding: [])
    case .record(let record):
      return try Column(record: record, fields: record.fields.map { try Column.empty($0) }, count: 0)
    }
  }

  /// A record column of `type` whose field `i` is `fields[i]`, each of `count` rows.
  /// - Throws: `FrameError.typeMismatch` or `FrameError.lengthMismatch` when the fields do not
  ///   match the record's.
  package init(record type: RecordType, fields: [Column], count: Int) throws {
    guard fields.map(\.type) == type.fields else {
      throw FrameError.typeMismatch(
        expected: type.description, found: "fields " + fields.map(\.type.description).joined(separator: ", "))
    }
    for (i, f) in fields.enumerated() where f.count != count {
      throw FrameError.lengthMismatch(column: i, expected: count, found: f.count)
    }
    self.init(
      type: .record(type), count: count, offset: 0, storage: .record(RecordStorage(fields: fields, rows: count)))
  }

  /// The field columns of a record column (this view's rows of each); nil for other columns.
  package var fields: [Column]? {
    guard case .record(let s) = storage else { return nil }
    if offset == 0 && count == s.rows { return s.fields }
    return s.fields.map { $0.slice(offset..<(offset + count)) }
  }

  /// The columns this column is stored as: its fields' leaves for a record, else itself.
  package var leaves: [Column] {
    guard let fields else { return [self] }
    return fields.flatMap(\.leaves)
  }

  /// The column of `type` and `count` rows stored as the leaf columns taken from `leaves`
  /// (see `leaves`), which advances past them.
  package static func assemble(_ type: ColumnType, count: Int, from leaves: inout ArraySlice<Column>) throws
    -> Column
  {
    guard case .record(let record) = type else {
      guard let leaf = leaves.popFirst() else { throw FrameError.invalidArgument("too few columns for \(type)") }
      return leaf
    }
    let fields = try record.fields.map { try assemble($0, count: count, from: &leaves) }
    return try Column(record: record, fields: fields, count: count)
  }

  /// Columns of `types` and `count` rows from the leaf columns `leaves` (as `Frame.leaves`
  /// gives them).
  package static func assemble(_ types: [ColumnType], count: Int, from leaves: [Column]) throws -> [Column] {
    var rest = leaves[...]
    let columns = try types.map { try assemble($0, count: count, from: &rest) }
    guard rest.isEmpty else { throw FrameError.invalidArgument("\(rest.count) columns left over for \(types)") }
    return columns
  }

  // MARK: Views

  /// A zero-copy view of rows `range`.
  public func slice(_ range: Range<Int>) -> Column {
    precondition(range.lowerBound >= 0 && range.upperBound <= count, "slice \(range) out of 0..<\(count)")
    return Column(type: type, count: range.count, offset: offset + range.lowerBound, storage: storage)
  }

  /// This column's rows then `next`'s as one slice, when `next` starts where this ends in the
  /// same storage; else nil.
  func followed(by next: Column) -> Column? {
    guard next.type == type, next.offset == offset + count, next.storage.object === storage.object else { return nil }
    return Column(type: type, count: count + next.count, offset: offset, storage: storage)
  }

  /// The values of a scalar column as `T`. Traps when `T` does not have this column's layout
  /// (a programming error: check `type` first where the type is not known statically).
  @inlinable
  public func scalars<T: ScalarValue>(_: T.Type) -> ScalarView<T> {
    guard case .scalar(let s) = storage, case .scalar(let kind) = type, kind == T.scalarKind else {
      preconditionFailure("column of type \(type) read as \(T.self)")
    }
    return ScalarView(owner: s, base: UnsafePointer(s.base.assumingMemoryBound(to: T.self)) + offset, count: count)
  }

  /// The values of a string or byte-array column as raw byte ranges.
  @inlinable
  public var variableWidth: BytesView {
    guard case .bytes(let s) = storage else { preconditionFailure("column of type \(type) read as bytes") }
    return BytesView(owner: s, offsets: UnsafePointer(s.offsets) + offset, bytes: UnsafePointer(s.bytes), count: count)
  }

  /// The values of a boxed column. Traps when `T` is not the boxed type.
  public func boxed<T: Codable & Hashable & Sendable>(_: T.Type) -> ArraySlice<T> {
    // Packed lists too: their arrays, built once.
    boxedValues(T.self)
  }

  /// The value at row `i`, type-erased. Slow: for tests, debugging and printing.
  public func anyValue(at i: Int) -> AnyHashable {
    precondition(i >= 0 && i < count, "row \(i) out of 0..<\(count)")
    switch type {
    case .scalar(let kind):
      switch kind {
      case .int8: return AnyHashable(scalars(Int8.self)[i])
      case .int16: return AnyHashable(scalars(Int16.self)[i])
      case .int32: return AnyHashable(scalars(Int32.self)[i])
      case .int64: return AnyHashable(scalars(Int64.self)[i])
      case .uint8: return AnyHashable(scalars(UInt8.self)[i])
      case .uint16: return AnyHashable(scalars(UInt16.self)[i])
      case .uint32: return AnyHashable(scalars(UInt32.self)[i])
      case .uint64: return AnyHashable(scalars(UInt64.self)[i])
      case .float: return AnyHashable(scalars(Float.self)[i])
      case .double: return AnyHashable(scalars(Double.self)[i])
      case .bool: return AnyHashable(scalars(Bool.self)[i])
      }
    case .string: return AnyHashable(variableWidth.string(at: i))
    case .bytes: return AnyHashable(variableWidth.bytes(at: i))
    case .boxed:
      guard case .boxed(let s) = storage else { preconditionFailure("boxed column without boxed storage") }
      return (s as! any AnyBoxedStorage).anyValue(at: offset + i)
    case .record:
      return AnyHashable((fields ?? []).map { $0.anyValue(at: i) })
    }
  }

  /// Bytes of memory this view's values occupy (its share of the storage, not the storage).
  public var byteCount: Int {
    switch storage {
    case .scalar: return count * (type.scalarWidth ?? 0)
    case .bytes(let s):
      return Int(s.offsets[offset + count] - s.offsets[offset]) + 8 * (count + 1)
    case .boxed(let s): return (s as! any AnyBoxedStorage).estimatedBytes(offset: offset, count: count)
    case .record: return (fields ?? []).reduce(0) { $0 + $1.byteCount }
    }
  }
}

extension ColumnType {
  /// Bytes per value of a scalar type, nil for the others.
  public var scalarWidth: Int? {
    if case .scalar(let kind) = self { return kind.width }
    return nil
  }
}

/// A read-only view of a scalar column's values. It keeps the column's storage alive, so it
/// may outlive the `Column` it came from.
public struct ScalarView<T: ScalarValue>: RandomAccessCollection, @unchecked Sendable {
  @usableFromInline let owner: ScalarStorage
  /// The first value. Valid while this view is alive.
  @usableFromInline package let base: UnsafePointer<T>
  public let count: Int

  @inlinable
  init(owner: ScalarStorage, base: UnsafePointer<T>, count: Int) {
    self.owner = owner
    self.base = base
    self.count = count
  }

  @inlinable public var startIndex: Int { 0 }
  @inlinable public var endIndex: Int { count }
  @inlinable public subscript(i: Int) -> T {
    precondition(i >= 0 && i < count, "row out of range")
    return base[i]
  }

  /// Runs `body` over the values as a buffer.
  @inlinable
  public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<T>) throws -> R) rethrows -> R {
    try withExtendedLifetime(owner) { try body(UnsafeBufferPointer(start: base, count: count)) }
  }
}

/// A read-only view of a string or byte-array column: row `i` is
/// `bytes[offsets[i] ..< offsets[i+1]]`.
public struct BytesView: @unchecked Sendable {
  @usableFromInline let owner: BytesStorage
  /// `count + 1` absolute offsets into `bytes`.
  @usableFromInline package let offsets: UnsafePointer<Int64>
  /// The bytes of the whole storage.
  @usableFromInline package let bytes: UnsafePointer<UInt8>
  public let count: Int

  @inlinable
  init(owner: BytesStorage, offsets: UnsafePointer<Int64>, bytes: UnsafePointer<UInt8>, count: Int) {
    self.owner = owner
    self.offsets = offsets
    self.bytes = bytes
    self.count = count
  }

  /// The bytes of row `i`, valid while this view is alive.
  @inlinable
  package func raw(at i: Int) -> UnsafeBufferPointer<UInt8> {
    precondition(i >= 0 && i < count, "row out of range")
    let start = Int(offsets[i])
    return UnsafeBufferPointer(start: bytes + start, count: Int(offsets[i + 1]) - start)
  }

  /// Row `i` as a String (invalid UTF-8 is repaired with U+FFFD).
  @inlinable
  public func string(at i: Int) -> String {
    withExtendedLifetime(owner) { String(decoding: raw(at: i), as: UTF8.self) }
  }

  /// Row `i` as a byte array.
  @inlinable
  public func bytes(at i: Int) -> [UInt8] {
    withExtendedLifetime(owner) { Array(raw(at: i)) }
  }

  /// Three-way comparison of row `i` with row `j` of `other`: unsigned bytes, then length.
  @inlinable
  public func compare(_ i: Int, _ other: BytesView, _ j: Int) -> Int {
    let a = raw(at: i)
    let b = other.raw(at: j)
    let n = Swift.min(a.count, b.count)
    if n > 0 {
      let c = memcmp(a.baseAddress!, b.baseAddress!, n)
      if c != 0 { return c < 0 ? -1 : 1 }
    }
    return a.count == b.count ? 0 : (a.count < b.count ? -1 : 1)
  }
}

/// Appends strings or byte arrays into a new offsets+bytes column. Growth is geometric.
public struct BytesColumnBuilder: ~Copyable {
  private let isString: Bool
  private var offsets: UnsafeMutablePointer<Int64>
  private var offsetCapacity: Int
  private var bytes: UnsafeMutablePointer<UInt8>
  private var byteCapacity: Int
  /// Rows appended so far.
  public private(set) var count = 0

  /// A builder for a `.string` or `.bytes` column, sized for about `rows` rows of
  /// `bytesPerRow` bytes.
  public init(type: ColumnType, rows: Int = 1024, bytesPerRow: Int = 16) {
    precondition(type.isVariableWidth, "BytesColumnBuilder builds string or bytes columns, not \(type)")
    isString = type == .string
    offsetCapacity = max(rows, 16) + 1
    offsets = .allocate(capacity: offsetCapacity)
    offsets[0] = 0
    byteCapacity = max(rows * bytesPerRow, 64)
    bytes = .allocate(capacity: byteCapacity)
  }

  deinit {
    offsets.deallocate()
    bytes.deallocate()
  }

  private var byteCount: Int { Int(offsets[count]) }

  private mutating func reserve(rows extra: Int, bytes extraBytes: Int) {
    if count + extra + 1 > offsetCapacity {
      let newCapacity = max(offsetCapacity * 2, count + extra + 1)
      let grown = UnsafeMutablePointer<Int64>.allocate(capacity: newCapacity)
      grown.update(from: offsets, count: count + 1)
      offsets.deallocate()
      offsets = grown
      offsetCapacity = newCapacity
    }
    let used = byteCount
    if used + extraBytes > byteCapacity {
      let newCapacity = max(byteCapacity * 2, used + extraBytes)
      let grown = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
      grown.update(from: bytes, count: used)
      bytes.deallocate()
      bytes = grown
      byteCapacity = newCapacity
    }
  }

  /// Appends one row holding `raw`.
  package mutating func append(bytes raw: UnsafeRawBufferPointer) {
    reserve(rows: 1, bytes: raw.count)
    let used = byteCount
    if raw.count > 0 {
      (bytes + used).update(from: raw.baseAddress!.assumingMemoryBound(to: UInt8.self), count: raw.count)
    }
    offsets[count + 1] = Int64(used + raw.count)
    count += 1
  }

  /// Appends `rows` rows of at most `maxBytes` bytes in all, written by `fill`: it gets the
  /// offsets from the current row on (`offsets[0]` is where the new bytes start; it sets
  /// `offsets[1 ... rows]`) and the column's byte buffer, with room for `maxBytes` more.
  package mutating func append(
    rows: Int, maxBytes: Int,
    _ fill: (_ offsets: UnsafeMutablePointer<Int64>, _ bytes: UnsafeMutablePointer<UInt8>) -> Void
  ) {
    reserve(rows: rows, bytes: maxBytes)
    fill(offsets + count, bytes)
    count += rows
    precondition(byteCount <= byteCapacity, "a bulk append wrote past its bytes")
  }

  /// Appends one row holding the UTF-8 of `s`.
  public mutating func append(_ s: inout String) {
    s.withUTF8 { append(bytes: UnsafeRawBufferPointer($0)) }
  }

  /// Appends one row holding the UTF-8 of `s`.
  public mutating func append(_ s: String) {
    var s = s
    append(&s)
  }

  /// The column built so far. The builder's buffers move into the column.
  public consuming func finish() -> Column {
    let storage = BytesStorage(offsets: offsets, rows: count, bytes: bytes, byteCount: byteCount)
    let column = Column(type: isString ? .string : .bytes, count: count, offset: 0, storage: .bytes(storage))
    discard self
    return column
  }
}

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif
