import CSupport

/// How a combiner holds a key of several columns as one table key (`bs_keyrow.h`): packed
/// into one `UInt64` when every column is fixed-width and they fit in 8 bytes, side by side in
/// a fixed-width key when they are all fixed-width but wider, else as one byte string per row.
/// A one-column key is held as itself.
struct KeyRows {
  enum Form: Equatable {
    case single, packed, rows
    /// Fixed-width keys of this many bytes.
    case fixed(Int)
  }

  let types: [ColumnType]
  let form: Form
  private let widths: [Int]

  /// - Throws: `FrameError.unsupported` for a boxed column, which has no bytes to compare.
  init(_ types: [ColumnType]) throws {
    precondition(!types.isEmpty, "a key has at least one column")
    for type in types where type.isBoxed || type.fields != nil {
      throw FrameError.unsupported("combiner keys of type \(type); group them by sorting")
    }
    self.types = types
    widths = types.map { $0.scalarWidth ?? 0 }
    if types.count == 1 {
      form = .single
    } else if !widths.contains(0) && widths.reduce(0, +) <= 8 {
      form = .packed
    } else if !widths.contains(0) && widths.reduce(0, +) <= Int(BS_COMB_MAX_FIXED_KEY) {
      form = .fixed(widths.reduce(0, +))
    } else {
      form = .rows
    }
  }

  /// The C views of `columns`, valid while they live.
  private static func views(_ columns: [Column]) -> [bs_key_column] {
    columns.map { c in
      switch c.storage {
      case .scalar(let s):
        let width = c.type.scalarWidth!
        return bs_key_column(
          values: UnsafePointer(s.base.assumingMemoryBound(to: UInt8.self)) + c.offset * width, offsets: nil,
          width: width)
      case .bytes(let s):
        return bs_key_column(values: UnsafePointer(s.bytes), offsets: UnsafePointer(s.offsets) + c.offset, width: 0)
      case .boxed, .record:
        preconditionFailure("a \(c.type) key column in KeyRows")
      }
    }
  }

  /// Writes the packed keys of `columns` (form `.packed`) to `keys`.
  func pack(_ columns: [Column], into keys: UnsafeMutablePointer<UInt64>) {
    let views = Self.views(columns)
    let rc = withExtendedLifetime(columns) { bs_keyrow_pack_u64(views, views.count, columns[0].count, keys) }
    precondition(rc == BS_OK, "packing key columns checked by the combiner")
  }

  /// The fixed-width keys of `columns` (form `.fixed`), in `scratch.bytes`.
  func packFixed(_ columns: [Column], into scratch: inout Rows) {
    guard case .fixed(let width) = form else { preconditionFailure("packFixed of a key of form \(form)") }
    let n = columns[0].count
    scratch.reserve(rows: 0, bytes: n * width)
    let views = Self.views(columns)
    let rc = withExtendedLifetime(columns) { bs_keyrow_pack_fixed(views, views.count, n, scratch.bytes) }
    precondition(rc == BS_OK, "packing key columns checked by the combiner")
  }

  /// The byte-string rows of `columns` (form `.rows`), in `scratch`.
  func encode(_ columns: [Column], into scratch: inout Rows) throws {
    let n = columns[0].count
    let views = Self.views(columns)
    let size = withExtendedLifetime(columns) { bs_keyrow_size(views, views.count, n) }
    guard size >= 0 else { throw FrameError.invalidArgument("key rows of \(n) keys: a value is 4 GiB or more") }
    scratch.reserve(rows: n, bytes: Int(size))
    let rc = withExtendedLifetime(columns) { bs_keyrow_encode(views, views.count, n, scratch.offsets, scratch.bytes) }
    precondition(rc == BS_OK, "encoding key rows already measured")
  }

  /// The key columns of `count` packed keys.
  func unpack(_ keys: UnsafePointer<UInt64>, count: Int) -> [Column] {
    unpackScalars(count) { bs_keyrow_unpack_u64(keys, count, $0, $0.count) }
  }

  /// The key columns of `count` fixed-width keys.
  func unpack(fixed keys: UnsafePointer<UInt8>, count: Int) -> [Column] {
    unpackScalars(count) { bs_keyrow_unpack_fixed(keys, count, $0, $0.count) }
  }

  private func unpackScalars(_ count: Int, _ unpack: ([bs_key_output]) -> bs_error) -> [Column] {
    let storages = widths.map { ScalarStorage(byteCount: count * $0) }
    let outputs = zip(storages, widths).map { s, w in
      bs_key_output(values: s.base.assumingMemoryBound(to: UInt8.self), offsets: nil, width: w, capacity: 0)
    }
    precondition(unpack(outputs) == BS_OK, "unpacking keys of checked widths")
    return zip(types, storages).map { Column(type: $0, count: count, offset: 0, storage: .scalar($1)) }
  }

  /// The key columns of `count` byte-string rows.
  /// - Throws: `FrameError.corrupt` when a row does not hold exactly this key's columns.
  func decode(offsets: UnsafePointer<Int64>, bytes: UnsafePointer<UInt8>?, count: Int) throws -> [Column] {
    var totals = [Int64](repeating: 0, count: types.count)
    let measured = bs_keyrow_measure(offsets, bytes, count, widths, widths.count, &totals)
    guard measured == BS_OK else {
      throw FrameError.corrupt("key rows of \(types): \(String(cString: bs_error_name(measured.rawValue)))")
    }
    var storage: [Column.Storage] = []
    var outputs: [bs_key_output] = []
    for (c, w) in widths.enumerated() {
      if w > 0 {
        let s = ScalarStorage(byteCount: count * w)
        storage.append(.scalar(s))
        outputs.append(
          bs_key_output(values: s.base.assumingMemoryBound(to: UInt8.self), offsets: nil, width: w, capacity: 0))
      } else {
        let s = BytesStorage(rows: count, byteCount: Int(totals[c]))
        storage.append(.bytes(s))
        outputs.append(bs_key_output(values: s.bytes, offsets: s.offsets, width: 0, capacity: Int(totals[c])))
      }
    }
    let rc = bs_keyrow_decode(offsets, bytes, count, outputs, outputs.count)
    guard rc == BS_OK else {
      throw FrameError.corrupt("key rows of \(types): \(String(cString: bs_error_name(rc.rawValue)))")
    }
    return zip(types, storage).map { Column(type: $0, count: count, offset: 0, storage: $1) }
  }

  /// Scratch buffers for encoded rows, reused batch after batch.
  struct Rows: ~Copyable {
    private(set) var offsets: UnsafeMutablePointer<Int64> = .allocate(capacity: 1)
    private(set) var bytes: UnsafeMutablePointer<UInt8> = .allocate(capacity: 1)
    private var rowCapacity = 0
    private var byteCapacity = 1

    init() {}

    mutating func reserve(rows: Int, bytes count: Int) {
      if rows + 1 > rowCapacity + 1 {
        offsets.deallocate()
        offsets = .allocate(capacity: rows + 1)
        rowCapacity = rows
      }
      if count > byteCapacity {
        bytes.deallocate()
        bytes = .allocate(capacity: count)
        byteCapacity = count
      }
    }

    deinit {
      offsets.deallocate()
      bytes.deallocate()
    }
  }
}
