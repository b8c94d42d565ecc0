import CSupport
import Frame
import Testing

/// The stable sort of `values`' indices by `less`: the reference the radix sort must equal.
func referencePermutation<T>(_ values: [T], _ less: (T, T) -> Bool) -> [UInt32] {
  values.indices.sorted { a, b in
    less(values[a], values[b]) || (!less(values[b], values[a]) && a < b)
  }.map { UInt32($0) }
}

@Suite struct SortTests {
  func check<T: ScalarValue>(_ values: [T], _ less: (T, T) -> Bool) throws {
    let frame = try Frame([Column(values), Column((0..<values.count).map { Int64($0) })])
    let perm = try frame.sortPermutation(.keys)
    #expect(perm == referencePermutation(values, less), "\(T.self)")
  }

  func integers<T: FixedWidthInteger & ScalarValue>(_: T.Type, _ rng: inout SplitMix64) -> [T] {
    // Few distinct values (stability matters), plus the extremes.
    let pool = (0..<50).map { _ in T(truncatingIfNeeded: rng.next()) } + [T.min, T.max, 0]
    return (0..<3000).map { _ in pool.randomElement(using: &rng)! }
  }

  @Test func radixPermutationEqualsStableSortForEveryIntegerKind() throws {
    var rng = SplitMix64(seed: 11)
    try check(integers(Int8.self, &rng), <)
    try check(integers(Int16.self, &rng), <)
    try check(integers(Int32.self, &rng), <)
    try check(integers(Int64.self, &rng), <)
    try check(integers(UInt8.self, &rng), <)
    try check(integers(UInt16.self, &rng), <)
    try check(integers(UInt32.self, &rng), <)
    try check(integers(UInt64.self, &rng), <)
    // Wide random keys exercise every radix pass.
    try check((0..<5000).map { _ in Int64(bitPattern: rng.next()) }, <)
    try check((0..<5000).map { _ in rng.next() }, <)
    try check((0..<3000).map { _ in Bool.random(using: &rng) }, { !$0 && $1 })
  }

  /// `n` bit patterns `width` bits wide whose top 8 bits take a few values, skewed: one value
  /// holds 47% of the keys (and fixes the 12 bits below its top too, so its bucket is split
  /// again), one 43%, one a single key, the rest share what is left; lower bits are random.
  /// Sorts of more than 131,072 such keys split by their top varying digit first (the radix
  /// sort's MSD step), leaving empty and one-key buckets.
  func skewed(_ n: Int, width: Int, tops: [UInt64], _ rng: inout SplitMix64) -> [UInt64] {
    let low = width >= 32 ? width - 20 : width - 8
    let lowMask: UInt64 = low >= 64 ? ~0 : (1 << UInt64(low)) - 1
    return (0..<n).map { i in
      let r = Int.random(in: 0..<100, using: &rng)
      let top = i == n / 2 ? tops[2] : r < 47 ? tops[0] : r < 90 ? tops[1] : tops[3 + r % (tops.count - 3)]
      var v = top << UInt64(width - 8) | rng.next() & lowMask
      if top == tops[0], width >= 32 {
        v = v & ~(UInt64(0xFFF) << UInt64(low)) | UInt64([0x000, 0x001, 0x3FF][r % 3]) << UInt64(low)
      }
      return v
    }
  }

