import Synchronization

/// The record layout of a `Codable` type that is neither a `ColumnValue` nor registered with
/// `BoxedOps`: one column per field its `Codable` conformance codes, nested structs as nested
/// records.
///
/// The layout is found once per type by decoding a probe value, which notes every container
/// and field the type's `init(from:)` asks for. A type whose decoding asks for anything a
/// column cannot hold (an optional field, an array other than `[UInt8]`, keys read from the
/// data, a value the probe's zeros and empty strings cannot make) has no layout and is stored
/// boxed. Values are coded field by field through an `Encoder` and a `Decoder`: slower than a
/// `ColumnRecord`'s key paths, far faster than JSON.
final class CodableLayout: @unchecked Sendable {
  let type: RecordType
  let root: LayoutNode
  /// The leaves in depth-first order: one column each.
  let leaves: [LayoutLeaf]

  /// The layout as flat tables, which the coders index with no reference counting per row.
  let tables: LayoutTables
  /// The node a value codes itself as: the root, or for a type that codes as a single value,
  /// the one field of the record that wraps it.
  let start: Int32

  private init(type: RecordType, root: LayoutNode, leaves: [LayoutLeaf], wrapped: Bool) {
    self.type = type
    self.root = root
    self.leaves = leaves
    tables = LayoutTables(root, leaves: leaves)
    start = wrapped ? tables.child[Int(tables.firstField[0])] : 0
  }

  /// The layout of `T`, found on first use and kept; nil when `T` has none.
  static func of<T: Codable & Hashable & Sendable>(_: T.Type) -> CodableLayout? {
    let id = ObjectIdentifier(T.self)
    if let known = cache.withLock({ $0[id] }) { return known.layout }
    let layout = probe(T.self)
    cache.withLock { $0[id] = Known(layout: layout) }
    return layout
  }

  private struct Known: @unchecked Sendable {
    let layout: CodableLayout?
  }
  private static let cache = Mutex<[ObjectIdentifier: Known]>([:])

  private static func probe<T: Decodable>(_: T.Type) -> CodableLayout? {
    let probe = Probe()
    let root = ProbeNode(name: String(reflecting: T.self))
    guard (try? T(from: ProbeDecoder(probe: probe, node: root))) != nil, probe.failure == nil,
      let node = root.finish()
    else { return nil }
    // A type that codes as a single value is a record of that one field.
    var wrapped = false
    let top: LayoutNode
    if case .keyed = node {
      top = node
    } else {
      top = .keyed(name: root.name, fields: [LayoutField(key: "", node: node)])
      wrapped = true
    }
    var leaves: [LayoutLeaf] = []
    let numbered = top.numbered(from: &leaves)
    // A type of no fields has nothing to put in columns: boxed, it still groups.
    guard !leaves.isEmpty, case .record(let type) = numbered.columnType else { return nil }
    return CodableLayout(type: type, root: numbered, leaves: leaves, wrapped: wrapped)
  }

  /// The record column of the `count` values of `T` at `base`.
  /// - Throws: `FrameError.unsupported` when a value codes otherwise than the layout says.
  func column<T: Encodable>(_: T.Type, at base: UnsafePointer<T>, count: Int) throws -> Column {
    let writer = LayoutWriter(self, rows: count)
    try withExtendedLifetime(writer) {
      for i in 0..<count {
        try base[i].encode(to: RowEncoder(writer: writer, node: start))
        try writer.endRow(i, of: T.self)
      }
    }
    return try writer.finish(count)
  }

  /// The rows of a record column of this layout as values of `T`.
  func values<T: Decodable>(_: T.Type, from column: Column) throws -> [T] {
    guard column.type == .record(type) else {
      throw FrameError.typeMismatch(expected: type.description, found: column.type.description)
    }
    let reader = LayoutReader(self, column)
    var out: [T] = []
    out.reserveCapacity(column.count)
    try withExtendedLifetime(reader) {
      for i in 0..<column.count {
        reader.row = i
        out.append(try T(from: RowDecoder(reader: reader, node: start)))
      }
    }
    return out
  }
}

/// A container or value of a layout. Leaves carry their index among the layout's leaves.
indirect enum LayoutNode {
  case keyed(name: String, fields: [LayoutField])
  case leaf(LayoutLeaf, index: Int)

  var columnType: ColumnType {
    switch self {
    case .keyed(let name, let fields): .record(RecordType(name: name, fields: fields.map(\.node.columnType)))
    case .leaf(let leaf, _): leaf.columnType
    }
  }

  /// This node with its leaves numbered in depth-first order, appended to `leaves`.
  func numbered(from leaves: inout [LayoutLeaf]) -> LayoutNode {
    switch self {
    case .keyed(let name, let fields):
      return .keyed(name: name, fields: fields.map { LayoutField(key: $0.key, node: $0.node.numbered(from: &leaves)) })
    case .leaf(let leaf, _):
      leaves.append(leaf)
      return .leaf(leaf, index: leaves.count - 1)
    }
  }
}

