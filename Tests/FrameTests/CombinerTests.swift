import CSupport
import Frame
import Testing

@Suite struct CombinerTests {
  @Test(arguments: [1, 100, 20_000])
  func builtInAggregatesEqualADictionary(distinct: Int) throws {
    var rng = SplitMix64(seed: UInt64(distinct))
    let combiner = try Combiner(keyType: .scalar(.int64), expectedGroups: 4)
    try combiner.addAggregate(.sum)
    try combiner.addAggregate(.min)
    try combiner.addAggregate(.max)
    try combiner.addAggregate(.count)
    var reference: [Int64: (sum: Int64, min: Int64, max: Int64, count: Int64)] = [:]
    for _ in 0..<5 {
      let n = Int.random(in: 0...30_000, using: &rng)
      let keys = (0..<n).map { _ in Int64.random(in: 0..<Int64(distinct), using: &rng) * 7919 - 5000 }
      let values = (0..<n).map { _ in Int64.random(in: Int64.min...Int64.max, using: &rng) }
      let v = Column(values)
      try combiner.add(keys: Column(keys), values: [v, v, v, v], seed: 0)
      for (k, x) in zip(keys, values) {
        let r = reference[k] ?? (0, .max, .min, 0)
        reference[k] = (r.sum &+ x, min(r.min, x), max(r.max, x), r.count + 1)
      }
    }
    #expect(combiner.groupCount == reference.count)
    #expect(combiner.byteCount > 0)
    let (frame, hashes) = try combiner.drain()
    #expect(combiner.groupCount == 0)
    #expect(frame.count == reference.count)
    #expect(hashes == (try frame.hashKeys(seed: 0)))
    #expect(zip(hashes, hashes.dropFirst()).allSatisfy { $0 <= $1 })
    for row in frame.anyRows {
      let r = try #require(reference[row[0] as! Int64])
      #expect(row[1] as! Int64 == r.sum)
      #expect(row[2] as! Int64 == r.min)
      #expect(row[3] as! Int64 == r.max)
      #expect(row[4] as! Int64 == r.count)
    }
  }

  /// Fed no more new keys than `room` allows, the combiner stays within the limit, fills a
  /// fair part of it, and is then really full: one more key makes it grow. After `reset` it
  /// keeps its capacity and starts its aggregates afresh.
  @Test(arguments: [ColumnType.scalar(.int64), .string])
  func roomKeepsTheCombinerWithinALimit(keyType: ColumnType) throws {
    let limit = 40 << 20
    let combiner = try Combiner(keyType: keyType)
    try combiner.addAggregate(.sum)
    func column(_ range: Range<Int>) -> Column {
      keyType == .string ? Column(strings: range.map { "key-\($0)" }) : Column(range.map { Int64($0) })
    }
    var next = 0
    var peak = 0
    while case let room = combiner.room(within: limit), room > 0 {
      let n = min(room, 7_000)
      try combiner.add(keys: column(next..<next + n), values: [Column([Int64](repeating: 1, count: n))], seed: 0)
      next += n
      peak = max(peak, combiner.byteCount)
    }
    #expect(peak <= limit)
    // A growth holds old and new blocks, about three times the old size, so a full combiner
    // holds between a third and two thirds of the limit (less the rounding to huge pages).
    #expect(combiner.byteCount > limit / 4, "room stopped the combiner at \(combiner.byteCount) bytes")
    let full = combiner.byteCount
    try combiner.add(keys: column(next..<next + 1), values: [Column([Int64(1)])], seed: 0)
    #expect(combiner.byteCount > full, "a combiner with no room grew no bigger on a new key")
    let groups = combiner.groupCount
    let size = combiner.byteCount
    combiner.reset()
    #expect(combiner.groupCount == 0)
    #expect(combiner.byteCount == size, "reset gave the table's capacity back")
    try combiner.add(keys: column(0..<groups), values: [Column([Int64](repeating: 2, count: groups))], seed: 0)
    let frame = try combiner.drainUnordered()
    #expect(frame.count == groups)
    #expect(frame.columns[1].scalars(Int64.self).allSatisfy { $0 == 2 })
  }

