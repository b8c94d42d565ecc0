import CSupport
import Synchronization

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// The registry of boxed column types: any `Codable & Hashable` type that has no native
/// column layout.
///
/// A boxed type's hash must be the same in every process (it routes rows between machines),
/// so Swift's per-process-seeded `hashValue` cannot serve. By default a value is hashed as
/// XXH3 of its JSON encoding (sorted keys), ordered by `<` when it is `Comparable` and by its
/// JSON bytes otherwise, and a column is coded as one JSON array. A type whose `==` disagrees
/// with its encoding, or that needs speed, registers its own `hash` and `compare`.
///
/// Registration is global and must happen before a column of the type is decoded. Building
/// a column with `Column(boxed:)` registers the type with the defaults.
public enum BoxedOps {
  /// Registers `T` under `name` (default: its full type name). Re-registering replaces the
  /// earlier ops, so register custom ops before any column of `T` is built.
  /// - Parameters:
  ///   - hash: a seeded hash, stable across processes; equal values must hash equal.
  ///   - compare: a total order, three-way (-1, 0, 1), consistent with `==`.
  @discardableResult
  public static func register<T: Codable & Hashable & Sendable>(
    _ type: T.Type, name: String? = nil,
    hash: (@Sendable (T, UInt64) -> UInt64)? = nil,
    compare: (@Sendable (T, T) -> Int)? = nil
  ) -> String {
    insert(T.self, name: name, hash: hash, compare: compare, explicit: true)
  }

  @discardableResult
  private static func insert<T: Codable & Hashable & Sendable>(
    _: T.Type, name: String?, hash: (@Sendable (T, UInt64) -> UInt64)?, compare: (@Sendable (T, T) -> Int)?,
    explicit: Bool
  ) -> String {
    let ops = BoxedTypeOps<T>(name: name ?? String(reflecting: T.self), hash: hash, compare: compare)
    registry.withLock {
      $0.byName[ops.name] = ops
      $0.byType[ObjectIdentifier(T.self)] = ops
      if explicit { $0.explicit.insert(ObjectIdentifier(T.self)) }
    }
    return ops.name
  }

  /// Whether `T` was registered by `register`, which stores it boxed even when it could be a
  /// record.
  static func isRegistered<T>(_: T.Type) -> Bool {
    registry.withLock { $0.explicit.contains(ObjectIdentifier(T.self)) }
  }

  /// The ops registered under `name`.
  /// - Throws: `FrameError.unregisteredType` when nothing is registered under it.
  static func lookup(_ name: String) throws -> any AnyBoxedTypeOps {
    guard let ops = registry.withLock({ $0.byName[name] }) else { throw FrameError.unregisteredType(name) }
    return ops
  }

  static func opsOrRegisterDefault<T: Codable & Hashable & Sendable>(_ type: T.Type) -> BoxedTypeOps<T> {
    if let ops = registry.withLock({ $0.byType[ObjectIdentifier(T.self)] }) as? BoxedTypeOps<T> { return ops }
    insert(T.self, name: nil, hash: nil, compare: nil, explicit: false)
    return registry.withLock { $0.byType[ObjectIdentifier(T.self)] } as! BoxedTypeOps<T>
  }

  private struct Tables: ~Copyable {
    var byName: [String: any AnyBoxedTypeOps] = [:]
    var byType: [ObjectIdentifier: any AnyBoxedTypeOps] = [:]
    var explicit: Set<ObjectIdentifier> = []
  }
  private static let registry = Mutex(Tables())
}

/// The type-erased operations on a boxed column, one implementation per registered type.
protocol AnyBoxedTypeOps: Sendable {
  var name: String { get }
  func hash(_ column: Column, seed: UInt64, into out: UnsafeMutablePointer<UInt64>) throws
  func compare(_ a: Column, _ i: Int, _ b: Column, _ j: Int) -> Int
  func equal(_ a: Column, _ i: Int, _ b: Column, _ j: Int) -> Bool
  func encode(_ column: Column) throws -> [UInt8]
  func makeColumn(decoding bytes: [UInt8]) throws -> Column
  func gather(_ column: Column, _ perm: UnsafeBufferPointer<UInt32>) -> Column
  func concat(_ columns: [Column]) -> Column
}

