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

  private init(type: RecordType, root: LayoutNode, leaves: [LayoutLeaf]) {
    self.type = type
    self.root = root
    self.leaves = leaves
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
    let top: LayoutNode =
      if case .keyed = node { node } else { .keyed(name: root.name, fields: [LayoutField(key: "", node: node)]) }
    var leaves: [LayoutLeaf] = []
    let numbered = top.numbered(from: &leaves)
    guard case .record(let type) = numbered.columnType else { return nil }
    return CodableLayout(type: type, root: numbered, leaves: leaves)
  }

  /// The record column of the `count` values of `T` at `base`.
  /// - Throws: `FrameError.unsupported` when a value codes otherwise than the layout says.
  func column<T: Encodable>(_: T.Type, at base: UnsafePointer<T>, count: Int) throws -> Column {
    let writer = LayoutWriter(self, rows: count)
    for i in 0..<count {
      try base[i].encode(to: RowEncoder(writer: writer, node: root))
      try writer.endRow(i, of: T.self)
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
    for i in 0..<column.count {
      reader.row = i
      out.append(try T(from: RowDecoder(reader: reader, node: root)))
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

  /// The field of a keyed node coded under `key`.
  func field(_ key: String) -> LayoutNode? {
    guard case .keyed(_, let fields) = self else { return nil }
    for f in fields where f.key == key { return f.node }
    return nil
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

/// Builds the leaf columns of a layout from encoded values, a row at a time.
private final class LayoutWriter {
  let layout: CodableLayout
  private var scalars: [ScalarSink?]
  private var strings: [StringSink?]
  private var sinks: [(any ValueSink)?]
  /// What went wrong in a method of `Encoder` that cannot throw.
  var failure: String?

  init(_ layout: CodableLayout, rows: Int) {
    self.layout = layout
    scalars = layout.leaves.map { leaf in
      if case .scalar(let kind) = leaf { return ScalarSink(kind, rows: rows) }
      return nil
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

  func fail(_ why: String) { if failure == nil { failure = why } }

  /// Checks that row `row` gave every leaf one value.
  func endRow<T>(_ row: Int, of _: T.Type) throws {
    var problem = failure
    if problem == nil {
      for i in layout.leaves.indices where count(i) != row + 1 {
        problem = count(i) <= row ? "no value for its column \(i)" : "two values for its column \(i)"
        break
      }
    }
    guard let problem else { return }
    throw FrameError.unsupported(
      "\(T.self) encoded unlike the layout its decoding gave (\(problem)): conform it to ColumnRecord, "
        + "or register it with BoxedOps to store it boxed")
  }

  private func count(_ i: Int) -> Int { scalars[i]?.count ?? strings[i]?.count ?? sinks[i]?.count ?? 0 }

  func put<S: ScalarValue>(_ value: S, _ node: LayoutNode?) {
    guard case .leaf(.scalar(let kind), let i)? = node, kind == S.scalarKind, let sink = scalars[i] else {
      return fail("a \(S.self) where the layout has \(node.map { "\($0.columnType)" } ?? "no field")")
    }
    sink.append(value)
  }

  func put(string value: String, _ node: LayoutNode?) {
    guard case .leaf(.string, let i)? = node, let sink = strings[i] else {
      return fail("a String where the layout has \(node.map { "\($0.columnType)" } ?? "no field")")
    }
    sink.append(value)
  }

  /// Encodes `value` as `node`.
  func encode<T: Encodable>(_ value: T, _ node: LayoutNode?) throws {
    guard let node else { return fail("a field the layout does not have") }
    switch node {
    case .leaf(.string, _):
      if let s = value as? String { return put(string: s, node) }
    case .leaf(.bytes, let i):
      if let b = value as? [UInt8], let sink = strings[i] { return sink.append(bytes: b) }
    case .leaf(.scalar, _):
      if let s = value as? any ScalarValue { return put(s, node) }
    case .leaf(.column, let i):
      if let sink = sinks[i] { return try sink.append(value) }
    case .keyed:
      break
    }
    // A type coding itself as one of these, or a nested structure.
    try value.encode(to: RowEncoder(writer: self, node: node))
  }

  func finish(_ rows: Int) throws -> Column {
    var columns: [Column] = []
    for i in layout.leaves.indices {
      if let s = scalars[i] {
        columns.append(try s.finish())
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

/// Fixed-width values of one kind, appended one at a time.
private final class ScalarSink {
  let kind: ScalarKind
  private var base: UnsafeMutableRawPointer
  private var capacity: Int
  private(set) var count = 0

  init(_ kind: ScalarKind, rows: Int) {
    self.kind = kind
    capacity = max(rows, 1)
    base = .allocate(byteCount: capacity * kind.width, alignment: 16)
  }

  deinit { base.deallocate() }

  func append<S: ScalarValue>(_ value: S) {
    if count == capacity {
      let grown = UnsafeMutableRawPointer.allocate(byteCount: 2 * capacity * kind.width, alignment: 16)
      grown.copyMemory(from: base, byteCount: count * kind.width)
      base.deallocate()
      base = grown
      capacity *= 2
    }
    base.storeBytes(of: value, toByteOffset: count * kind.width, as: S.self)
    count += 1
  }

  func finish() throws -> Column { try Column.copyScalars(.scalar(kind), from: base, count: count) }
}

/// Strings or byte arrays, appended one at a time.
private final class StringSink {
  private var builder: BytesColumnBuilder?

  init(_ type: ColumnType, rows: Int) { builder = BytesColumnBuilder(type: type, rows: rows) }

  var count: Int { builder?.count ?? 0 }
  func append(_ value: String) { builder?.append(value) }
  func append(bytes: [UInt8]) { bytes.withUnsafeBytes { builder?.append(bytes: $0) } }
  func finish() -> Column {
    let column = builder.take()!.finish()
    return column
  }
}

private struct RowEncoder: Encoder {
  let writer: LayoutWriter
  let node: LayoutNode
  var codingPath: [any CodingKey] { [] }
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy _: Key.Type) -> KeyedEncodingContainer<Key> {
    if case .leaf = node { writer.fail("a structure where the layout has \(node.columnType)") }
    return KeyedEncodingContainer(RowKeyed<Key>(writer: writer, node: node))
  }

  func unkeyedContainer() -> any UnkeyedEncodingContainer {
    writer.fail("an array")
    return FailingUnkeyed(writer: writer)
  }

  func singleValueContainer() -> any SingleValueEncodingContainer { RowSingle(writer: writer, node: node) }
}

private struct RowKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
  let writer: LayoutWriter
  let node: LayoutNode
  var codingPath: [any CodingKey] { [] }

  mutating func encodeNil(forKey key: Key) throws { writer.fail("nil for \(key.stringValue)") }
  mutating func encode(_ value: Bool, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: String, forKey key: Key) throws {
    writer.put(string: value, node.field(key.stringValue))
  }
  mutating func encode(_ value: Double, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: Float, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: Int, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: Int8, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: Int16, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: Int32, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: Int64, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: UInt, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: UInt8, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: UInt16, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: UInt32, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode(_ value: UInt64, forKey key: Key) throws { writer.put(value, node.field(key.stringValue)) }
  mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
    try writer.encode(value, node.field(key.stringValue))
  }

  mutating func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type, forKey key: Key)
    -> KeyedEncodingContainer<NestedKey>
  {
    guard let field = node.field(key.stringValue) else {
      writer.fail("a field \(key.stringValue) the layout does not have")
      return KeyedEncodingContainer(RowKeyed<NestedKey>(writer: writer, node: .keyed(name: "", fields: [])))
    }
    return KeyedEncodingContainer(RowKeyed<NestedKey>(writer: writer, node: field))
  }

  mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
    writer.fail("an array for \(key.stringValue)")
    return FailingUnkeyed(writer: writer)
  }

  mutating func superEncoder() -> any Encoder {
    writer.fail("a superclass")
    return RowEncoder(writer: writer, node: .keyed(name: "", fields: []))
  }

  mutating func superEncoder(forKey _: Key) -> any Encoder { superEncoder() }
}

private struct RowSingle: SingleValueEncodingContainer {
  let writer: LayoutWriter
  let node: LayoutNode
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
  let writer: LayoutWriter
  var codingPath: [any CodingKey] { [] }
  var count: Int { 0 }
  mutating func encodeNil() throws { writer.fail("an array") }
  mutating func encode<T: Encodable>(_: T) throws { writer.fail("an array") }
  mutating func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
    KeyedEncodingContainer(RowKeyed<NestedKey>(writer: writer, node: .keyed(name: "", fields: [])))
  }
  mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { self }
  mutating func superEncoder() -> any Encoder { RowEncoder(writer: writer, node: .keyed(name: "", fields: [])) }
}

// MARK: Reading

/// Reads the leaf columns of a record column of a layout, at one row at a time.
private final class LayoutReader {
  var row = 0
  private var leaves: [Column] = []
  /// The values of `.column` leaves, made on first use.
  private var values: [Int: AnyObject] = [:]

  init(_ layout: CodableLayout, _ column: Column) {
    collect(layout.root, column)
  }

  private func collect(_ node: LayoutNode, _ column: Column) {
    switch node {
    case .leaf: leaves.append(column)
    case .keyed(_, let fields):
      let columns = column.fields ?? []
      for (field, c) in zip(fields, columns) { collect(field.node, c) }
    }
  }

  private func mismatch<T>(_: T.Type, _ node: LayoutNode?) -> DecodingError {
    .typeMismatch(
      T.self,
      DecodingError.Context(
        codingPath: [], debugDescription: "the record column has \(node.map { "\($0.columnType)" } ?? "no field")"))
  }

  func scalar<S: ScalarValue>(_: S.Type, _ node: LayoutNode?) throws -> S {
    guard case .leaf(.scalar(let kind), let i)? = node, kind == S.scalarKind, let base = leaves[i].rawBase else {
      throw mismatch(S.self, node)
    }
    return base.loadUnaligned(fromByteOffset: row * kind.width, as: S.self)
  }

  func string(_ node: LayoutNode?) throws -> String {
    guard case .leaf(.string, let i)? = node else { throw mismatch(String.self, node) }
    return leaves[i].variableWidth.string(at: row)
  }

  func decode<T: Decodable>(_: T.Type, _ node: LayoutNode?) throws -> T {
    guard let node else { throw mismatch(T.self, node) }
    switch node {
    case .leaf(.string, _):
      if T.self == String.self { return try string(node) as! T }
    case .leaf(.bytes, let i):
      if T.self == [UInt8].self { return leaves[i].variableWidth.bytes(at: row) as! T }
    case .leaf(.scalar, _):
      if let scalar = T.self as? any ScalarValue.Type { return try self.scalar(scalar, node) as! T }
    case .leaf(.column, let i):
      if let kept = values[i] as? Kept<T> { return kept.values[row] }
      if values[i] == nil {
        let kept = Kept(try leaves[i].recordValues(T.self))
        values[i] = kept
        return kept.values[row]
      }
    case .keyed:
      break
    }
    return try T(from: RowDecoder(reader: self, node: node))
  }

  private final class Kept<T> {
    let values: [T]
    init(_ values: [T]) { self.values = values }
  }
}

private struct RowDecoder: Decoder {
  let reader: LayoutReader
  let node: LayoutNode
  var codingPath: [any CodingKey] { [] }
  var userInfo: [CodingUserInfoKey: Any] { [:] }

  func container<Key: CodingKey>(keyedBy _: Key.Type) throws -> KeyedDecodingContainer<Key> {
    guard case .keyed = node else {
      throw DecodingError.typeMismatch(
        Key.self, DecodingError.Context(codingPath: [], debugDescription: "the record column has \(node.columnType)"))
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
  let reader: LayoutReader
  let node: LayoutNode
  var codingPath: [any CodingKey] { [] }
  var allKeys: [Key] {
    guard case .keyed(_, let fields) = node else { return [] }
    return fields.compactMap { Key(stringValue: $0.key) }
  }

  func contains(_ key: Key) -> Bool { node.field(key.stringValue) != nil }
  func decodeNil(forKey _: Key) throws -> Bool { false }
  func decode(_: Bool.Type, forKey key: Key) throws -> Bool {
    try reader.scalar(Bool.self, node.field(key.stringValue))
  }
  func decode(_: String.Type, forKey key: Key) throws -> String { try reader.string(node.field(key.stringValue)) }
  func decode(_: Double.Type, forKey key: Key) throws -> Double {
    try reader.scalar(Double.self, node.field(key.stringValue))
  }
  func decode(_: Float.Type, forKey key: Key) throws -> Float {
    try reader.scalar(Float.self, node.field(key.stringValue))
  }
  func decode(_: Int.Type, forKey key: Key) throws -> Int { try reader.scalar(Int.self, node.field(key.stringValue)) }
  func decode(_: Int8.Type, forKey key: Key) throws -> Int8 {
    try reader.scalar(Int8.self, node.field(key.stringValue))
  }
  func decode(_: Int16.Type, forKey key: Key) throws -> Int16 {
    try reader.scalar(Int16.self, node.field(key.stringValue))
  }
  func decode(_: Int32.Type, forKey key: Key) throws -> Int32 {
    try reader.scalar(Int32.self, node.field(key.stringValue))
  }
  func decode(_: Int64.Type, forKey key: Key) throws -> Int64 {
    try reader.scalar(Int64.self, node.field(key.stringValue))
  }
  func decode(_: UInt.Type, forKey key: Key) throws -> UInt {
    try reader.scalar(UInt.self, node.field(key.stringValue))
  }
  func decode(_: UInt8.Type, forKey key: Key) throws -> UInt8 {
    try reader.scalar(UInt8.self, node.field(key.stringValue))
  }
  func decode(_: UInt16.Type, forKey key: Key) throws -> UInt16 {
    try reader.scalar(UInt16.self, node.field(key.stringValue))
  }
  func decode(_: UInt32.Type, forKey key: Key) throws -> UInt32 {
    try reader.scalar(UInt32.self, node.field(key.stringValue))
  }
  func decode(_: UInt64.Type, forKey key: Key) throws -> UInt64 {
    try reader.scalar(UInt64.self, node.field(key.stringValue))
  }
  func decode<T: Decodable>(_: T.Type, forKey key: Key) throws -> T {
    try reader.decode(T.self, node.field(key.stringValue))
  }

  func nestedContainer<NestedKey: CodingKey>(keyedBy _: NestedKey.Type, forKey key: Key) throws
    -> KeyedDecodingContainer<NestedKey>
  {
    guard let field = node.field(key.stringValue), case .keyed = field else {
      throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: [], debugDescription: "no nested record"))
    }
    return KeyedDecodingContainer(RowKeyedDecoder<NestedKey>(reader: reader, node: field))
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
  let reader: LayoutReader
  let node: LayoutNode
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