/// A layout's nodes, fields and leaves in flat tables, allocated once per layout (layouts are
/// kept for the process). Node 0 is the root; a keyed node's fields are `fieldCount[n]` entries
/// from `firstField[n]`, a leaf node's `leaf[n]` is its leaf index (else -1).
struct LayoutTables: @unchecked Sendable {
  /// A leaf's kind: a `ScalarKind` raw value, or one of these.
  static let string: UInt8 = 100
  static let bytes: UInt8 = 101
  static let column: UInt8 = 102

  let firstField: UnsafeMutablePointer<Int32>
  let fieldCount: UnsafeMutablePointer<Int32>
  let leaf: UnsafeMutablePointer<Int32>
  let keys: UnsafeMutablePointer<String>
  let child: UnsafeMutablePointer<Int32>
  let kinds: UnsafeMutablePointer<UInt8>
  let leafCount: Int

  init(_ root: LayoutNode, leaves: [LayoutLeaf]) {
    var first: [Int32] = []
    var count: [Int32] = []
    var leafOf: [Int32] = []
    var keys: [String] = []
    var child: [Int32] = []
    // Breadth-first per keyed node, so that each node's fields are contiguous.
    var queue: [LayoutNode] = [root]
    var next = 0
    while next < queue.count {
      let node = queue[next]
      next += 1
      switch node {
      case .leaf(_, let index):
        first.append(-1)
        count.append(0)
        leafOf.append(Int32(index))
      case .keyed(_, let fields):
        first.append(Int32(keys.count))
        count.append(Int32(fields.count))
        leafOf.append(-1)
        for f in fields {
          keys.append(f.key)
          child.append(Int32(queue.count))
          queue.append(f.node)
        }
      }
    }
    func copy<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
      let p = UnsafeMutablePointer<T>.allocate(capacity: max(values.count, 1))
      _ = UnsafeMutableBufferPointer(start: p, count: values.count).initialize(from: values)
      return p
    }
    firstField = copy(first)
    fieldCount = copy(count)
    leaf = copy(leafOf)
    self.keys = copy(keys)
    self.child = copy(child)
    kinds = copy(
      leaves.map { leaf -> UInt8 in
        switch leaf {
        case .scalar(let kind): kind.rawValue
        case .string: Self.string
        case .bytes: Self.bytes
        case .column: Self.column
        }
      })
    leafCount = leaves.count
  }

  /// The field of keyed node `node` coded under `key`, or -1; `next` is the field expected
  /// next (values code their fields in order), advanced on a hit.
  @inline(__always)
  func field(_ node: Int32, _ key: String, next: inout Int32) -> Int32 {
    guard node >= 0 else { return -1 }
    let first = Int(firstField[Int(node)])
    let n = fieldCount[Int(node)]
    guard first >= 0 else { return -1 }
    if next < n && keys[first + Int(next)] == key {
      next += 1
      return child[first + Int(next) - 1]
    }
    for j in 0..<Int(n) where keys[first + j] == key { return child[first + j] }
    return -1
  }

  /// The leaf of `node`, or -1 when it is none (or `node` is -1).
  @inline(__always)
  func leafOf(_ node: Int32) -> Int {
    node >= 0 ? Int(leaf[Int(node)]) : -1
  }
}

struct LayoutField {
  let key: String
  let node: LayoutNode
}

/// A value coded as one column.
enum LayoutLeaf {
  case scalar(ScalarKind)
  case string
  case bytes
  /// A field of a type with a column of its own (a `ColumnRecord`): its values are collected
  /// and made a column by a sink.
  case column(ColumnType, sink: @Sendable () -> any ValueSink)

  var columnType: ColumnType {
    switch self {
    case .scalar(let kind): .scalar(kind)
    case .string: .string
    case .bytes: .bytes
    case .column(let type, _): type
    }
  }
}

/// Collects values of one type into a column.
protocol ValueSink: AnyObject {
  var count: Int { get }
  func append(_ value: Any) throws
  func finish() throws -> Column
}

private final class TypedSink<V: Hashable & Sendable>: ValueSink {
  var values: [V] = []
  var count: Int { values.count }
  func append(_ value: Any) throws {
    guard let v = value as? V else { throw FrameError.typeMismatch(expected: "\(V.self)", found: "\(type(of: value))") }
    values.append(v)
  }
  func finish() throws -> Column { try Column.make(values) }
}

private func makeSink<V: Hashable & Sendable>(_: V.Type) -> @Sendable () -> any ValueSink { { TypedSink<V>() } }

// MARK: Probing

/// What the probe found wrong; the first failure wins.
private final class Probe {
  var failure: String?
  func fail(_ why: String) { if failure == nil { failure = why } }
}