/// The type-erased view of a boxed column's storage.
protocol AnyBoxedStorage: AnyObject {
  func anyValue(at i: Int) -> AnyHashable
  func values<U>(as: U.Type) -> [U]?
  func estimatedBytes(offset: Int, count: Int) -> Int
}

extension BoxedStorage: AnyBoxedStorage {
  func anyValue(at i: Int) -> AnyHashable { AnyHashable(values[i]) }
  func values<U>(as: U.Type) -> [U]? { U.self == T.self ? unsafeBitCast(values, to: [U].self) : nil }
  func estimatedBytes(offset: Int, count: Int) -> Int {
    let references = count * max(MemoryLayout<T>.stride, 8)
    guard let list = T.self as? any PackedList.Type else { return references }
    return references + listHeapBytes(list, values[offset..<(offset + count)])
  }
}

private func listHeapBytes<L: PackedList, T>(_: L.Type, _ values: ArraySlice<T>) -> Int {
  L.heapBytes(unsafeBitCast(values, to: ArraySlice<L>.self))  // L is T
}

final class BoxedTypeOps<T: Codable & Hashable & Sendable>: AnyBoxedTypeOps {
  let name: String
  let hashOne: @Sendable (T, UInt64) -> UInt64
  let compareValues: @Sendable (T, T) -> Int
  /// Lists of scalars with no hash of the user's: hashed by their values' bytes, which a column
  /// kept packed hashes in place.
  private let hashesListBytes: Bool

  init(name: String, hash: (@Sendable (T, UInt64) -> UInt64)?, compare: (@Sendable (T, T) -> Int)?) {
    self.name = name
    hashesListBytes = hash == nil && T.self is any PackedList.Type
    hashOne = hash ?? Self.defaultHash
    if let compare {
      compareValues = compare
    } else if let comparable = T.self as? any Comparable.Type {
      nonisolated(unsafe) let metatype = comparable  // a metatype: immutable, safe to share
      compareValues = { a, b in compareComparable(metatype, a, b) }
    } else {
      compareValues = { a, b in
        if a == b { return 0 }
        return BoxedTypeOps.canonicalBytes(a).lexicographicallyPrecedes(BoxedTypeOps.canonicalBytes(b)) ? -1 : 1
      }
    }
  }

  /// A list of scalars hashes as its values' bytes; any other value as its canonical JSON.
  private static var defaultHash: @Sendable (T, UInt64) -> UInt64 {
    guard let list = T.self as? any PackedList.Type else {
      return { value, seed in
        let bytes = BoxedTypeOps.canonicalBytes(value)
        return bytes.withUnsafeBytes { bs_hash_one($0.baseAddress, $0.count, seed) }
      }
    }
    nonisolated(unsafe) let metatype = list  // a metatype: immutable, safe to share
    return { value, seed in hashList(metatype, value, seed) }
  }