  @Test func doubleAggregatesEqualADictionary() throws {
    var rng = SplitMix64(seed: 3)
    let combiner = try Combiner(keyType: .string)
    try combiner.addAggregate(.sum, valueType: .double)
    try combiner.addAggregate(.min, valueType: .double)
    try combiner.addAggregate(.max, valueType: .double)
    let keys = (0..<20_000).map { _ in "key-\(Int.random(in: 0..<700, using: &rng))" }
    let values = (0..<20_000).map { _ in Double(Int.random(in: -1000...1000, using: &rng)) / 8 }
    let v = Column(values)
    try combiner.add(keys: Column(strings: keys), values: [v, v, v], seed: 1)
    var reference: [String: (Double, Double, Double)] = [:]
    for (k, x) in zip(keys, values) {
      let r = reference[k] ?? (0, .infinity, -.infinity)
      reference[k] = (r.0 + x, min(r.1, x), max(r.2, x))
    }
    let (frame, _) = try combiner.drain()
    #expect(frame.count == reference.count)
    for row in frame.anyRows {
      let r = try #require(reference[row[0] as! String])
      #expect(row[1] as! Double == r.0)
      #expect(row[2] as! Double == r.1)
      #expect(row[3] as! Double == r.2)
    }
  }

  @Test func groupIDsAreDenseAndCorrectUnderForcedHashCollisions() throws {
    var rng = SplitMix64(seed: 4)
    for keyType in [ColumnType.scalar(.int64), .string] {
      let combiner = try Combiner(keyType: keyType, expectedGroups: 2)
      var firstSeen: [Int64: UInt32] = [:]
      for _ in 0..<4 {
        let raw = (0..<3000).map { _ in Int64.random(in: 0..<1500, using: &rng) }
        // Strings of 2-5 bytes, exactly 7 (the longest kept inline in the table) and 8 (the
        // shortest compared on its bytes), all distinct per raw key.
        func text(_ x: Int64) -> String {
          let digits = String(x)
          switch x % 4 {
          case 1: return "k" + String(repeating: "0", count: 6 - digits.count) + digits
          case 3: return "kk" + String(repeating: "0", count: 6 - digits.count) + digits
          default: return "s\(x)"
          }
        }
        let keys = keyType == .string ? Column(strings: raw.map(text)) : Column(raw)
        // Only 16 distinct hashes: nearly every probe meets a different key with an equal hash.
        let hashes = raw.map { UInt64($0 & 0xF) }
        var gids = [UInt32](repeating: 0, count: raw.count)
        try hashes.withUnsafeBufferPointer { h in
          try gids.withUnsafeMutableBufferPointer { g in
            _ = try combiner.groupIDs(keys: keys, hashes: h.baseAddress!, into: g.baseAddress!)
          }
        }
        for (k, g) in zip(raw, gids) {
          if let expected = firstSeen[k] {
            #expect(g == expected)
          } else {
            #expect(g == UInt32(firstSeen.count), "new keys get the next dense id")
            firstSeen[k] = g
          }
        }
      }
      #expect(combiner.groupCount == firstSeen.count)
    }
  }