/// A node being probed: a keyed container's fields in the order asked for, or one value.
private final class ProbeNode {
  var name: String
  var fields: [(key: String, node: ProbeNode)] = []
  var keyed = false
  var leaf: LayoutLeaf?

  init(name: String) { self.name = name }

  func finish() -> LayoutNode? {
    if keyed {
      guard leaf == nil else { return nil }
      var out: [LayoutField] = []
      for (key, node) in fields {
        guard let n = node.finish() else { return nil }
        out.append(LayoutField(key: key, node: n))
      }
      return .keyed(name: name, fields: out)
    }
    guard let leaf else { return nil }
    return .leaf(leaf, index: 0)
  }

  func child(_ key: String, probe: Probe) -> ProbeNode {
    if fields.contains(where: { $0.key == key }) { probe.fail("field \(key) decoded twice") }
    let node = ProbeNode(name: "\(name).\(key)")
    fields.append((key, node))
    return node
  }
}

/// The zero of a scalar type.
private func zero<S: ScalarValue>(_: S.Type) -> S {
  withUnsafeTemporaryAllocation(of: UInt8.self, capacity: MemoryLayout<S>.size) { buffer in
    buffer.initialize(repeating: 0)
    return UnsafeRawPointer(buffer.baseAddress!).loadUnaligned(as: S.self)
  }
}

/// Decodes a probe value of `T` as `node`: a leaf, a `ColumnRecord` with a column of its own,
/// or a structure probed in turn and named after its type.
private func probeValue<T: Decodable>(_: T.Type, node: ProbeNode, probe: Probe) throws -> T {
  if node.keyed || node.leaf != nil { probe.fail("\(node.name) decoded twice") }
  if T.self == String.self {
    node.leaf = .string
    return "" as! T
  }
  if T.self == [UInt8].self {
    node.leaf = .bytes
    return [UInt8]() as! T
  }
  if let scalar = T.self as? any ScalarValue.Type {
    node.leaf = .scalar(scalar.scalarKind)
    return zero(scalar) as! T
  }
  if let native = T.self as? any ColumnValue.Type {
    node.leaf = .column(native.columnType, sink: makeSink(native))
    // A value to go on with, from a probe of its own.
    return try T(from: ProbeDecoder(probe: probe, node: ProbeNode(name: "\(T.self)")))
  }
  if let codable = T.self as? any (Codable & Hashable & Sendable).Type, BoxedOps.isRegistered(T.self) {
    // Registered boxed: kept whole, with its own hash and order.
    node.leaf = .column(Column.codableType(codable), sink: makeSink(codable))
    return try T(from: ProbeDecoder(probe: probe, node: ProbeNode(name: "\(T.self)")))
  }
  node.name = String(reflecting: T.self)
  return try T(from: ProbeDecoder(probe: probe, node: node))
}

private struct Unsupported: Error {}

private struct ProbeDecoder: Decoder {
  let probe: Probe
  let node: ProbeNode
  var codingPath: [any CodingKey] { [] }
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy _: Key.Type) throws -> KeyedDecodingContainer<Key> {
    if node.leaf != nil { probe.fail("\(node.name) decoded as a value and a structure") }
    node.keyed = true
    return KeyedDecodingContainer(ProbeKeyed<Key>(probe: probe, node: node))
  }

  func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
    probe.fail("\(node.name) decodes an array")
    throw Unsupported()
  }

  func singleValueContainer() throws -> any SingleValueDecodingContainer {
    ProbeSingle(probe: probe, node: node)
  }
}

