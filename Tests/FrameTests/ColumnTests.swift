import Frame
import Testing

struct Point: Codable, Hashable, Sendable {
  var x: Int
  var label: String
}

/// A `Point` stored boxed, by registration.
struct BoxedPoint: Codable, Hashable, Sendable {
  var x: Int
  var label: String
}

@Suite struct ColumnTests {
  @Test func scalarColumnsHoldTheirValuesAndSliceWithoutCopying() {
    let column = Column([Int64(5), -3, 7, 0])
    #expect(column.type == .scalar(.int64))
    #expect(Array(column.scalars(Int64.self)) == [5, -3, 7, 0])
    let slice = column.slice(1..<3)
    #expect(Array(slice.scalars(Int64.self)) == [-3, 7])
    #expect(slice.scalars(Int64.self).base == column.scalars(Int64.self).base + 1)
  }

  @Test func stringAndBytesColumnsRoundTripTheirValues() {
    let strings = ["", "a", "héllo", String(repeating: "x", count: 1000)]
    let column = Column(strings: strings)
    #expect((0..<column.count).map { column.variableWidth.string(at: $0) } == strings)
    #expect(column.slice(2..<4).variableWidth.string(at: 0) == "héllo")
    let bytes: [[UInt8]] = [[], [0, 255], [1, 2, 3]]
    let b = Column(byteArrays: bytes)
    #expect(b.type == .bytes)
    #expect((0..<b.count).map { b.variableWidth.bytes(at: $0) } == bytes)
  }