  @Test func largeSkewedSortsGoThroughTheMSDSplitForEveryKind() throws {
    var rng = SplitMix64(seed: 31)
    let n = 150_000
    let tops: [UInt64] = [0x3F, 0xC0, 0x41, 0x40, 0xBF]
    try check(skewed(n, width: 64, tops: tops, &rng), <)
    try check(skewed(n, width: 64, tops: tops, &rng).map { Int64(bitPattern: $0) }, <)
    try check(skewed(n, width: 32, tops: tops, &rng).map { UInt32($0) }, <)
    try check(skewed(n, width: 32, tops: tops, &rng).map { Int32(bitPattern: UInt32($0)) }, <)
    try check(skewed(n, width: 16, tops: tops, &rng).map { UInt16($0) }, <)
    try check(skewed(n, width: 16, tops: tops, &rng).map { Int16(bitPattern: UInt16($0)) }, <)
    try check(skewed(n, width: 64, tops: tops, &rng).map { Double(bitPattern: $0) }, <)
    try check(skewed(n, width: 32, tops: tops, &rng).map { Float(bitPattern: UInt32($0)) }, <)
    // 600,000 keys: the heavy bucket alone is over 131,072 keys and is split again.
    try check(skewed(600_000, width: 64, tops: tops, &rng), <)
    // Strings: the radix key is the first eight bytes, big-endian, so a few first letters
    // make the top digit few-valued; longer strings tie-break past the prefix.
    let letters = Array("abcdefghijklmnopqrstuvwxyz".utf8)
    let strings = (0..<150_000).map { i -> String in
      let r = Int.random(in: 0..<100, using: &rng)
      let first: UInt8 =
        i == 7 ? UInt8(ascii: "m") : r < 60 ? UInt8(ascii: "a") : r < 95 ? UInt8(ascii: "q") : UInt8(ascii: "z")
      let rest = (0..<Int.random(in: 0..<12, using: &rng)).map { _ in letters[Int(rng.next() % 26)] }
      return String(decoding: [first] + rest, as: UTF8.self)
    }
    let frame = try Frame([Column(strings: strings)])
    #expect(
      try frame.sortPermutation(.keys) == referencePermutation(strings) { $0.utf8.lexicographicallyPrecedes($1.utf8) })
  }

  /// The sort that runs when its scratch cannot be allocated gives the stable order, with and
  /// without a permutation, on keys that need every pass, few distinct keys (stability) and
  /// keys equal in some digits.
  @Test func theUnbufferedFallbackSortsAsTheRadixSortDoes() throws {
    var rng = SplitMix64(seed: 41)
    let inputs: [[UInt64]] = [
      (0..<100_000).map { _ in rng.next() },
      (0..<50_000).map { _ in rng.next() % 7 },
      (0..<60_000).map { _ in rng.next() & 0xFF00_0000_00FF_0000 },
      skewed(200_000, width: 64, tops: [0x3F, 0xC0, 0x41, 0x40, 0xBF], &rng),
      [5, 3],
    ]
    for keys in inputs {
      let reference = referencePermutation(keys, <)
      var sorted = keys
      var perm = [UInt32](repeating: 0, count: keys.count)
      var tmpKeys = [UInt64](repeating: 0, count: keys.count)
      var tmpPerm = [UInt32](repeating: 0, count: keys.count)
      #expect(bs_iota_u32(&perm, keys.count) == BS_OK)
      #expect(bs_radix_sort_u64_unbuffered(&sorted, &perm, keys.count, &tmpKeys, &tmpPerm) == BS_OK)
      #expect(perm == reference, "\(keys.count) keys")
      #expect(sorted == reference.map { keys[Int($0)] })
      var alone = keys
      #expect(bs_radix_sort_u64_unbuffered(&alone, nil, keys.count, &tmpKeys, nil) == BS_OK)
      #expect(alone == sorted)
    }
    var none: [UInt64] = [1]
    #expect(bs_radix_sort_u64_unbuffered(&none, nil, 1, nil, nil) == BS_EINVAL)
  }

  @Test func floatsSortInIEEETotalOrder() throws {
    var rng = SplitMix64(seed: 12)
    let specials: [Double] = [
      0.0, -0.0, .infinity, -.infinity, .nan, -Double.nan, .leastNonzeroMagnitude, -.greatestFiniteMagnitude,
    ]
    let doubles = (0..<3000).map { i in
      i % 7 == 0 ? specials.randomElement(using: &rng)! : Double.random(in: -1e6...1e6, using: &rng).rounded()
    }
    try check(doubles) { a, b in a.isTotallyOrdered(belowOrEqualTo: b) && !b.isTotallyOrdered(belowOrEqualTo: a) }
    let floats = doubles.map { Float($0) }
    try check(floats) { a, b in a.isTotallyOrdered(belowOrEqualTo: b) && !b.isTotallyOrdered(belowOrEqualTo: a) }
  }

  @Test func stringsSortByBytesBeyondTheEightBytePrefix() throws {
    var rng = SplitMix64(seed: 13)
    let stems = ["", "a", "abcdefgh", "abcdefghi", "abcdefgh\u{0}", "zz", "é"]
    let strings = (0..<3000).map { _ in stems.randomElement(using: &rng)! + String(Int.random(in: 0..<20, using: &rng))
    }
    let frame = try Frame([Column(strings: strings)])
    let perm = try frame.sortPermutation(.keys)
    #expect(perm == referencePermutation(strings) { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
  }

  @Test func multiColumnKeysSortLexicographically() throws {
    var rng = SplitMix64(seed: 14)
    let a = (0..<4000).map { _ in Int32.random(in: -3...3, using: &rng) }
    let b = (0..<4000).map { _ in Double(Int.random(in: -5...5, using: &rng)) }
    let s = (0..<4000).map { _ in ["x", "y", "xy"].randomElement(using: &rng)! }
    let scalarKeys = try Frame([Column(a), Column(b), Column(strings: s)], prefix: 2)
    let byAB: ((Int32, Double), (Int32, Double)) -> Bool = { x, y in x.0 != y.0 ? x.0 < y.0 : x.1 < y.1 }
    let expectedAB = referencePermutation(Array(zip(a, b)), byAB)
    #expect(try scalarKeys.sortPermutation(.keys) == expectedAB)
    let mixedKeys = try Frame([Column(strings: s), Column(a)], prefix: 2)
    let bySA: ((String, Int32), (String, Int32)) -> Bool = { x, y in x.0 != y.0 ? x.0 < y.0 : x.1 < y.1 }
    let expectedSA = referencePermutation(Array(zip(s, a)), bySA)
    #expect(try mixedKeys.sortPermutation(.keys) == expectedSA)
  }

  @Test func hashOrderPutsEqualKeysTogetherAndIsSortedByHashThenKey() throws {
    var rng = SplitMix64(seed: 15)
    let keys = (0..<5000).map { _ in "k\(Int.random(in: 0..<300, using: &rng))" }
    let frame = try Frame([Column(strings: keys), Column((0..<5000).map { Int64($0) })])
    let sorted = try frame.sorted(.hash(seed: 99))
    let hashes = try sorted.hashKeys(seed: 99)
    for i in 1..<sorted.count {
      #expect(hashes[i - 1] < hashes[i] || (hashes[i - 1] == hashes[i] && sorted.compareKeys(i - 1, sorted, i) <= 0))
    }
    // Each key forms one run, and rows within a run keep their input order (stability).
    var seen = Set<AnyHashable>()
    var previous: AnyHashable? = nil
    var lastIndex: [AnyHashable: Int64] = [:]
    for row in sorted.anyRows {
      if row[0] != previous {
        #expect(!seen.contains(row[0]), "key \(row[0]) appears in two runs")
        seen.insert(row[0])
        previous = row[0]
      }
      let index = row[1] as! Int64
      #expect(index > (lastIndex[row[0]] ?? -1))
      lastIndex[row[0]] = index
    }
  }

  @Test func boxedKeysSortByTheirRegisteredOrder() throws {
    BoxedOps.register(Version.self)
    var rng = SplitMix64(seed: 16)
    let versions = (0..<500).map { _ in
      Version(major: Int.random(in: 0..<4, using: &rng), minor: Int.random(in: 0..<4, using: &rng))
    }
    let frame = try Frame([Column(boxed: versions)])
    #expect(try frame.sortPermutation(.keys) == referencePermutation(versions, <))
  }
}