private struct ProbeKeyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
  let probe: Probe
  let node: ProbeNode
  var codingPath: [any CodingKey] { [] }
  var allKeys: [Key] {
    probe.fail("\(node.name) reads its keys from the data")
    return []
  }

  func contains(_: Key) -> Bool { true }
  func decodeNil(forKey key: Key) throws -> Bool {
    probe.fail("\(node.name).\(key.stringValue) is optional")
    throw Unsupported()
  }
  func decode<T: Decodable>(_: T.Type, forKey key: Key) throws -> T { try probed(T.self, key) }
  func decode(_: Bool.Type, forKey key: Key) throws -> Bool { try probed(Bool.self, key) }
  func decode(_: String.Type, forKey key: Key) throws -> String { try probed(String.self, key) }
  func decode(_: Double.Type, forKey key: Key) throws -> Double { try probed(Double.self, key) }
  func decode(_: Float.Type, forKey key: Key) throws -> Float { try probed(Float.self, key) }
  func decode(_: Int.Type, forKey key: Key) throws -> Int { try probed(Int.self, key) }
  func decode(_: Int8.Type, forKey key: Key) throws -> Int8 { try probed(Int8.self, key) }
  func decode(_: Int16.Type, forKey key: Key) throws -> Int16 { try probed(Int16.self, key) }
  func decode(_: Int32.Type, forKey key: Key) throws -> Int32 { try probed(Int32.self, key) }
  func decode(_: Int64.Type, forKey key: Key) throws -> Int64 { try probed(Int64.self, key) }
  func decode(_: UInt.Type, forKey key: Key) throws -> UInt { try probed(UInt.self, key) }
  func decode(_: UInt8.Type, forKey key: Key) throws -> UInt8 { try probed(UInt8.self, key) }
  func decode(_: UInt16.Type, forKey key: Key) throws -> UInt16 { try probed(UInt16.self, key) }
  func decode(_: UInt32.Type, forKey key: Key) throws -> UInt32 { try probed(UInt32.self, key) }
  func decode(_: UInt64.Type, forKey key: Key) throws -> UInt64 { try probed(UInt64.self, key) }

  private func probed<T: Decodable>(_: T.Type, _ key: Key) throws -> T {
    try probeValue(T.self, node: node.child(key.stringValue, probe: probe), probe: probe)
  }

  func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type, forKey key: Key) throws
    -> KeyedDecodingContainer<NestedKey>
  {
    let child = node.child(key.stringValue, probe: probe)
    child.keyed = true
    return KeyedDecodingContainer(ProbeKeyed<NestedKey>(probe: probe, node: child))
  }

  func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
    probe.fail("\(node.name).\(key.stringValue) is an array")
    throw Unsupported()
  }

  func superDecoder() throws -> any Decoder {
    probe.fail("\(node.name) decodes a superclass")
    throw Unsupported()
  }

  func superDecoder(forKey _: Key) throws -> any Decoder { try superDecoder() }
}

private struct ProbeSingle: SingleValueDecodingContainer {
  let probe: Probe
  let node: ProbeNode
  var codingPath: [any CodingKey] { [] }

  func decodeNil() -> Bool {
    probe.fail("\(node.name) is optional")
    return false
  }
  func decode<T: Decodable>(_: T.Type) throws -> T { try probeValue(T.self, node: node, probe: probe) }
  func decode(_: Bool.Type) throws -> Bool { try probeValue(Bool.self, node: node, probe: probe) }
  func decode(_: String.Type) throws -> String { try probeValue(String.self, node: node, probe: probe) }
  func decode(_: Double.Type) throws -> Double { try probeValue(Double.self, node: node, probe: probe) }
  func decode(_: Float.Type) throws -> Float { try probeValue(Float.self, node: node, probe: probe) }
  func decode(_: Int.Type) throws -> Int { try probeValue(Int.self, node: node, probe: probe) }
  func decode(_: Int8.Type) throws -> Int8 { try probeValue(Int8.self, node: node, probe: probe) }
  func decode(_: Int16.Type) throws -> Int16 { try probeValue(Int16.self, node: node, probe: probe) }
  func decode(_: Int32.Type) throws -> Int32 { try probeValue(Int32.self, node: node, probe: probe) }
  func decode(_: Int64.Type) throws -> Int64 { try probeValue(Int64.self, node: node, probe: probe) }
  func decode(_: UInt.Type) throws -> UInt { try probeValue(UInt.self, node: node, probe: probe) }
  func decode(_: UInt8.Type) throws -> UInt8 { try probeValue(UInt8.self, node: node, probe: probe) }
  func decode(_: UInt16.Type) throws -> UInt16 { try probeValue(UInt16.self, node: node, probe: probe) }
  func decode(_: UInt32.Type) throws -> UInt32 { try probeValue(UInt32.self, node: node, probe: probe) }
  func decode(_: UInt64.Type) throws -> UInt64 { try probeValue(UInt64.self, node: node, probe: probe) }
}

// MARK: Writing

/// Builds the leaf columns of a layout from encoded values, a row at a time. The per-row path
/// reads only the layout's flat tables and this writer's buffers, through pointers.
private final class LayoutWriter {
  let layout: CodableLayout
  let t: LayoutTables
  /// Per leaf: values written, and for scalars the buffer, its capacity in values and the
  /// width of one.
  private let counts: UnsafeMutablePointer<Int>
  private let bases: UnsafeMutablePointer<UnsafeMutableRawPointer?>
  private let capacities: UnsafeMutablePointer<Int>
  private let widths: UnsafeMutablePointer<Int>
  private var strings: [StringSink?]
  private var sinks: [(any ValueSink)?]
  /// What went wrong in a method of `Encoder` that cannot throw.
  var failure: String?