  @Test func makeChoosesTheLayoutByType() throws {
    #expect(try Column.make([1, 2, 3]).type == .scalar(.int64))
    #expect(try Column.make([Float(1)]).type == .scalar(.float))
    #expect(try Column.make(["a"]).type == .string)
    #expect(try Column.make([[UInt8(1)]]).type == .bytes)
    // A Codable struct of columns is a record; registered with BoxedOps, it is boxed.
    let values = [Point(x: 1, label: "a"), Point(x: 2, label: "b")]
    let points = try Column.make(values)
    #expect(
      points.type == .record(RecordType(name: String(reflecting: Point.self), fields: [.scalar(.int64), .string])))
    #expect(try points.values(as: Point.self) == values)
    BoxedOps.register(BoxedPoint.self)
    let boxed = try Column.make(values.map { BoxedPoint(x: $0.x, label: $0.label) })
    guard case .boxed = boxed.type else {
      Issue.record("expected a boxed column, got \(boxed.type)")
      return
    }
    #expect(Array(boxed.boxed(BoxedPoint.self)).map(\.x) == [1, 2])
  }

  @Test func concatAndGatherKeepEveryRowOfEveryKind() throws {
    var rng = SplitMix64(seed: 7)
    let ints = (0..<300).map { _ in Int32.random(in: -1000...1000, using: &rng) }
    let strings = (0..<300).map { _ in String(repeating: "z", count: Int.random(in: 0...20, using: &rng)) }
    let points = (0..<300).map { i in Point(x: i, label: "\(i)") }
    let frame = try Frame([Column(ints), Column(strings: strings), Column(boxed: points)])
    let parts = [frame.slice(0..<100), frame.slice(100..<101), frame.slice(101..<101), frame.slice(101..<300)]
    let joined = try Frame.concat(parts)
    #expect(joined.anyRows == frame.anyRows)

    let perm = (0..<300).map { _ in UInt32.random(in: 0..<300, using: &rng) }
    let gathered = frame.gather(perm)
    #expect(gathered.anyRows == perm.map { frame.anyRows[Int($0)] })
    // Gathering from a slice indexes the slice, not its storage.
    let sliced = frame.slice(50..<150)
    let small = perm.map { $0 % 100 }
    #expect(sliced.gather(small).anyRows == small.map { frame.anyRows[50 + Int($0)] })
  }

  /// A column of packed lists (a cogroup's output bound for a file) codes exactly as the same
  /// lists held as arrays, slices included, and reads, hashes, gathers and concatenates as
  /// they do.
  @Test func packedListsActLikeTheSameListsAsArrays() throws {
    var rng = SplitMix64(seed: 21)
    let lists = (0..<300).map { _ in
      (0..<Int.random(in: 0...5, using: &rng)).map { _ in Int.random(in: -99...99, using: &rng) }
    }
    var starts: [UInt64] = [0]
    for list in lists { starts.append(starts.last! + UInt64(list.count)) }
    let flat = lists.flatMap { $0 }
    let packed = flat.withUnsafeBytes { Column.packedLists(Int.self, base: $0.baseAddress!, starts: starts) }
    let arrays = Column(boxed: lists)
    #expect(packed.type == arrays.type)
    #expect(packed.count == lists.count)
    for (p, a) in [
      (packed, arrays), (packed.slice(17..<250), arrays.slice(17..<250)), (packed.slice(5..<5), arrays.slice(5..<5)),
    ] {
      let (pOut, aOut) = (ByteWriter(), ByteWriter())
      try p.encode(into: pOut, transform: .byteShuffle)
      try a.encode(into: aOut, transform: .byteShuffle)
      #expect(Array(pOut.bytes) == Array(aOut.bytes), "\(p.count) rows")
      #expect(Array(p.boxed([Int].self)) == Array(a.boxed([Int].self)))
      #expect((0..<p.count).map { p.anyValue(at: $0) } == (0..<a.count).map { a.anyValue(at: $0) })
    }
    #expect(packed.byteCount == flat.count * 8 + 8 * lists.count)
    let perm: [UInt32] = [299, 0, 150, 150, 7]
    #expect(Array(packed.gather(perm).boxed([Int].self)) == perm.map { lists[Int($0)] })
    let joined = try Column.concat([packed.slice(0..<10), arrays.slice(10..<20), packed.slice(20..<30)])
    #expect(Array(joined.boxed([Int].self)) == Array(lists[0..<30]))
    var hp = [UInt64](repeating: 0, count: lists.count)
    var ha = hp
    try packed.hash(seed: 3, into: &hp)
    try arrays.hash(seed: 3, into: &ha)
    #expect(hp == ha)
  }

  /// Lists of scalars are coded packed, not as JSON: they round-trip, slices included, and
  /// every damaged count or length is an error, never a crash.
  @Test func listsOfScalarsRoundTripPackedAndRejectDamage() throws {
    var rng = SplitMix64(seed: 9)
    let ints = (0..<500).map { _ in
      (0..<Int.random(in: 0...6, using: &rng)).map { _ in Int.random(in: -9...9, using: &rng) }
    }
    let doubles = ints.map { $0.map { Double($0) / 4 } }
    let column = Column(boxed: ints).slice(3..<420)
    for c in [column, Column(boxed: doubles), Column(boxed: [[Int]]())] {
      let out = ByteWriter()
      try c.encode(into: out, transform: .none)
      var reader = ByteReader(out.bytes)
      let back = try Column.decode(c.type, count: c.count, from: &reader)
      #expect((0..<c.count).map { back.anyValue(at: $0) } == (0..<c.count).map { c.anyValue(at: $0) })
      #expect(reader.remaining == 0)
    }
    let out = ByteWriter()
    try Column(boxed: ints).encode(into: out, transform: .none)
    let good = Array(out.bytes)
    #expect(good[8] == 1, "packed and byte-shuffled, not JSON")
    // Damage each header byte in turn (length prefix, marker, row count, the first lengths),
    // then the last: every one decodes to an error or to a column with the right row count.
    for at in Array(0..<48) + [good.count - 1] {
      var bad = good
      bad[at] ^= 0xff
      let decoded = bad.withUnsafeBytes { raw -> Column? in
        var reader = ByteReader(raw)
        return try? Column.decode(Column(boxed: ints).type, count: ints.count, from: &reader)
      }
      if let decoded { #expect(decoded.count == ints.count) }
    }
  }

  /// Lists coded plain (marker 0, as spill and cache files were written before the lists were
  /// byte-shuffled) still decode; lists of every element width round-trip; a Bool list
  /// holding a byte other than 0 or 1 is refused.
  @Test func packedListsOfEveryWidthAndThePlainCodingDecode() throws {
    let lists: [[Int]] = [[1, -2, 3], [], [4_000_000_000], [5, 6]]
    let plain = ByteWriter()
    plain.append(UInt8(0))
    plain.append(UInt64(lists.count))
    for list in lists { plain.append(UInt64(list.count)) }
    for list in lists { list.withUnsafeBytes { plain.append($0) } }
    let coded = ByteWriter()
    coded.append(UInt64(plain.bytes.count))
    coded.append(plain.bytes)
    var reader = ByteReader(coded.bytes)
    let back = try Column.decode(Column(boxed: lists).type, count: lists.count, from: &reader)
    #expect(back.boxed([Int].self) == lists[...])

    func roundTrip<T: ScalarValue & Codable & Hashable & Sendable>(_ values: [[T]]) throws -> [[T]] {
      let out = ByteWriter()
      try Column(boxed: values).encode(into: out, transform: .none)
      var reader = ByteReader(out.bytes)
      return Array(try Column.decode(Column(boxed: values).type, count: values.count, from: &reader).boxed([T].self))
    }
    #expect(try roundTrip([[true, false], [], [true]]) == [[true, false], [], [true]])
    #expect(try roundTrip([[Int32(-7), 1 << 30], [3]]) == [[-7, 1 << 30], [3]])
    #expect(try roundTrip([[1.5, -0.25], [], [Double.infinity]]) == [[1.5, -0.25], [], [Double.infinity]])

    let bools = ByteWriter()
    try Column(boxed: [[true, false]]).encode(into: bools, transform: .none)
    var bad = Array(bools.bytes)
    bad[bad.count - 1] = 7
    #expect(throws: FrameError.self) {
      try bad.withUnsafeBytes { raw in
        var reader = ByteReader(raw)
        _ = try Column.decode(Column(boxed: [[true]]).type, count: 1, from: &reader)
      }
    }
  }

  @Test func interleavePicksRowsAcrossFrames() throws {
    let a = try Frame([Column([Int64(1), 2, 3]), Column(strings: ["a", "b", "c"])])
    let b = try Frame([Column([Int64(10), 20]), Column(strings: ["x", "yy"])])
    let out = try Frame.interleave([a, b.slice(1..<2), b], chunkIndices: [0, 2, 1, 0], rows: [2, 0, 0, 0])
    #expect(out.anyRows == [[3, "c"], [10, "x"], [20, "yy"], [1, "a"]])
  }

  @Test func framesRejectColumnsOfDifferentLengths() {
    #expect(throws: FrameError.lengthMismatch(column: 1, expected: 2, found: 1)) {
      try Frame([Column([Int64(1), 2]), Column([Int64(1)])])
    }
  }

  @Test func emptyFramesHaveTheirSchema() throws {
    let schema = Schema([.scalar(.double), .string, .bytes], prefix: 2)
    let frame = try Frame.empty(schema)
    #expect(frame.count == 0)
    #expect(frame.schema == schema)
  }
}
