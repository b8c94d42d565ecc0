import Frame
import Testing

/// A record of a narrow Int and a String.
struct Tagged: ColumnRecord {
  var id: Int32
  var tag: String
  static let columns = RecordColumns(Tagged.init(id:tag:), \.id, \.tag)
}

/// A record holding a record, a Double, a Bool and a boxed field.
struct Outer: ColumnRecord {
  var inner: Tagged
  var weight: Double
  var flag: Bool
  var extra: [Int]
  static let columns = RecordColumns(Outer.init(inner:weight:flag:extra:), \.inner, \.weight, \.flag, \.extra)
}

/// A record of one field: one leaf, which is still not the record.
struct Single: ColumnRecord {
  var id: Int
  static let columns = RecordColumns(Single.init(id:), \.id)
}

/// A record of no fields.
struct Nothing: ColumnRecord {
  static let columns = RecordColumns(Nothing.init)
}

struct NoFields: Codable, Hashable, Sendable {}

/// A record with a computed field, read through its key path.
struct Interval: ColumnRecord {
  var low: Int
  var width: Int
  var high: Int { low + width }
  static let columns = RecordColumns({ Interval(low: $0, width: $1 - $0) }, \.low, \.high)
}

@Suite struct RecordColumnTests {
  static let words = ["", "a", "b", "a\u{0}b", "longer than eight bytes", "é"]