  @Test func aggregatesStayCorrectUnderForcedHashCollisions() throws {
    var rng = SplitMix64(seed: 6)
    let combiner = try Combiner(keyType: .scalar(.int64))
    try combiner.addAggregate(.sum)
    try combiner.addAggregate(.max)
    var reference: [Int64: (Int64, Int64)] = [:]
    for _ in 0..<3 {
      let keys = (0..<5000).map { _ in Int64.random(in: 0..<2000, using: &rng) }
      let values = (0..<5000).map { _ in Int64.random(in: -100...100, using: &rng) }
      let hashes = keys.map { UInt64($0 % 3) }  // three hashes for 2000 keys
      var gids = [UInt32](repeating: 0, count: keys.count)
      try hashes.withUnsafeBufferPointer { h in
        try gids.withUnsafeMutableBufferPointer { g in
          _ = try combiner.groupIDs(keys: Column(keys), hashes: h.baseAddress!, into: g.baseAddress!)
          try combiner.update(0, values: Column(values), gids: UnsafePointer(g.baseAddress!))
          try combiner.update(1, values: Column(values), gids: UnsafePointer(g.baseAddress!))
        }
      }
      for (k, v) in zip(keys, values) {
        let r = reference[k] ?? (0, .min)
        reference[k] = (r.0 + v, max(r.1, v))
      }
    }
    let (frame, hashes) = try combiner.drain()
    #expect(frame.count == reference.count)
    // Drained in (hash, key) order even though thousands of keys share each hash.
    let keys = frame.columns[0].scalars(Int64.self)
    for i in 1..<frame.count {
      #expect(hashes[i - 1] < hashes[i] || (hashes[i - 1] == hashes[i] && keys[i - 1] < keys[i]))
    }
    for row in frame.anyRows {
      let r = try #require(reference[row[0] as! Int64])
      #expect(row[1] as! Int64 == r.0 && row[2] as! Int64 == r.1)
    }
  }

  @Test func narrowKeysComeBackIntact() throws {
    let keys: [Int8] = [-128, 127, -1, 0, -1, 5]
    let combiner = try Combiner(keyType: .scalar(.int8))
    try combiner.addAggregate(.count)
    try combiner.add(keys: Column(keys), values: [Column(keys)], seed: 0)
    let (frame, _) = try combiner.drain()
    let counts = Dictionary(uniqueKeysWithValues: frame.anyRows.map { ($0[0] as! Int8, $0[1] as! Int64) })
    #expect(counts == [-128: 1, 127: 1, -1: 2, 0: 1, 5: 1])
  }

  @Test func misuseIsAnErrorNotACrash() throws {
    #expect(throws: FrameError.self) { try Combiner(keyType: .boxed("Point")) }
    let combiner = try Combiner(keyType: .scalar(.int64))
    #expect(throws: FrameError.self) { try combiner.addAggregate(.sum, valueType: .int8) }
    try combiner.addAggregate(.sum)
    #expect(throws: FrameError.self) {
      try combiner.add(keys: Column(strings: ["a"]), values: [Column([Int64(1)])], seed: 0)
    }
    #expect(throws: FrameError.self) { try combiner.add(keys: Column([Int64(1)]), values: [Column([1.5])], seed: 0) }
  }
}

@Suite struct CombinerDrainTests {
  @Test func anUnorderedDrainHoldsTheSameGroupsAsASortedOne() throws {
    var rng = SplitMix64(seed: 9)
    let keys = Column(strings: (0..<10_000).map { _ in "k\(Int.random(in: 0..<900, using: &rng))" })
    let values = Column((0..<10_000).map { _ in Int64.random(in: -5...5, using: &rng) })
    func combined(_ sorted: Bool) throws -> [String] {
      let c = try Combiner(keyType: .string)
      try c.addAggregate(.sum)
      try c.add(keys: keys, values: [values], seed: 0)
      let frame = sorted ? try c.drain().frame : try c.drainUnordered()
      #expect(c.groupCount == 0)
      return frame.anyRows.map { "\($0)" }.sorted()
    }
    #expect(try combined(true) == combined(false))
    #expect(try combined(false).count == 900)
  }
}