  static func canonicalBytes(_ value: T) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    // A value that cannot encode hashes as its type name: still stable and consistent.
    return (try? Array(encoder.encode([value]))) ?? Array(String(reflecting: T.self).utf8)
  }

  private func values(_ column: Column) -> ArraySlice<T> { column.boxed(T.self) }

  func hash(_ column: Column, seed: UInt64, into out: UnsafeMutablePointer<UInt64>) throws {
    if hashesListBytes, case .boxed(let storage) = column.storage, let packed = storage as? any PackedListEncoding {
      return packed.hash(offset: column.offset, count: column.count, seed: seed, into: out)
    }
    for (i, v) in values(column).enumerated() { out[i] = hashOne(v, seed) }
  }

  func compare(_ a: Column, _ i: Int, _ b: Column, _ j: Int) -> Int {
    compareValues(values(a)[a.offset + i], values(b)[b.offset + j])
  }

  func equal(_ a: Column, _ i: Int, _ b: Column, _ j: Int) -> Bool {
    values(a)[a.offset + i] == values(b)[b.offset + j]
  }

  func encode(_ column: Column) throws -> [UInt8] {
    if case .boxed(let storage) = column.storage, let packed = storage as? any PackedListEncoding {
      return packed.encode(offset: column.offset, count: column.count)
    }
    if let packed = T.self as? any PackedList.Type { return Self.pack(packed, values(column)) }
    do {
      return Array(try JSONEncoder().encode(Array(values(column))))
    } catch {
      throw FrameError.codable(type: name, message: "\(error)")
    }
  }

  func makeColumn(decoding bytes: [UInt8]) throws -> Column {
    let decoded: [T]
    if bytes.isEmpty {
      decoded = []
    } else if PackedListCoding.isMarker(bytes[0]), let packed = T.self as? any PackedList.Type {
      // Kept packed: whoever reads the rows builds their arrays, one at a time, on its thread.
      let storage = try bytes.withUnsafeBytes { try packed.unpack($0) }
      return Column(type: .boxed(name), count: storage.rows, offset: 0, storage: .boxed(storage))
    } else {
      do {
        decoded = try JSONDecoder().decode([T].self, from: Data(bytes))
      } catch {
        throw FrameError.codable(type: name, message: "\(error)")
      }
    }
    return Column(type: .boxed(name), count: decoded.count, offset: 0, storage: .boxed(BoxedStorage(decoded)))
  }

  private static func pack<P: PackedList>(_: P.Type, _ values: ArraySlice<T>) -> [UInt8] {
    P.pack(unsafeBitCast(values, to: ArraySlice<P>.self))  // P is T
  }

  func gather(_ column: Column, _ perm: UnsafeBufferPointer<UInt32>) -> Column {
    let v = values(column)
    let base = v.startIndex
    let out = perm.map { v[base + Int($0)] }
    return Column(type: column.type, count: out.count, offset: 0, storage: .boxed(BoxedStorage(out)))
  }

  func concat(_ columns: [Column]) -> Column {
    var out: [T] = []
    out.reserveCapacity(columns.reduce(0) { $0 + $1.count })
    for c in columns { out.append(contentsOf: values(c)) }
    return Column(type: .boxed(name), count: out.count, offset: 0, storage: .boxed(BoxedStorage(out)))
  }
}

private func hashList<L: PackedList>(_: L.Type, _ value: Any, _ seed: UInt64) -> UInt64 {
  L.hash(value as! L, seed: seed)
}

private func compareComparable<C: Comparable>(_: C.Type, _ a: Any, _ b: Any) -> Int {
  let x = a as! C
  let y = b as! C
  return x < y ? -1 : (y < x ? 1 : 0)
}

/// Builds a column of the layout that suits a type known only generically.
enum ColumnBridge {
  static func make<T>(_ values: [T]) throws -> Column? {
    if T.self == String.self { return Column(strings: unsafeBitCast(values, to: [String].self)) }
    if T.self == [UInt8].self { return Column(byteArrays: unsafeBitCast(values, to: [[UInt8]].self)) }
    if let scalar = T.self as? any ScalarValue.Type { return makeScalar(scalar, values) }
    if let record = T.self as? any ColumnRecord.Type { return try makeRecord(record, values) }
    if let boxed = T.self as? any (Codable & Hashable & Sendable).Type {
      let records = try values.withUnsafeBufferPointer { buffer in
        try Column.codableRecords(boxed, at: buffer.baseAddress, count: buffer.count)
      }
      return records ?? makeBoxed(boxed, values)
    }
    return nil
  }

  private static func makeScalar<S: ScalarValue>(_: S.Type, _ values: Any) -> Column {
    Column(values as! [S])
  }

  private static func makeRecord<R: ColumnRecord>(_: R.Type, _ values: Any) throws -> Column {
    try Column(records: values as! [R])
  }

  private static func makeBoxed<B: Codable & Hashable & Sendable>(_: B.Type, _ values: Any) -> Column {
    Column(boxed: values as! [B])
  }
}
