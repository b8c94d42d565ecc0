import CSupport
import Frame
import Testing

@Suite struct HashTests {
  @Test func columnHashIsXXH3OfEachValue() throws {
    var rng = SplitMix64(seed: 1)
    let values = (0..<1000).map { _ in Int64(bitPattern: rng.next()) }
    let column = Column(values)
    var out = [UInt64](repeating: 0, count: values.count)
    try out.withUnsafeMutableBufferPointer { try column.hash(seed: 42, into: $0.baseAddress!) }
    #expect(out == values.map { bs_hash_u64(UInt64(bitPattern: $0), 42) })

    let small = Column(values.map { Int32(truncatingIfNeeded: $0) })
    var out32 = [UInt64](repeating: 0, count: values.count)
    try out32.withUnsafeMutableBufferPointer { try small.hash(seed: 9, into: $0.baseAddress!) }
    let expected32 = values.map { v -> UInt64 in
      var x = Int32(truncatingIfNeeded: v)
      return withUnsafeBytes(of: &x) { bs_hash_one($0.baseAddress, 4, 9) }
    }
    #expect(out32 == expected32)
  }

  @Test func stringHashIsXXH3OfTheUTF8AndIgnoresSlicing() throws {
    let strings = ["", "a", "hello world", String(repeating: "é", count: 300)]
    let column = Column(strings: strings)
    let hashes = try Frame([column]).hashKeys(seed: 3)
    let expected = strings.map { s in Array(s.utf8).withUnsafeBytes { bs_hash_one($0.baseAddress, $0.count, 3) } }
    #expect(hashes == expected)
    #expect(try Frame([column.slice(1..<3)]).hashKeys(seed: 3) == Array(expected[1..<3]))
  }

  @Test func multiColumnKeysCombineInOrder() throws {
    let a = Column([Int64(1), 2])
    let b = Column([Int64(2), 1])
    let ab = try Frame([a, b, Column(strings: ["v", "w"])], prefix: 2).hashKeys(seed: 0)
    let ba = try Frame([b, a, Column(strings: ["v", "w"])], prefix: 2).hashKeys(seed: 0)
    #expect(ab[0] != ab[1])
    // (1, 2) hashes the same wherever it appears; (2, 1) does not hash like (1, 2).
    #expect(ab[0] == ba[1])
    #expect(ab[0] != ba[0])
    // The value column does not take part in the key hash.
    let other = try Frame([a, b, Column(strings: ["q", "r"])], prefix: 2).hashKeys(seed: 0)
    #expect(ab == other)
  }

  @Test func boxedHashesAreStableAndFollowEquality() throws {
    let points = [Point(x: 1, label: "a"), Point(x: 1, label: "a"), Point(x: 2, label: "a")]
    let h = try Frame([Column(boxed: points)]).hashKeys(seed: 5)
    #expect(h[0] == h[1])
    #expect(h[0] != h[2])
    #expect(try Frame([Column(boxed: points)]).hashKeys(seed: 5) == h)
  }

  @Test(arguments: [1, 2, 7, 64, 1000])
  func partitionsAreInRangeMonotoneAndKeepEveryRow(parts: Int) throws {
    var rng = SplitMix64(seed: UInt64(parts))
    let keys = (0..<5000).map { _ in Int64.random(in: 0..<500, using: &rng) }
    let frame = try Frame([Column(keys), Column(keys.map { Double($0) })])
    let hashes = try frame.hashKeys(seed: 0)
    let ids = Frame.partitionIDs(hashes: hashes, partitions: parts)
    #expect(ids.allSatisfy { $0 < parts })
    let order = hashes.indices.sorted { hashes[$0] < hashes[$1] }
    #expect(zip(order, order.dropFirst()).allSatisfy { ids[$0.0] <= ids[$0.1] })
    let split = hashes.withUnsafeBufferPointer { frame.partition(hashes: $0.baseAddress!, into: parts) }
    #expect(split.count == parts)
    var expected = [[[AnyHashable]]](repeating: [], count: parts)
    for (i, row) in frame.anyRows.enumerated() { expected[Int(ids[i])].append(row) }
    #expect(split.map(\.anyRows) == expected)
  }
}
