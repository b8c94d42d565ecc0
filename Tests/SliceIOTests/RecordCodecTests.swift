import Frame
import SliceIO
import Testing

/// A record with a nested record, for the codec.
struct Reading: ColumnRecord {
  var sensor: Sensor
  var value: Double
  static let columns = RecordColumns(Reading.init(sensor:value:), \.sensor, \.value)
}

struct Sensor: ColumnRecord {
  var site: String
  var index: UInt16
  static let columns = RecordColumns(Sensor.init(site:index:), \.site, \.index)
}

@Suite struct RecordCodecTests {
  @Test(arguments: [ColumnTransform.none, .byteShuffle])
  func framesOfNestedRecordsRoundTripAndAreCheckedAgainstTheirSchema(transform: ColumnTransform) throws {
    let readings = (0..<1000).map { i in
      Reading(sensor: Sensor(site: ["", "north", "südwest"][i % 3], index: UInt16(i % 17)), value: Double(i) / 8)
    }
    let frame = try Frame([try Column.make(readings), Column((0..<1000).map { Int64($0) })], prefix: 1)
    let out = ByteWriter()
    try FrameEncoder(options: CodecOptions(transform: transform)).encode(frame, into: out)
    guard case .frame(let decoded) = try FrameDecoder(schema: frame.schema).decode(out.bytes, source: "t", index: 0)
    else {
      Issue.record("expected a frame")
      return
    }
    #expect(decoded.schema == frame.schema)
    #expect(Array(try decoded.columns[0].records(Reading.self)) == readings)

    // A reader expecting another record type refuses the block.
    let other = Schema([Sensor.columnType, .scalar(.int64)], prefix: 1)
    #expect(throws: SliceIOError.self) {
      _ = try FrameDecoder(schema: other).decode(out.bytes, source: "t", index: 0)
    }
  }

  /// A payload of one record column whose type is given by `type`, then `columnBytes`.
  private func block(type: [UInt8], columnBytes: [UInt8], rows: Int) throws -> [UInt8] {
    let payload = ByteWriter()
    payload.append(UInt8(1))  // frame payload kind
    payload.append(UInt32(1))
    payload.append(UInt32(1))
    payload.append(type)
    payload.append(columnBytes)
    let block = ByteWriter()
    try BlockEncoder(level: BlockEncoder.stored).encode(payload.bytes, rows: rows, into: block)
    return Array(block.bytes)
  }

  private func decode(_ block: [UInt8]) throws -> StreamBlock {
    try block.withUnsafeBytes { try FrameDecoder(schema: nil).decode($0, source: "t", index: 0) }
  }

  private func recordType(fields: UInt16, inner: [UInt8]) -> [UInt8] {
    [5, 1, 0, UInt8(ascii: "r"), UInt8(fields & 0xff), UInt8(fields >> 8)] + inner
  }

  @Test func aRecordNestedDeeperThanBlocksAllowIsRefusedWhenWritten() throws {
    var column = Column([Int64(1), 2])
    for depth in 0..<17 {
      column = try Column(record: RecordType(name: "r\(depth)", fields: [column.type]), fields: [column], count: 2)
    }
    #expect(throws: SliceIOError.self) { try FrameEncoder().encode(try Frame([column]), into: ByteWriter()) }
  }

  @Test func recordTypesNestedTooDeepOrWithMoreFieldsThanBytesAreCorrupt() throws {
    let int64: [UInt8] = [1, ScalarKind.int64.rawValue]
    let value: [UInt8] = [0] + [UInt8](repeating: 7, count: 8)
    // Nested 16 deep: accepted.
    var ok = int64
    for _ in 0..<16 { ok = recordType(fields: 1, inner: ok) }
    let decoded = try decode(try block(type: ok, columnBytes: value, rows: 1))
    guard case .frame(let frame) = decoded else {
      Issue.record("expected a frame")
      return
    }
    #expect(frame.columns[0].leaves.map(\.type) == [.scalar(.int64)])
    #expect(frame.columns[0].leaves[0].scalars(Int64.self)[0] == 0x0707_0707_0707_0707)

    func refused(_ type: [UInt8], _ bytes: [UInt8], mentioning word: String) throws {
      let error = #expect(throws: SliceIOError.self) {
        _ = try decode(try block(type: type, columnBytes: bytes, rows: 1))
      }
      guard case .integrity(_, _, .malformedPayload(let what))? = error else {
        Issue.record("expected a malformed payload, got \(String(describing: error))")
        return
      }
      #expect(what.contains(word), "\(what)")
    }
    try refused(recordType(fields: 1, inner: ok), value, mentioning: "nested")
    try refused(recordType(fields: 60000, inner: int64), value, mentioning: "60000 fields")
    // Two fields declared, one given: the second type tag is the column's bytes, or missing.
    try refused(recordType(fields: 2, inner: int64), [], mentioning: "")
  }
}