  static func tagged(_ n: Int, seed: UInt64) -> [Tagged] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in
      Tagged(id: Int32.random(in: -5...5, using: &rng), tag: words.randomElement(using: &rng)!)
    }
  }

  static func outers(_ n: Int, seed: UInt64) -> [Outer] {
    var rng = SplitMix64(seed: seed)
    return tagged(n, seed: seed &+ 1).map { t in
      Outer(
        inner: t, weight: Double(Int.random(in: -8...8, using: &rng)) / 4, flag: Bool.random(using: &rng),
        extra: Array(0..<Int.random(in: 0...2, using: &rng)))
    }
  }

  @Test func recordsRoundTripThroughTheirFieldColumnsWholeAndSliced() throws {
    let values = Self.outers(500, seed: 1)
    let column = try Column.make(values)
    #expect(column.type == Outer.columnType)
    guard case .record(let record) = column.type else {
      Issue.record("expected a record column, got \(column.type)")
      return
    }
    #expect(record.fields.count == 4)
    #expect(column.type.leafTypes == [.scalar(.int32), .string, .scalar(.double), .scalar(.bool), record.fields[3]])
    #expect(Array(try column.records(Outer.self)) == values)
    #expect(Array(try column.slice(120..<333).records(Outer.self)) == Array(values[120..<333]))
    #expect(Array(try column.slice(7..<7).records(Outer.self)).isEmpty)
    // A record of one field, and one whose field is computed.
    let singles = (0..<100).map { Single(id: $0 * 3) }
    #expect(Array(try Column.make(singles).records(Single.self)) == singles)
    let intervals = (0..<100).map { Interval(low: $0, width: $0 % 7) }
    let intervalColumn = try Column.make(intervals)
    #expect(Array(try intervalColumn.records(Interval.self)) == intervals)
    #expect(Array(intervalColumn.leaves[1].scalars(Int.self)) == intervals.map(\.high))
    // Read as another type: an error, not a crash.
    #expect(throws: FrameError.self) { try column.records(Tagged.self) }
    #expect(throws: FrameError.self) { try Column([1, 2]).records(Single.self) }
  }

  @Test func aRecordHashesAsItsLeavesAndComparesFieldByField() throws {
    let values = Self.tagged(2000, seed: 2)
    let column = try Column.make(values)
    let record = try Frame([column]).hashKeys(seed: 9)
    let leaves = try Frame(column.leaves, prefix: 2).hashKeys(seed: 9)
    #expect(record == leaves)
    var direct = [UInt64](repeating: 0, count: column.count)
    try direct.withUnsafeMutableBufferPointer { try column.hash(seed: 9, into: $0.baseAddress!) }
    #expect(direct == leaves)
    // After another key column too: a record hashes as its leaves wherever it stands.
    let tags = Column(strings: values.map(\.tag))
    let behind = try Frame([tags, column], prefix: 2).hashKeys(seed: 9)
    #expect(behind == (try Frame([tags] + column.leaves, prefix: 3).hashKeys(seed: 9)))
    // Equal records hash equal; distinct ones (here) do not collide.
    var byValue: [Tagged: UInt64] = [:]
    for (v, h) in zip(values, record) { #expect(byValue.updateValue(h, forKey: v) ?? h == h) }
    #expect(Set(byValue.values).count == byValue.count)
    for i in 0..<200 {
      let j = (i * 37) % values.count
      let expected = order(values[i], values[j])
      #expect(column.compare(i, column, j) == expected, "\(values[i]) vs \(values[j])")
      #expect(column.equal(i, column, j) == (values[i] == values[j]))
    }
  }

  /// Field by field: ids numerically, tags by their UTF-8 bytes.
  private func order(_ a: Tagged, _ b: Tagged) -> Int {
    if a.id != b.id { return a.id < b.id ? -1 : 1 }
    if a.tag == b.tag { return 0 }
    return Array(a.tag.utf8).lexicographicallyPrecedes(Array(b.tag.utf8)) ? -1 : 1
  }

  @Test(arguments: [SortOrder.keys, .hash(seed: 3)])
  func framesKeyedOnARecordSortLikeTheirFields(order sortOrder: SortOrder) throws {
    let values = Self.outers(3000, seed: 4)
    let payload = Column((0..<values.count).map { Int64($0) })
    let frame = try Frame([try Column.make(values), payload], prefix: 1)
    let sorted = try frame.sorted(sortOrder)
    let keys = Array(try sorted.columns[0].records(Outer.self))
    #expect(keys.sorted { "\($0)" < "\($1)" } == values.sorted { "\($0)" < "\($1)" })
    for i in 1..<keys.count {
      let c = sorted.compareKeys(i - 1, sorted, i)
      if sortOrder == .keys {
        #expect(c <= 0, "\(keys[i - 1]) before \(keys[i])")
      }
      // Stable: equal keys keep their input order.
      if c == 0 {
        #expect(sorted.columns[1].scalars(Int64.self)[i - 1] < sorted.columns[1].scalars(Int64.self)[i])
      }
    }
  }

  /// A record column made before its type was registered boxed still reads as that type
  /// after: a registration while a job runs must not make its columns unreadable (it trapped).
  @Test func aRecordColumnReadsAfterItsTypeIsRegisteredBoxed() throws {
    struct Late: Codable, Hashable, Sendable {
      var id: Int
      var tag: String
    }
    let values = (0..<50).map { Late(id: $0, tag: "t\($0 % 3)") }
    let column = try Column.make(values)
    guard case .record = column.type else {
      Issue.record("expected a record column, got \(column.type)")
      return
    }
    BoxedOps.register(Late.self)
    #expect(try column.recordValues(Late.self) == values)
    #expect(try column.slice(10..<20).recordValues(Late.self) == Array(values[10..<20]))
  }

  @Test func gatherConcatInterleaveAndRawFramesKeepEveryRecord() throws {
    let values = Self.outers(400, seed: 5)
    let frame = try Frame([try Column.make(values), Column(strings: values.map(\.inner.tag))])
    let parts = [frame.slice(0..<100), frame.slice(100..<100), frame.slice(100..<400)]
    #expect(try Frame.concat(parts).anyRows == frame.anyRows)
    var rng = SplitMix64(seed: 6)
    let perm = (0..<600).map { _ in UInt32.random(in: 0..<400, using: &rng) }
    let gathered = frame.gather(perm)
    #expect(Array(try gathered.columns[0].records(Outer.self)) == perm.map { values[Int($0)] })
    let chunks = [frame.slice(0..<150), frame.slice(150..<400)]
    let picks = perm.map { $0 < 150 ? (UInt32(0), $0) : (UInt32(1), $0 - 150) }
    let interleaved = try Frame.interleave(chunks, chunkIndices: picks.map(\.0), rows: picks.map(\.1))
    #expect(interleaved.anyRows == gathered.anyRows)

    // Records without a boxed field copy through raw frames as their leaves.
    let plain = try Frame([try Column.make(Self.tagged(300, seed: 7)), Column((0..<300).map { Int64($0) })])
    let raw = try #require(RawFrame(plain))
    defer { raw.deallocate() }
    let copied = try RawFrame.concat([(raw, 10..<50), (raw, 0..<0), (raw, 200..<300)], schema: plain.schema)
    #expect(copied.anyRows == Array(plain.anyRows[10..<50] + plain.anyRows[200..<300]))
    #expect(copied.schema == plain.schema)
  }

  @Test(arguments: [false, true])
  func aCombinerGroupsOnRecordKeysAsTheirFieldTuples(single: Bool) throws {
    let values = Self.tagged(5000, seed: 8)
    let amounts = (0..<values.count).map { Int64($0 % 13) - 6 }
    let keys = single ? try Column.make(values.map { Single(id: Int($0.id)) }) : try Column.make(values)
    let combiner = try Combiner(keyTypes: [keys.type])
    try combiner.addAggregate(.sum)
    for start in stride(from: 0, to: values.count, by: 700) {
      let range = start..<min(start + 700, values.count)
      try combiner.add(keys: [keys.slice(range)], values: [Column(Array(amounts[range]))], seed: 11)
    }
    let (drained, hashes) = try combiner.drain()
    #expect(drained.columns[0].type == keys.type)
    #expect(hashes == (try drained.hashKeys(seed: 11)))
    var model: [AnyHashable: Int64] = [:]
    for (i, v) in values.enumerated() {
      model[single ? AnyHashable(Int(v.id)) : AnyHashable(v), default: 0] += amounts[i]
    }
    var got: [AnyHashable: Int64] = [:]
    let sums = drained.columns[1].scalars(Int64.self)
    if single {
      for (i, s) in try drained.columns[0].records(Single.self).enumerated() { got[AnyHashable(s.id)] = sums[i] }
    } else {
      for (i, t) in try drained.columns[0].records(Tagged.self).enumerated() { got[AnyHashable(t)] = sums[i] }
    }
    #expect(got == model)
  }

  @Test func aRecordOfNoFieldsHashesAsOneKeyAndIsNoCombinerKey() throws {
    let column = try Column.make([Nothing(), Nothing(), Nothing()])
    #expect(column.count == 3 && column.leaves.isEmpty)
    #expect(Array(try column.records(Nothing.self)).count == 3)
    #expect(Set(try Frame([column]).hashKeys(seed: 1)).count == 1)
    #expect(throws: FrameError.self) { try Combiner(keyTypes: [Nothing.columnType]) }
    #expect(Nothing.columnType.isBoxed)
    // Beside another key column, it keeps its rows through the combiner and raw frames.
    let ints = Column([Int64(1), 2, 1])
    let combiner = try Combiner(keyTypes: [.scalar(.int64), Nothing.columnType])
    try combiner.addAggregate(.count)
    try combiner.add(keys: [ints, column], values: [ints], seed: 1)
    let drained = try combiner.drainUnordered()
    #expect(drained.count == 2 && drained.columns[1].count == 2)
    let frame = try Frame([ints, column], prefix: 2)
    let raw = try #require(RawFrame(frame))
    defer { raw.deallocate() }
    let copied = try RawFrame.concat([(raw, 0..<3), (raw, 1..<2)], schema: frame.schema)
    #expect(copied.count == 4 && copied.columns[1].count == 4)
    // A Codable struct of no fields stays boxed, where it still groups.
    guard case .boxed = try Column.columnType(for: NoFields.self) else {
      Issue.record("expected a boxed column for a Codable struct of no fields")
      return
    }
  }

  @Test func aRecordWithABoxedFieldIsNoCombinerKey() throws {
    #expect(Outer.columnType.isBoxed)
    #expect(!Tagged.columnType.isBoxed)
    #expect(throws: FrameError.self) { try Combiner(keyTypes: [Outer.columnType]) }
  }
}

