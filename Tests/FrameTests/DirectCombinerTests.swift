import CSupport
import Frame
import Testing

/// The combiner's direct map (keys of a narrow integer range found with no hash per row)
/// against a dictionary, and against the hash path's invariants: the drained hashes are the
/// keys' column hashes, so runs of either path merge.
@Suite struct DirectCombinerTests {
  /// How a test's batches of keys are drawn.
  enum Shape: String, CaseIterable, CustomTestStringConvertible {
    case dense, aroundZero, driftUp, driftDown, nearMax, nearMin, sparse, denseAndSparse
    var testDescription: String { rawValue }

    /// Keys of batch `b` of `n` rows.
    func keys(batch b: Int, count n: Int, using rng: inout SplitMix64) -> [Int64] {
      (0..<n).map { _ in
        switch self {
        case .dense: return Int64.random(in: 0..<5000, using: &rng)
        case .aroundZero: return Int64.random(in: -3000...3000, using: &rng)
        case .driftUp: return Int64(b * 4000) + Int64.random(in: 0..<5000, using: &rng)
        case .driftDown: return -Int64(b * 4000) - Int64.random(in: 1...5000, using: &rng)
        case .nearMax: return Int64.max - Int64.random(in: 0...4000, using: &rng)
        case .nearMin: return Int64.min + Int64.random(in: 0...4000, using: &rng)
        case .sparse: return Int64.random(in: .min ... .max, using: &rng)
        case .denseAndSparse:
          // Odd batches mix keys of the dense range with keys from anywhere, so they take the
          // hash path with keys the direct map holds.
          return b % 2 == 0 || Bool.random(using: &rng)
            ? Int64.random(in: 0..<3000, using: &rng) : Int64.random(in: .min ... .max, using: &rng)
        }
      }
    }

    /// Whether the direct map must be in use after the batches.
    var isNarrow: Bool { self != .sparse }
  }

  @Test(arguments: Shape.allCases)
  func directMapGroupsAsTheHashTableDoes(shape: Shape) throws {
    var rng = SplitMix64(seed: 11)
    let seed: UInt64 = 0x5eed
    let combiner = try Combiner(keyType: .scalar(.int64), expectedGroups: 4)
    try combiner.addAggregate(.sum)
    try combiner.addAggregate(.count)
    var reference: [Int64: (sum: Int64, count: Int64)] = [:]
    for b in 0..<12 {
      let n = Int.random(in: 1...20_000, using: &rng)
      let keys = shape.keys(batch: b, count: n, using: &rng)
      let values = (0..<n).map { _ in Int64.random(in: -1000...1000, using: &rng) }
      let v = Column(values)
      try combiner.add(keys: Column(keys), values: [v, v], seed: seed)
      for (k, x) in zip(keys, values) {
        let r = reference[k] ?? (0, 0)
        reference[k] = (r.sum &+ x, r.count + 1)
      }
    }
    if shape.isNarrow {
      #expect(combiner.directMapEntries > 0, "the keys of \(shape) never took the direct map")
    } else {
      #expect(combiner.directMapEntries == 0, "keys spread over all of Int64 took a direct map")
    }
    #expect(combiner.groupCount == reference.count)
    let (frame, hashes) = try combiner.drain()
    #expect(frame.count == reference.count)
    #expect(hashes == (try frame.hashKeys(seed: seed)), "stored hashes differ from the keys' column hashes")
    #expect(zip(hashes, hashes.dropFirst()).allSatisfy { $0 <= $1 })
    var seen = Set<Int64>()
    for row in frame.anyRows {
      let key = row[0] as! Int64
      #expect(seen.insert(key).inserted, "key \(key) drained twice")
      let r = try #require(reference[key])
      #expect(row[1] as! Int64 == r.sum)
      #expect(row[2] as! Int64 == r.count)
    }
  }

  /// Narrow key types are widened before the map: each groups and hashes as its column does.
  @Test func narrowKeyTypesGroupAndHashAsTheirColumns() throws {
    var rng = SplitMix64(seed: 5)
    func check<T: ScalarValue & Hashable>(_ make: (inout SplitMix64) -> T) throws {
      let combiner = try Combiner(keyType: Column([make(&rng)]).type)
      try combiner.addAggregate(.count)
      var reference: [T: Int64] = [:]
      for _ in 0..<4 {
        let keys = (0..<3000).map { _ in make(&rng) }
        try combiner.add(keys: Column(keys), values: [Column(keys)], seed: 7)
        for k in keys { reference[k, default: 0] += 1 }
      }
      let (frame, hashes) = try combiner.drain()
      #expect(hashes == (try frame.hashKeys(seed: 7)), "\(T.self): stored hashes differ from the column's")
      var found: [T: Int64] = [:]
      for row in frame.anyRows { found[row[0] as! T] = row[1] as? Int64 }
      #expect(found == reference, "\(T.self)")
    }
    try check { Int8.random(in: .min ... .max, using: &$0) }
    try check { UInt8.random(in: 0...200, using: &$0) }
    try check { Int16.random(in: -300...300, using: &$0) }
    try check { UInt16.random(in: 60_000...65_535, using: &$0) }
    try check { Int32.random(in: -50...50, using: &$0) }
    try check { UInt32.random(in: 0...5000, using: &$0) }
    try check { Bool.random(using: &$0) }
    try check { Double(Int.random(in: 0..<40, using: &$0)) / 4 }
  }

