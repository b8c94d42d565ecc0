import Frame
import Testing

struct Point: Codable, Hashable, Sendable {
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
    let points = try Column.make([Point(x: 1, label: "a"), Point(x: 2, label: "b")])
    guard case .boxed = points.type else {
      Issue.record("expected a boxed column, got \(points.type)")
      return
    }
    #expect(Array(points.boxed(Point.self)) == [Point(x: 1, label: "a"), Point(x: 2, label: "b")])
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