/// Plain `Codable` structs: records found by probing their decoding.
struct Place: Codable, Hashable, Sendable {
  var lat: Double
  var lon: Double
}

/// A single-value wrapper.
struct UserID: Codable, Hashable, Sendable {
  var raw: Int64
  init(_ raw: Int64) { self.raw = raw }
  init(from decoder: any Decoder) throws { raw = try decoder.singleValueContainer().decode(Int64.self) }
  func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    try c.encode(raw)
  }
}

struct Visit: Codable, Hashable, Sendable {
  var user: UserID
  var day: Int32
  var place: Place
  var note: String
  var tag: Tagged
  var raw: [UInt8]
}

/// An Int-backed enum: a single value, a record of one int64 field.
enum Priority: Int, Codable, Hashable, Sendable { case low, high }

/// Ordered by its registered compare: kept boxed inside a record that holds it.
struct Tag: Codable, Hashable, Sendable {
  var text: String
}

struct Release: Codable, Hashable, Sendable {
  var version: Tag
  var build: Int
}

/// Types a column cannot hold field by field: they stay boxed.
struct WithOptional: Codable, Hashable, Sendable {
  var id: Int
  var label: String?
}
struct WithArray: Codable, Hashable, Sendable {
  var id: Int
  var values: [Int]
}
enum Colour: String, Codable, Hashable, Sendable { case red, green }
struct WithEnum: Codable, Hashable, Sendable {
  var id: Int
  var colour: Colour
}

/// Decodes one field but encodes another: its values cannot be stored as its layout says.
struct Inconsistent: Codable, Hashable, Sendable {
  var a: Int
  enum CodingKeys: String, CodingKey { case a, b }
  init(a: Int) { self.a = a }
  init(from decoder: any Decoder) throws {
    a = try decoder.container(keyedBy: CodingKeys.self).decode(Int.self, forKey: .a)
  }
  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(a, forKey: a < 0 ? .b : .a)
  }
}

/// Leaves out a field for some values: the other fields' columns would shift.
struct Skipping: Codable, Hashable, Sendable {
  var a: Int
  var b: Int
  enum CodingKeys: String, CodingKey { case a, b }
  func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    if a >= 0 { try c.encode(a, forKey: .a) }
    try c.encode(b, forKey: .b)
  }
}