/// Keys of several columns: packed into one word when they fit, else held as one byte string
/// per row, and given back as the columns they came from.
@Suite struct WideKeyCombinerTests {
  /// Key shapes: two small integers (packed into a word), a byte and a string, two 64-bit
  /// integers (wider than a word), and a string between a double and a bool.
  static let shapes: [[ColumnType]] = [
    [.scalar(.int32), .scalar(.int16)],
    [.scalar(.uint8), .string],
    [.scalar(.int64), .scalar(.int64)],
    [.scalar(.double), .string, .scalar(.bool)],
    [.scalar(.int64), .scalar(.int32), .scalar(.bool)],
  ]

  private static func column(_ type: ColumnType, _ values: [Int]) -> Column {
    switch type {
    case .scalar(.int32): Column(values.map { Int32($0) - 3 })
    case .scalar(.int64): Column(values.map { Int64($0) * 1_000_003 - 77 })
    case .scalar(.int16): Column(values.map { Int16($0) })
    case .scalar(.uint8): Column(values.map { UInt8($0) })
    case .scalar(.double): Column(values.map { Double($0) / 2 })
    case .scalar(.bool): Column(values.map { $0 % 2 == 0 })
    case .string: Column(strings: values.map { $0 == 0 ? "" : String(repeating: "é", count: $0) })
    default: Column(values.map { Int64($0) * 1_000_003 - 77 })
    }
  }

  @Test(arguments: shapes)
  func aKeyOfSeveralColumnsGroupsAsItsTuple(types: [ColumnType]) throws {
    var rng = SplitMix64(seed: UInt64(types.count * 17))
    let combiner = try Combiner(keyTypes: types, expectedGroups: 4)
    try combiner.addAggregate(.sum)
    try combiner.addAggregate(.count)
    var reference: [[AnyHashable]: (sum: Int64, count: Int64)] = [:]
    for _ in 0..<4 {
      let n = Int.random(in: 0...5_000, using: &rng)
      let raw = types.map { _ in (0..<n).map { _ in Int.random(in: 0..<9, using: &rng) } }
      let values = (0..<n).map { _ in Int64.random(in: -1000...1000, using: &rng) }
      let keys = zip(types, raw).map { Self.column($0, $1) }
      try combiner.add(keys: keys, values: [Column(values), Column(values)], seed: 5)
      for i in 0..<n {
        let key = keys.map { $0.anyValue(at: i) }
        let r = reference[key] ?? (0, 0)
        reference[key] = (r.sum + values[i], r.count + 1)
      }
    }
    #expect(combiner.groupCount == reference.count)
    let (frame, hashes) = try combiner.drain()
    #expect(frame.prefix == types.count)
    #expect(frame.schema.types == types + [.scalar(.int64), .scalar(.int64)])
    #expect(hashes == (try frame.hashKeys(seed: 5)))
    // Equal hashes are ordered by key, so drained runs merge.
    for i in 1..<max(frame.count, 1) where hashes[i] == hashes[i - 1] {
      #expect(frame.compareKeys(i - 1, frame, i) < 0)
    }
    let expected = Set(reference.map { "\($0.key + [AnyHashable($0.value.sum), AnyHashable($0.value.count)])" })
    let found = Set(frame.anyRows.map { "\($0)" })
    #expect(found.subtracting(expected).isEmpty && expected.subtracting(found).isEmpty)
  }