  init(_ layout: CodableLayout, rows: Int) {
    self.layout = layout
    t = layout.tables
    let n = max(t.leafCount, 1)
    counts = .allocate(capacity: n)
    counts.initialize(repeating: 0, count: n)
    bases = .allocate(capacity: n)
    bases.initialize(repeating: nil, count: n)
    capacities = .allocate(capacity: n)
    capacities.initialize(repeating: 0, count: n)
    widths = .allocate(capacity: n)
    widths.initialize(repeating: 0, count: n)
    let rows = max(rows, 1)
    for (i, leaf) in layout.leaves.enumerated() {
      if case .scalar(let kind) = leaf {
        widths[i] = kind.width
        capacities[i] = rows
        bases[i] = .allocate(byteCount: rows * kind.width, alignment: 16)
      }
    }
    strings = layout.leaves.map { leaf in
      switch leaf {
      case .string: StringSink(.string, rows: rows)
      case .bytes: StringSink(.bytes, rows: rows)
      default: nil
      }
    }
    sinks = layout.leaves.map { leaf in
      if case .column(_, let make) = leaf { return make() }
      return nil
    }
  }

  deinit {
    for i in 0..<t.leafCount { bases[i]?.deallocate() }
    counts.deallocate()
    bases.deallocate()
    capacities.deallocate()
    widths.deallocate()
  }

  func fail(_ why: String) { if failure == nil { failure = why } }

  /// Checks that row `row` gave every leaf one value.
  func endRow<T>(_ row: Int, of _: T.Type) throws {
    if failure == nil {
      for i in 0..<t.leafCount where counts[i] != row + 1 {
        fail(counts[i] <= row ? "no value for its column \(i)" : "two values for its column \(i)")
        break
      }
    }
    guard let problem = failure else { return }
    throw FrameError.unsupported(
      "\(T.self) encoded unlike the layout its decoding gave (\(problem)): conform it to ColumnRecord, "
        + "or register it with BoxedOps to store it boxed")
  }

  private func mismatch(_ what: String, _ node: Int32) {
    let leaf = t.leafOf(node)
    fail("\(what) where the layout has \(leaf >= 0 ? "\(layout.leaves[leaf].columnType)" : "a structure or no field")")
  }

  @inline(__always)
  func put<S: ScalarValue>(_ value: S, _ node: Int32) {
    let leaf = t.leafOf(node)
    guard leaf >= 0, t.kinds[leaf] == S.scalarKind.rawValue else { return mismatch("a \(S.self)", node) }
    if counts[leaf] == capacities[leaf] { grow(leaf) }
    bases[leaf].unsafelyUnwrapped.storeBytes(of: value, toByteOffset: counts[leaf] &* widths[leaf], as: S.self)
    counts[leaf] &+= 1
  }

  private func grow(_ leaf: Int) {
    let capacity = max(2 * capacities[leaf], 16)
    let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity * widths[leaf], alignment: 16)
    if let old = bases[leaf] {
      grown.copyMemory(from: old, byteCount: counts[leaf] * widths[leaf])
      old.deallocate()
    }
    bases[leaf] = grown
    capacities[leaf] = capacity
  }

  func put(string value: String, _ node: Int32) {
    let leaf = t.leafOf(node)
    guard leaf >= 0, t.kinds[leaf] == LayoutTables.string, let sink = strings[leaf] else {
      return mismatch("a String", node)
    }
    sink.append(value)
    counts[leaf] &+= 1
  }

  /// Encodes `value` as `node`.
  func encode<T: Encodable>(_ value: T, _ node: Int32) throws {
    guard node >= 0 else { return fail("a field the layout does not have") }
    let leaf = t.leafOf(node)
    if leaf >= 0 {
      switch t.kinds[leaf] {
      case LayoutTables.string:
        if let s = value as? String { return put(string: s, node) }
      case LayoutTables.bytes:
        if let b = value as? [UInt8], let sink = strings[leaf] {
          sink.append(bytes: b)
          counts[leaf] &+= 1
          return
        }
      case LayoutTables.column:
        if let sink = sinks[leaf] {
          try sink.append(value)
          counts[leaf] &+= 1
          return
        }
      default:
        if let s = value as? any ScalarValue { return put(s, node) }
      }
    }
    // A type coding itself as one of these, or a nested structure.
    try value.encode(to: RowEncoder(writer: self, node: node))
  }

  func finish(_ rows: Int) throws -> Column {
    var columns: [Column] = []
    for i in 0..<t.leafCount {
      if let base = bases[i] {
        columns.append(try Column.copyScalars(layout.leaves[i].columnType, from: base, count: counts[i]))
      } else if let s = strings[i] {
        columns.append(s.finish())
      } else if let s = sinks[i] {
        columns.append(try s.finish())
      }
    }
    return try assemble(layout.root, columns, rows)
  }

  private func assemble(_ node: LayoutNode, _ leaves: [Column], _ rows: Int) throws -> Column {
    switch node {
    case .leaf(_, let i): return leaves[i]
    case .keyed:
      guard case .record(let type) = node.columnType, case .keyed(_, let fields) = node else {
        throw FrameError.invalidArgument("a record layout without a record type")
      }
      return try Column(record: type, fields: fields.map { try assemble($0.node, leaves, rows) }, count: rows)
    }
  }
}