@Suite struct CodableRecordTests {
  static func visits(_ n: Int, seed: UInt64) -> [Visit] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { i in
      Visit(
        user: UserID(Int64.random(in: -3...3, using: &rng)), day: Int32(i % 5),
        place: Place(lat: Double(i % 3) / 2, lon: -Double(i % 2)), note: ["", "x", "long note"][i % 3],
        tag: Tagged(id: Int32(i % 4), tag: "t\(i % 2)"), raw: Array(repeating: UInt8(i % 256), count: i % 3))
    }
  }

  @Test func aCodableStructIsARecordOfTheFieldsItsDecodingAsksFor() throws {
    let type = try Column.columnType(for: Visit.self)
    let place = ColumnType.record(
      RecordType(name: String(reflecting: Place.self), fields: [.scalar(.double), .scalar(.double)]))
    #expect(
      type
        == .record(
          RecordType(
            name: String(reflecting: Visit.self),
            fields: [.scalar(.int64), .scalar(.int32), place, .string, Tagged.columnType, .bytes])))
    #expect(
      try Column.columnType(for: UserID.self)
        == .record(RecordType(name: String(reflecting: UserID.self), fields: [.scalar(.int64)])))
    for boxed in [
      try Column.columnType(for: WithOptional.self), try Column.columnType(for: WithArray.self),
      try Column.columnType(for: WithEnum.self), try Column.columnType(for: [Place].self),
    ] {
      guard case .boxed = boxed else {
        Issue.record("expected boxed, got \(boxed)")
        continue
      }
    }
  }

  @Test func codableRecordsRoundTripAndKeyLikeTheirFields() throws {
    let values = Self.visits(700, seed: 12)
    let column = try Column.make(values)
    #expect(try column.values(as: Visit.self) == values)
    #expect(try column.slice(100..<250).values(as: Visit.self) == Array(values[100..<250]))
    #expect(try Column.make([Visit]()).count == 0)
    // Keys group as the values do.
    let frame = try Frame([column, Column((0..<values.count).map { Int64($0) })])
    let sorted = try frame.sorted(.hash(seed: 5))
    let keys = try sorted.columns[0].values(as: Visit.self)
    var runs = 0
    for i in keys.indices where i == 0 || keys[i] != keys[i - 1] { runs += 1 }
    #expect(runs == Set(values).count)
  }

  @Test func typesCodedAsOneValueAreRecordsOfOneFieldAtTheTopLevelToo() throws {
    let ids = [UserID(3), UserID(-1), UserID(3)]
    let column = try Column.make(ids)
    #expect(column.leaves.map(\.type) == [.scalar(.int64)])
    #expect(try column.values(as: UserID.self) == ids)
    let priorities: [Priority] = [.high, .low, .high]
    #expect(try Column.make(priorities).values(as: Priority.self) == priorities)
    // Grouped in the C table as their one leaf.
    let combiner = try Combiner(keyTypes: [column.type])
    try combiner.addAggregate(.count)
    try combiner.add(keys: [column], values: [column], seed: 1)
    #expect(combiner.groupCount == 2)
  }

  @Test func aNestedTypeRegisteredBoxedStaysBoxedInsideARecord() throws {
    BoxedOps.register(
      Tag.self, compare: { a, b in a.text.count == b.text.count ? 0 : (a.text.count < b.text.count ? -1 : 1) })
    let releases = [Release(version: Tag(text: "1.10"), build: 1), Release(version: Tag(text: "2"), build: 2)]
    let column = try Column.make(releases)
    guard case .record(let record) = column.type, case .boxed = record.fields[0] else {
      Issue.record("expected a record with a boxed first field, got \(column.type)")
      return
    }
    #expect(try column.values(as: Release.self) == releases)
    // The registered order: the shorter text first.
    #expect(column.compare(0, column, 1) == 1)
  }

  @Test func aValueThatEncodesUnlikeItsLayoutIsAnErrorNamingTheWayOut() throws {
    #expect(
      try Column.make([Inconsistent(a: 1), Inconsistent(a: 2)]).values(as: Inconsistent.self).map(\.a) == [1, 2])
    let error = #expect(throws: FrameError.self) { try Column.make([Inconsistent(a: 1), Inconsistent(a: -1)]) }
    #expect("\(error.map { "\($0)" } ?? "")".contains("ColumnRecord"))
    #expect(try Column.make([Skipping(a: 1, b: 2)]).values(as: Skipping.self) == [Skipping(a: 1, b: 2)])
    let skipped = #expect(throws: FrameError.self) { try Column.make([Skipping(a: 1, b: 2), Skipping(a: -1, b: 3)]) }
    #expect("\(skipped.map { "\($0)" } ?? "")".contains("no value"))
  }
}