  /// A drain empties the map with the table: keys of the next round start new groups.
  @Test func resetEmptiesTheDirectMap() throws {
    let combiner = try Combiner(keyType: .scalar(.int64))
    try combiner.addAggregate(.sum)
    let keys = Column((0..<1000).map { Int64($0 % 100) })
    try combiner.add(keys: keys, values: [Column([Int64](repeating: 1, count: 1000))], seed: 0)
    #expect(combiner.directMapEntries > 0)
    let first = try combiner.drainUnordered()
    #expect(first.count == 100)
    #expect(first.columns[1].scalars(Int64.self).allSatisfy { $0 == 10 })
    try combiner.add(keys: keys, values: [Column([Int64](repeating: 2, count: 1000))], seed: 0)
    let second = try combiner.drainUnordered()
    #expect(second.count == 100)
    #expect(second.columns[1].scalars(Int64.self).allSatisfy { $0 == 20 })
  }

  /// A new sum combiner fed batches of `keys(batch, n)`, each of the `n` new keys `room`
  /// allows under `limit` (at most `most`), until it has no room; with the largest
  /// `byteCount` seen after a batch, and the number of batches.
  func fillWithinRoom(_ limit: Int, most: Int, _ keys: (Int, Int) -> [Int64]) throws -> (
    combiner: Combiner, peak: Int, batches: Int
  ) {
    let combiner = try Combiner(keyType: .scalar(.int64))
    try combiner.addAggregate(.sum)
    var peak = 0
    var batches = 0
    while case let room = combiner.room(within: limit), room > 0 {
      let batch = keys(batches, min(room, most))
      try combiner.add(keys: Column(batch), values: [Column(batch)], seed: 0)
      peak = max(peak, combiner.byteCount)
      batches += 1
    }
    return (combiner, peak, batches)
  }

  /// A combiner whose keys drift upward under a limit, so that its map is rebuilt larger
  /// batch after batch, stays within the limit it is given room for.
  @Test func aGrowingDirectMapStaysWithinTheLimit() throws {
    let limit = 6 << 20
    var next: Int64 = 0
    let (combiner, peak, batches) = try fillWithinRoom(limit, most: 5000) { _, n in
      // Every other key, so the map spans twice the groups.
      defer { next += 2 * Int64(n) }
      return (0..<n).map { next + 2 * Int64($0) }
    }
    #expect(batches > 10)
    #expect(combiner.directMapEntries > 0)
    #expect(peak <= limit, "peak \(peak) bytes over a limit of \(limit)")
  }

  /// Batches that alternate between keys scattered over Int64 (the table grows) and a
  /// widening dense range (the map grows), each as large as `room` allows: the map's memory
  /// is counted, so the combiner never passes the limit.
  @Test func tableAndDirectMapTogetherStayWithinTheLimit() throws {
    var rng = SplitMix64(seed: 9)
    for limit in [3 << 20, 7 << 20, 12 << 20] {
      var next: Int64 = 0
      let (combiner, peak, _) = try fillWithinRoom(limit, most: 20_000) { batch, n in
        if batch % 2 == 0 { return (0..<n).map { _ in Int64.random(in: .min ... .max, using: &rng) } }
        defer { next += Int64(n) }
        return (0..<n).map { next + Int64($0) }
      }
      #expect(combiner.directMapEntries > 0, "limit \(limit): no direct map was made")
      #expect(peak <= limit, "peak \(peak) bytes over a limit of \(limit)")
    }
  }

  @Test func theCFunctionsRefuseWhatTheyCannotMap() throws {
    let bytes = try #require(bs_comb_new(BS_COMB_KEY_BYTES, 16))
    defer { bs_comb_free(bytes) }
    let keys: [UInt64] = [1, 2, 3]
    var gids = [UInt32](repeating: 0, count: 3)
    #expect(bs_comb_direct_prepare(bytes, keys, 3) == 0)
    #expect(bs_comb_groups_direct(bytes, keys, 3, 8, 0, &gids) == Int64(BS_EINVAL.rawValue))
    let u64 = try #require(bs_comb_new(BS_COMB_KEY_U64, 16))
    defer { bs_comb_free(u64) }
    #expect(bs_comb_groups_direct(u64, keys, 3, 3, 0, &gids) == Int64(BS_EINVAL.rawValue))
    #expect(bs_comb_direct_prepare(u64, keys, 0) == 0)
    #expect(bs_comb_direct_prepare(u64, keys, 3) == 1)
    #expect(bs_comb_groups_direct(u64, keys, 3, 8, 0, &gids) == 3)
    #expect(gids == [0, 1, 2])
  }
}