/// Strings or byte arrays, appended one at a time.
private final class StringSink {
  private var builder: BytesColumnBuilder?

  init(_ type: ColumnType, rows: Int) { builder = BytesColumnBuilder(type: type, rows: rows) }

  func append(_ value: String) { builder?.append(value) }
  func append(bytes: [UInt8]) { bytes.withUnsafeBytes { builder?.append(bytes: $0) } }
  func finish() -> Column { builder.take()!.finish() }
}

private struct RowEncoder: Encoder {
  unowned(unsafe) let writer: LayoutWriter
  let node: Int32
  var codingPath: [any CodingKey] { [] }
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy _: Key.Type) -> KeyedEncodingContainer<Key> {
    if writer.t.leafOf(node) >= 0 { writer.fail("a structure where the layout has a value") }
    return KeyedEncodingContainer(RowKeyed<Key>(writer: writer, node: node))
  }

  func unkeyedContainer() -> any UnkeyedEncodingContainer {
    writer.fail("an array")
    return FailingUnkeyed(writer: writer)
  }

  func singleValueContainer() -> any SingleValueEncodingContainer { RowSingle(writer: writer, node: node) }
}

private struct RowKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
  unowned(unsafe) let writer: LayoutWriter
  let node: Int32
  /// The field expected next.
  var next: Int32 = 0
  var codingPath: [any CodingKey] { [] }

  init(writer: LayoutWriter, node: Int32) {
    self.writer = writer
    self.node = node
  }

  private mutating func field(_ key: Key) -> Int32 { writer.t.field(node, key.stringValue, next: &next) }

  mutating func encodeNil(forKey key: Key) throws { writer.fail("nil for \(key.stringValue)") }
  mutating func encode(_ value: Bool, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: String, forKey key: Key) throws { writer.put(string: value, field(key)) }
  mutating func encode(_ value: Double, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: Float, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: Int, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: Int8, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: Int16, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: Int32, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: Int64, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: UInt, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: UInt8, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: UInt16, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: UInt32, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode(_ value: UInt64, forKey key: Key) throws { writer.put(value, field(key)) }
  mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try writer.encode(value, field(key)) }

  mutating func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type, forKey key: Key)
    -> KeyedEncodingContainer<NestedKey>
  {
    let child = field(key)
    if child < 0 { writer.fail("a field \(key.stringValue) the layout does not have") }
    return KeyedEncodingContainer(RowKeyed<NestedKey>(writer: writer, node: child))
  }

  mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
    writer.fail("an array for \(key.stringValue)")
    return FailingUnkeyed(writer: writer)
  }

  mutating func superEncoder() -> any Encoder {
    writer.fail("a superclass")
    return RowEncoder(writer: writer, node: -1)
  }

  mutating func superEncoder(forKey _: Key) -> any Encoder { superEncoder() }
}

private struct RowSingle: SingleValueEncodingContainer {
  unowned(unsafe) let writer: LayoutWriter
  let node: Int32
  var codingPath: [any CodingKey] { [] }

  mutating func encodeNil() throws { writer.fail("nil") }
  mutating func encode(_ value: Bool) throws { writer.put(value, node) }
  mutating func encode(_ value: String) throws { writer.put(string: value, node) }
  mutating func encode(_ value: Double) throws { writer.put(value, node) }
  mutating func encode(_ value: Float) throws { writer.put(value, node) }
  mutating func encode(_ value: Int) throws { writer.put(value, node) }
  mutating func encode(_ value: Int8) throws { writer.put(value, node) }
  mutating func encode(_ value: Int16) throws { writer.put(value, node) }
  mutating func encode(_ value: Int32) throws { writer.put(value, node) }
  mutating func encode(_ value: Int64) throws { writer.put(value, node) }
  mutating func encode(_ value: UInt) throws { writer.put(value, node) }
  mutating func encode(_ value: UInt8) throws { writer.put(value, node) }
  mutating func encode(_ value: UInt16) throws { writer.put(value, node) }
  mutating func encode(_ value: UInt32) throws { writer.put(value, node) }
  mutating func encode(_ value: UInt64) throws { writer.put(value, node) }
  mutating func encode<T: Encodable>(_ value: T) throws { try writer.encode(value, node) }
}

private struct FailingUnkeyed: UnkeyedEncodingContainer {
  unowned(unsafe) let writer: LayoutWriter
  var codingPath: [any CodingKey] { [] }
  var count: Int { 0 }
  mutating func encodeNil() throws { writer.fail("an array") }
  mutating func encode<T: Encodable>(_: T) throws { writer.fail("an array") }
  mutating func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
    KeyedEncodingContainer(RowKeyed<NestedKey>(writer: writer, node: -1))
  }
  mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { self }
  mutating func superEncoder() -> any Encoder { RowEncoder(writer: writer, node: -1) }
}