  /// With only 16 distinct hashes nearly every probe meets another key of an equal hash, so
  /// every key is told apart by its bytes: 16-byte keys (compared as two words), 13-byte keys
  /// and byte-string rows.
  @Test(arguments: [
    [ColumnType.scalar(.int64), .scalar(.int64)], [.scalar(.int64), .scalar(.int32), .scalar(.bool)],
    [.scalar(.int64), .string],
  ])
  func keysOfEqualHashesGetDenseIdsByTheirBytes(types: [ColumnType]) throws {
    var rng = SplitMix64(seed: 9)
    let combiner = try Combiner(keyTypes: types, expectedGroups: 2)
    var firstSeen: [[AnyHashable]: UInt32] = [:]
    for _ in 0..<4 {
      let raw = types.map { _ in (0..<3000).map { _ in Int.random(in: 0..<40, using: &rng) } }
      let keys = zip(types, raw).map { Self.column($0, $1) }
      // A function of the key: the first two columns map their raw values one to one.
      let hashes = (0..<3000).map { i in UInt64((raw[0][i] &+ raw[1][i]) & 0xF) }
      var gids = [UInt32](repeating: 0, count: hashes.count)
      try hashes.withUnsafeBufferPointer { h in
        try gids.withUnsafeMutableBufferPointer { g in
          _ = try combiner.groupIDs(keys: keys, hashes: h.baseAddress!, into: g.baseAddress!)
        }
      }
      for (i, g) in gids.enumerated() {
        let key = keys.map { $0.anyValue(at: i) }
        if let expected = firstSeen[key] {
          #expect(g == expected)
        } else {
          #expect(g == UInt32(firstSeen.count), "new keys get the next dense id")
          firstSeen[key] = g
        }
      }
    }
    #expect(combiner.groupCount == firstSeen.count)
    let drained = try combiner.drainUnordered()
    #expect(Set(drained.anyRows.map { Array($0[..<types.count]) }) == Set(firstSeen.keys))
  }

  @Test func keyColumnsOfTheWrongTypesOrLengthsAreRefused() throws {
    let combiner = try Combiner(keyTypes: [.scalar(.int64), .string])
    try combiner.addAggregate(.count)
    #expect(throws: FrameError.self) {
      try combiner.add(keys: [Column([Int64(1)]), Column([Int64(2)])], values: [Column([Int64(1)])], seed: 0)
    }
    #expect(throws: FrameError.self) {
      try combiner.add(keys: [Column([Int64(1), 2]), Column(strings: ["a"])], values: [Column([Int64(1)])], seed: 0)
    }
    #expect(throws: FrameError.self) { try Combiner(keyTypes: []) }
    #expect(combiner.groupCount == 0)
  }
}

/// The key-row decoder checks every row's layout before it copies a byte.
@Suite struct KeyRowTests {
  /// Rows of (Int64, string): 8 bytes, a 4-byte length, then the string's bytes.
  private static func row(_ x: Int64, _ s: String) -> [UInt8] {
    withUnsafeBytes(of: x.littleEndian, Array.init) + withUnsafeBytes(of: UInt32(s.utf8.count).littleEndian, Array.init)
      + Array(s.utf8)
  }

  private static func measure(_ rows: [[UInt8]]) -> bs_error {
    var offsets: [Int64] = [0]
    for r in rows { offsets.append(offsets.last! + Int64(r.count)) }
    let bytes = rows.flatMap { $0 }
    var totals: [Int64] = [0, 0]
    return bs_keyrow_measure(offsets, bytes, rows.count, [8, 0], 2, &totals)
  }

  @Test func wellFormedRowsMeasureTheirStrings() {
    var offsets: [Int64] = [0]
    let rows = [Self.row(1, "ab"), Self.row(-2, ""), Self.row(3, "xyz")]
    for r in rows { offsets.append(offsets.last! + Int64(r.count)) }
    var totals: [Int64] = [9, 9]
    #expect(bs_keyrow_measure(offsets, rows.flatMap { $0 }, 3, [8, 0], 2, &totals) == BS_OK)
    #expect(totals == [0, 5])
  }

  @Test func aShortALongOrAnOverrunningRowIsALengthError() {
    let good = Self.row(1, "ab")
    #expect(Self.measure([Array(good.dropLast())]) == BS_ELENGTH)
    #expect(Self.measure([good + [0]]) == BS_ELENGTH)
    var overrun = good
    overrun[8] = 200  // a length past the row's end
    #expect(Self.measure([overrun]) == BS_ELENGTH)
    #expect(Self.measure([Array(good.prefix(10))]) == BS_ELENGTH)  // half a length
  }
}