struct Version: Codable, Hashable, Comparable, Sendable {
  var major: Int
  var minor: Int
  static func < (a: Version, b: Version) -> Bool { (a.major, a.minor) < (b.major, b.minor) }
}

@Suite struct CompareTests {
  /// `Column.compare` (Swift, per row) must order rows exactly as the C radix transform does,
  /// or merges and tie-breaks would disagree with the radix sort.
  func check<T: ScalarValue>(_ values: [T]) throws {
    let frame = try Frame([Column(values)])
    let prefixes = try frame.sortPrefixes(.keys).values
    let column = frame.columns[0]
    for i in values.indices {
      for j in values.indices.prefix(40) {
        let expected = prefixes[i] == prefixes[j] ? 0 : (prefixes[i] < prefixes[j] ? -1 : 1)
        #expect(column.compare(i, column, j) == expected, "\(T.self) \(values[i]) vs \(values[j])")
        #expect(column.equal(i, column, j) == (expected == 0))
      }
    }
  }

  @Test func perRowCompareAgreesWithTheRadixTransformForEveryKind() throws {
    var rng = SplitMix64(seed: 21)
    func ints<T: FixedWidthInteger & ScalarValue>(_: T.Type) -> [T] {
      [T.min, T.max, 0] + (0..<60).map { _ in T(truncatingIfNeeded: rng.next()) }
    }
    try check(ints(Int8.self))
    try check(ints(Int16.self))
    try check(ints(Int32.self))
    try check(ints(Int64.self))
    try check(ints(UInt8.self))
    try check(ints(UInt16.self))
    try check(ints(UInt32.self))
    try check(ints(UInt64.self))
    let specials: [Double] = [0, -0.0, .infinity, -.infinity, .nan, -.nan, 1e-300, -1e300]
    let doubles = specials + (0..<60).map { _ in Double(bitPattern: rng.next()) }
    try check(doubles)
    try check(
      doubles.map { Float($0) } + (0..<30).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) })
    try check([true, false, true])
  }
}