// MARK: Reading

/// Reads the leaf columns of a record column of a layout, one row at a time, through the
/// layout's flat tables and pointers to the leaves' values.
private final class LayoutReader {
  var row = 0
  let layout: CodableLayout
  let t: LayoutTables
  private var leaves: [Column] = []
  /// Per leaf: a scalar leaf's first value, and its width.
  private let bases: UnsafeMutablePointer<UnsafeRawPointer?>
  private let widths: UnsafeMutablePointer<Int>
  /// The values of `.column` leaves, made on first use.
  private var values: [Int: AnyObject] = [:]

  init(_ layout: CodableLayout, _ column: Column) {
    self.layout = layout
    t = layout.tables
    let n = max(t.leafCount, 1)
    bases = .allocate(capacity: n)
    bases.initialize(repeating: nil, count: n)
    widths = .allocate(capacity: n)
    widths.initialize(repeating: 0, count: n)
    collect(layout.root, column)
    for (i, leaf) in leaves.enumerated() {
      bases[i] = leaf.rawBase
      widths[i] = leaf.type.scalarWidth ?? 0
    }
  }

  deinit {
    bases.deallocate()
    widths.deallocate()
  }

  private func collect(_ node: LayoutNode, _ column: Column) {
    switch node {
    case .leaf: leaves.append(column)
    case .keyed(_, let fields):
      let columns = column.fields ?? []
      for (field, c) in zip(fields, columns) { collect(field.node, c) }
    }
  }

  private func mismatch<T>(_: T.Type, _ node: Int32) -> DecodingError {
    let leaf = t.leafOf(node)
    let has = leaf >= 0 ? "\(layout.leaves[leaf].columnType)" : "a structure or no field"
    return .typeMismatch(
      T.self, DecodingError.Context(codingPath: [], debugDescription: "the record column has \(has)"))
  }

  @inline(__always)
  func scalar<S: ScalarValue>(_: S.Type, _ node: Int32) throws -> S {
    let leaf = t.leafOf(node)
    guard leaf >= 0, t.kinds[leaf] == S.scalarKind.rawValue, let base = bases[leaf] else {
      throw mismatch(S.self, node)
    }
    return base.loadUnaligned(fromByteOffset: row &* widths[leaf], as: S.self)
  }

  func string(_ node: Int32) throws -> String {
    let leaf = t.leafOf(node)
    guard leaf >= 0, t.kinds[leaf] == LayoutTables.string else { throw mismatch(String.self, node) }
    return leaves[leaf].variableWidth.string(at: row)
  }

  /// The field of keyed node `node` coded under `key`, or -1.
  func field(_ node: Int32, _ key: String) -> Int32 {
    var next: Int32 = 0
    return t.field(node, key, next: &next)
  }

  func decode<T: Decodable>(_: T.Type, _ node: Int32) throws -> T {
    guard node >= 0 else { throw mismatch(T.self, node) }
    let leaf = t.leafOf(node)
    if leaf >= 0 {
      switch t.kinds[leaf] {
      case LayoutTables.string:
        if T.self == String.self { return try string(node) as! T }
      case LayoutTables.bytes:
        if T.self == [UInt8].self { return leaves[leaf].variableWidth.bytes(at: row) as! T }
      case LayoutTables.column:
        if let kept = values[leaf] as? Kept<T> { return kept.values[row] }
        if values[leaf] == nil {
          let kept = Kept(try leaves[leaf].values(as: T.self))
          values[leaf] = kept
          return kept.values[row]
        }
      default:
        if let scalar = T.self as? any ScalarValue.Type { return try self.scalar(scalar, node) as! T }
      }
    }
    return try T(from: RowDecoder(reader: self, node: node))
  }

  private final class Kept<T> {
    let values: [T]
    init(_ values: [T]) { self.values = values }
  }
}

private struct RowDecoder: Decoder {
  unowned(unsafe) let reader: LayoutReader
  let node: Int32
  var codingPath: [any CodingKey] { [] }
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy _: Key.Type) throws -> KeyedDecodingContainer<Key> {
    guard node >= 0, reader.t.leafOf(node) < 0 else {
      throw DecodingError.typeMismatch(
        Key.self, DecodingError.Context(codingPath: [], debugDescription: "the record column has no structure here"))
    }
    return KeyedDecodingContainer(RowKeyedDecoder<Key>(reader: reader, node: node))
  }

  func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
    throw DecodingError.typeMismatch(
      [Any].self, DecodingError.Context(codingPath: [], debugDescription: "a record column holds no arrays"))
  }

  func singleValueContainer() throws -> any SingleValueDecodingContainer {
    RowSingleDecoder(reader: reader, node: node)
  }
}

private struct RowKeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
  unowned(unsafe) let reader: LayoutReader
  let node: Int32
  var codingPath: [any CodingKey] { [] }
  var allKeys: [Key] {
    let t = reader.t
    let first = Int(t.firstField[Int(node)])
    return (0..<Int(t.fieldCount[Int(node)])).compactMap { Key(stringValue: t.keys[first + $0]) }
  }

  private func field(_ key: Key) -> Int32 { reader.field(node, key.stringValue) }

  func contains(_ key: Key) -> Bool { field(key) >= 0 }
  func decodeNil(forKey _: Key) throws -> Bool { false }
  func decode(_: Bool.Type, forKey key: Key) throws -> Bool { try reader.scalar(Bool.self, field(key)) }
  func decode(_: String.Type, forKey key: Key) throws -> String { try reader.string(field(key)) }
  func decode(_: Double.Type, forKey key: Key) throws -> Double { try reader.scalar(Double.self, field(key)) }
  func decode(_: Float.Type, forKey key: Key) throws -> Float { try reader.scalar(Float.self, field(key)) }
  func decode(_: Int.Type, forKey key: Key) throws -> Int { try reader.scalar(Int.self, field(key)) }
  func decode(_: Int8.Type, forKey key: Key) throws -> Int8 { try reader.scalar(Int8.self, field(key)) }
  func decode(_: Int16.Type, forKey key: Key) throws -> Int16 { try reader.scalar(Int16.self, field(key)) }
  func decode(_: Int32.Type, forKey key: Key) throws -> Int32 { try reader.scalar(Int32.self, field(key)) }
  func decode(_: Int64.Type, forKey key: Key) throws -> Int64 { try reader.scalar(Int64.self, field(key)) }
  func decode(_: UInt.Type, forKey key: Key) throws -> UInt { try reader.scalar(UInt.self, field(key)) }
  func decode(_: UInt8.Type, forKey key: Key) throws -> UInt8 { try reader.scalar(UInt8.self, field(key)) }
  func decode(_: UInt16.Type, forKey key: Key) throws -> UInt16 { try reader.scalar(UInt16.self, field(key)) }
  func decode(_: UInt32.Type, forKey key: Key) throws -> UInt32 { try reader.scalar(UInt32.self, field(key)) }
  func decode(_: UInt64.Type, forKey key: Key) throws -> UInt64 { try reader.scalar(UInt64.self, field(key)) }
  func decode<T: Decodable>(_: T.Type, forKey key: Key) throws -> T { try reader.decode(T.self, field(key)) }

  func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type, forKey key: Key) throws
    -> KeyedDecodingContainer<NestedKey>
  {
    let child = field(key)
    guard child >= 0, reader.t.leafOf(child) < 0 else {
      throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: [], debugDescription: "no nested record"))
    }
    return KeyedDecodingContainer(RowKeyedDecoder<NestedKey>(reader: reader, node: child))
  }

  func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
    throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: [], debugDescription: "no arrays"))
  }

  func superDecoder() throws -> any Decoder {
    throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: [], debugDescription: "no superclass"))
  }

  func superDecoder(forKey _: Key) throws -> any Decoder { try superDecoder() }
}

private struct RowSingleDecoder: SingleValueDecodingContainer {
  unowned(unsafe) let reader: LayoutReader
  let node: Int32
  var codingPath: [any CodingKey] { [] }

  func decodeNil() -> Bool { false }
  func decode(_: Bool.Type) throws -> Bool { try reader.scalar(Bool.self, node) }
  func decode(_: String.Type) throws -> String { try reader.string(node) }
  func decode(_: Double.Type) throws -> Double { try reader.scalar(Double.self, node) }
  func decode(_: Float.Type) throws -> Float { try reader.scalar(Float.self, node) }
  func decode(_: Int.Type) throws -> Int { try reader.scalar(Int.self, node) }
  func decode(_: Int8.Type) throws -> Int8 { try reader.scalar(Int8.self, node) }
  func decode(_: Int16.Type) throws -> Int16 { try reader.scalar(Int16.self, node) }
  func decode(_: Int32.Type) throws -> Int32 { try reader.scalar(Int32.self, node) }
  func decode(_: Int64.Type) throws -> Int64 { try reader.scalar(Int64.self, node) }
  func decode(_: UInt.Type) throws -> UInt { try reader.scalar(UInt.self, node) }
  func decode(_: UInt8.Type) throws -> UInt8 { try reader.scalar(UInt8.self, node) }
  func decode(_: UInt16.Type) throws -> UInt16 { try reader.scalar(UInt16.self, node) }
  func decode(_: UInt32.Type) throws -> UInt32 { try reader.scalar(UInt32.self, node) }
  func decode(_: UInt64.Type) throws -> UInt64 { try reader.scalar(UInt64.self, node) }
  func decode<T: Decodable>(_: T.Type) throws -> T { try reader.decode(T.self, node) }
}