@Suite struct KeyOnlySortAndRangeTests {
  /// Sorting a single key column by the keys-only path gives the same values, bit for bit,
  /// as sorting by permutation, across frames and for every scalar kind.
  func check<T: ScalarValue>(_ values: [T]) throws {
    let cut = values.count / 3
    let frames = try [Frame([Column(Array(values[..<cut]))]), Frame([Column(Array(values[cut...]))])]
    let fast = try Frame.sorted(frames, schema: frames[0].schema)
    let slow = try Frame.concat(frames).sorted(.keys)
    let a = fast.columns[0].scalars(T.self).withUnsafeBufferPointer { Array(UnsafeRawBufferPointer($0)) }
    let b = slow.columns[0].scalars(T.self).withUnsafeBufferPointer { Array(UnsafeRawBufferPointer($0)) }
    #expect(a == b, "\(T.self)")
  }

  @Test func keysOnlySortEqualsThePermutationSortForEveryKind() throws {
    var rng = SplitMix64(seed: 5)
    func some<T: FixedWidthInteger & ScalarValue>(_: T.Type) -> [T] {
      (0..<5000).map { _ in T(truncatingIfNeeded: rng.next()) } + [T.min, T.max, 0]
    }
    try check(some(Int8.self))
    try check(some(Int16.self))
    try check(some(Int32.self))
    try check(some(Int64.self))
    try check(some(UInt8.self))
    try check(some(UInt32.self))
    try check(some(UInt64.self))
    let doubles = (0..<5000).map { _ in Double(bitPattern: rng.next()) } + [0.0, -0.0, .nan, -.infinity, .infinity]
    try check(doubles)
    let floats = (0..<5000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) } + [-0.0, .nan]
    try check(floats)
  }

  @Test func rangePartitionIDsAreUpperBoundsOverTheSplitters() throws {
    var rng = SplitMix64(seed: 6)
    for m in [0, 1, 2, 7, 100] {
      let keys = (0..<3000).map { _ in Int64(truncatingIfNeeded: rng.next() % 500) - 250 }
      let bounds = (0..<m).map { _ in Int64(truncatingIfNeeded: rng.next() % 500) - 250 }.sorted()
      let ids = try Frame([Column(keys)]).rangePartitionIDs(splitters: Frame([Column(bounds)]))
      #expect(ids == keys.map { k in UInt32(bounds.filter { $0 <= k }.count) }, "m=\(m)")
      // Strings take the prefix-and-compare path.
      let words = keys.map { "k\($0 + 1000)" }
      let wordBounds = bounds.map { "k\($0 + 1000)" }.sorted()
      let wordIDs = try Frame([Column(strings: words)]).rangePartitionIDs(
        splitters: Frame([Column(strings: wordBounds)]))
      #expect(wordIDs == words.map { w in UInt32(wordBounds.filter { $0 <= w }.count) }, "strings m=\(m)")
    }
  }
}
