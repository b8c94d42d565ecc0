import Bigslice
import Frame
import Synchronization
import Testing

/// Rows as a sorted multiset, for order-insensitive comparison.
func multiset<each C>(_ result: Result<repeat each C>) -> [String] {
  result.frames.flatMap(\.anyRows).map { "\($0)" }.sorted()
}

func multiset(_ rows: [[AnyHashable]]) -> [String] { rows.map { "\($0)" }.sorted() }

let shardCounts = [1, 2, 7, 64]

/// Unlimited memory, and a budget so small that every intermediate output spills to disk.
let memoryLimits = [Int.max, 1]

func session(_ limit: Int) -> Session {
  Session(executor: .local(procs: 2), memoryLimit: limit == Int.max ? nil : limit)
}

func randomPairs(_ n: Int, keys: Int, seed: UInt64) -> ([Int], [Int]) {
  var rng = SplitMix64(seed: seed)
  return (
    (0..<n).map { _ in Int.random(in: 0..<keys, using: &rng) },
    (0..<n).map { _ in Int.random(in: -1000...1000, using: &rng) }
  )
}

@Suite struct CombinatorTests {

  @Test(arguments: shardCounts, memoryLimits)
  func constSplitsEvenlyAndKeepsEveryRowInOrder(shards: Int, limit: Int) throws {
    let session = session(limit)
    let (k, v) = randomPairs(1000, keys: 50, seed: 1)
    let result = try session.run(const(shards, k, v))
    #expect(result.frames.flatMap(\.anyRows) == zip(k, v).map { [AnyHashable($0), AnyHashable($1)] })
    let rows = Array(result)
    #expect(rows.count == 1000 && rows[17].0 == k[17] && rows[17].1 == v[17])
  }

  @Test(arguments: shardCounts, memoryLimits)
  func mapFilterAndFlatMapEqualTheNaiveModel(shards: Int, limit: Int) throws {
    let session = session(limit)
    let (k, v) = randomPairs(3000, keys: 100, seed: 2)
    let mapped: Slice<String, Int, Double> = const(shards, k, v)
      .map { (key: Int, value: Int) -> (String, Int, Double) in (String(key), value * 2, Double(value)) }
    let filtered = mapped.filter { (_: String, doubled: Int, _: Double) in doubled % 3 != 0 }
    let slice: Slice<String, Int> = filtered.flatMap(String.self, Int.self) {
      (out: RowEmitter<String, Int>, key: String, doubled: Int, _: Double) in
      for i in 0..<(abs(doubled) % 3) { out.emit(key, i) }
    }
    var expected: [[AnyHashable]] = []
    for (key, value) in zip(k, v) where (value * 2) % 3 != 0 {
      for i in 0..<(abs(value * 2) % 3) { expected.append([String(key), i]) }
    }
    #expect(multiset(try session.run(slice)) == multiset(expected))
  }

  @Test(arguments: shardCounts, memoryLimits)
  func headTakesTheFirstRowsOfEachShard(shards: Int, limit: Int) throws {
    let session = session(limit)
    let values = Array(0..<500)
    let result = try session.run(const(shards, values).head(3))
    var expected: [Int] = []
    for s in 0..<shards { expected += values[(s * 500 / shards)..<((s + 1) * 500 / shards)].prefix(3) }
    #expect(Array(result) == expected)
  }

  @Test(arguments: shardCounts, memoryLimits)
  func reduceWithAClosureAndBuiltInSumEqualADictionary(shards: Int, limit: Int) throws {
    let session = session(limit)
    let (k, v) = randomPairs(5000, keys: 300, seed: 3)
    var sums: [Int: Int] = [:]
    var maxes: [Int: Int] = [:]
    for (key, value) in zip(k, v) {
      sums[key, default: 0] += value
      maxes[key] = max(maxes[key] ?? .min, value)
    }
    let input = const(shards, k, v)
    let closure = try session.run(input.reduce(+))
    let builtIn = try session.run(input.reduce(.sum))
    let maxed = try session.run(input.reduce(.max))
    for result in [closure, builtIn] {
      #expect(Dictionary(uniqueKeysWithValues: Array(result)) == sums)
    }
    #expect(Dictionary(uniqueKeysWithValues: Array(maxed)) == maxes)
    // Every key lands in exactly one shard.
    #expect(closure.count == sums.count)
  }

  @Test(arguments: shardCounts, memoryLimits)
  func reduceGroupsStringAndBoxedKeys(shards: Int, limit: Int) throws {
    let session = session(limit)
    let words = (0..<2000).map { "w\($0 % 37)" }
    let counted = try session.run(const(shards, words).count())
    var reference: [String: Int] = [:]
    for w in words { reference[w, default: 0] += 1 }
    #expect(Dictionary(uniqueKeysWithValues: Array(counted)) == reference)

    let keys = (0..<1000).map { Pair(a: $0 % 7, b: "x\($0 % 3)") }
    let ones = Array(repeating: 1, count: 1000)
    let grouped = try session.run(const(shards, keys, ones).reduce(+))
    var expected: [Pair: Int] = [:]
    for key in keys { expected[key, default: 0] += 1 }
    #expect(Dictionary(uniqueKeysWithValues: Array(grouped)) == expected)
  }

  @Test(arguments: shardCounts, memoryLimits)
  func reshuffleAndReshardPutEachKeyInOneShard(shards: Int, limit: Int) throws {
    let session = session(limit)
    let (k, v) = randomPairs(3000, keys: 200, seed: 4)
    for slice in [const(shards, k, v).reshuffle(), const(shards, k, v).reshard(max(1, shards / 2 + 3))] {
      let result = try session.run(slice)
      #expect(multiset(result) == multiset(zip(k, v).map { [AnyHashable($0), AnyHashable($1)] }))
      var shardOf: [AnyHashable: Int] = [:]
      for shard in 0..<slice.shards {
        for row in result.frames(shard: shard).flatMap(\.anyRows) {
          #expect(shardOf[row[0], default: shard] == shard, "key \(row[0]) in shards \(shardOf[row[0]]!) and \(shard)")
          shardOf[row[0]] = shard
        }
      }
    }
  }

  @Test(arguments: shardCounts, memoryLimits)
  func repartitionSendsRowsWhereTheUserSays(shards: Int, limit: Int) throws {
    let session = session(limit)
    let values = Array(0..<400)
    let slice = const(shards, values).repartition { n, v in v % n }
    let result = try session.run(slice)
    #expect(Array(result).sorted() == values)
    for shard in 0..<shards {
      let values = result.frames(shard: shard).flatMap { Array($0.columns[0].scalars(Int.self)) }
      #expect(values.allSatisfy { $0 % shards == shard })
    }
  }

  @Test(arguments: shardCounts, memoryLimits)
  func readerFuncKeepsPerShardStateUntilTheEnd(shards: Int, limit: Int) throws {
    let session = session(limit)
    let slice = readerFunc(shards, initial: { shard in shard * 1000 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      let end = shard * 1000 + 250
      for _ in 0..<100 where next < end {
        out.emit(shard, next)
        next += 1
      }
      return next < end
    }
    let rows = Array(try session.run(slice))
    #expect(rows.count == shards * 250)
    #expect(Set(rows.map(\.1)) == Set((0..<shards).flatMap { s in (s * 1000)..<(s * 1000 + 250) }))
  }
}

struct Pair: Codable, Hashable, Sendable {
  var a: Int
  var b: String
}

@Suite struct SplitTests {
  /// The built-in split equals Swift's `split(separator:)` on random lines with runs of
  /// separators at either end, empty lines and multi-byte characters.
  @Test(arguments: shardCounts, memoryLimits)
  func splitEqualsSwiftsSplit(shards: Int, limit: Int) throws {
    var rng = SplitMix64(seed: UInt64(shards))
    let pieces = ["a", "bb", "ünï", "日本", "x y", " ", "  ", ""]
    let lines = (0..<3000).map { _ in
      (0..<Int.random(in: 0..<8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }
    let words = try session(limit).run(const(shards, lines).split())
    let expected = lines.flatMap { $0.split(separator: " ").map(String.init) }
    #expect(Array(words).sorted() == expected.sorted())
    let commas = try session(limit).run(const(shards, ["a,,b,", ",c", ""]).split(separator: ","))
    #expect(Array(commas).sorted() == ["a", "b", "c"])
    #expect(throws: BigsliceError.self) { try session(limit).run(const(1, ["a"]).split(separator: "é")) }
  }
}

@Suite struct GroupingTests {

  @Test(arguments: shardCounts, memoryLimits)
  func cogroupEqualsANaiveJoinOfTwoAndThreeInputs(shards: Int, limit: Int) throws {
    let session = session(limit)
    let (ka, va) = randomPairs(2000, keys: 150, seed: 5)
    let (kb, vb) = randomPairs(1500, keys: 200, seed: 6)
    let b = (0..<kb.count).map { "b\(vb[$0])" }
    let a: Slice<Int, Int> = const(shards, ka, va)
    let bs: Slice<Int, String> = const(max(1, shards / 2), kb, b)
    let grouped: Slice<Int, [Int], [String]> = cogroup(a, bs)
    let result = try session.run(grouped)
    #expect(result.shards == shards)
    var expectedA: [Int: [Int]] = [:]
    var expectedB: [Int: [String]] = [:]
    for (k, v) in zip(ka, va) { expectedA[k, default: []].append(v) }
    for (k, v) in zip(kb, b) { expectedB[k, default: []].append(v) }
    let rows = Array(result)
    #expect(rows.count == Set(ka).union(kb).count)
    for (key, avalues, bvalues) in rows {
      #expect(avalues.sorted() == (expectedA[key] ?? []).sorted())
      #expect(bvalues.sorted() == (expectedB[key] ?? []).sorted())
    }
    // A join is the cross product per key: W3's count.
    let joined = rows.reduce(0) { $0 + $1.1.count * $1.2.count }
    #expect(joined == expectedA.reduce(0) { $0 + $1.value.count * (expectedB[$1.key]?.count ?? 0) })

    let c: Slice<Int, String> = const(1, [1, 1, 999], ["x", "y", "z"])
    let b2: Slice<Int, Int> = const(shards, kb, vb)
    let grouped3: Slice<Int, [Int], [Int], [String]> = cogroup(a, b2, c)
    let three = try session.run(grouped3)
    let byKey = Dictionary(uniqueKeysWithValues: Array(three).map { ($0.0, ($0.1, $0.2, $0.3)) })
    #expect(byKey[999]?.2 == ["z"] && byKey[999]?.0 == [])
    #expect(byKey[1]?.2.sorted() == ["x", "y"])
  }

  /// Inputs far beyond a tiny limit are split into hash buckets on disk and cogrouped bucket
  /// by bucket; a key heavier than any bucket is split level after level until the last
  /// level holds it in memory. String keys and values take the generic path, Int the
  /// specialised one; boxed keys the sort-merge fallback.
  @Test func aCogroupBeyondTheLimitSpillsBucketsAndIsStillExact() throws {
    let tight = Session(executor: .local(procs: 2), memoryLimit: 1)
    var (ka, va) = randomPairs(120_000, keys: 30_000, seed: 8)
    ka += [Int](repeating: -1, count: 40_000)
    va += Array(0..<40_000)
    let (kb, vb) = randomPairs(90_000, keys: 40_000, seed: 9)
    let sb = vb.map { "v\($0)" }
    let grouped: Slice<Int, [Int], [String]> = cogroup(const(3, ka, va), const(2, kb, sb))
    let rows = Array(try tight.run(grouped))
    #expect(tight.spilledRuns > 0, "nothing was split into buckets")
    var expectedA: [Int: [Int]] = [:]
    var expectedB: [Int: [String]] = [:]
    for (k, v) in zip(ka, va) { expectedA[k, default: []].append(v) }
    for (k, v) in zip(kb, sb) { expectedB[k, default: []].append(v) }
    #expect(rows.count == Set(ka).union(kb).count)
    #expect(Set(rows.map(\.0)).count == rows.count, "a key came out twice")
    for (key, a, b) in rows {
      #expect(a.sorted() == (expectedA[key] ?? []).sorted())
      #expect(b.sorted() == (expectedB[key] ?? []).sorted())
    }

    let names = ka.map { "k\($0)" }
    let byName: Slice<String, [Int], [Int]> = cogroup(const(2, names, va), const(1, kb.map { "k\($0)" }, vb))
    let named = Array(try tight.run(byName))
    #expect(named.count == Set(names).union(kb.map { "k\($0)" }).count)
    #expect(named.first { $0.0 == "k-1" }?.1.count == 40_000)

    let pairs = ka.prefix(20_000).map { Pair(a: $0 % 500, b: "p") }
    let byPair: Slice<Pair, [Int], [Int]> = cogroup(
      const(2, pairs, Array(va.prefix(20_000))), const(1, [Pair(a: 7, b: "p")], [1]))
    let paired = Array(try tight.run(byPair))
    #expect(paired.count == Set(pairs).count)
    #expect(paired.reduce(0) { $0 + $1.1.count } == 20_000)
    #expect(paired.first { $0.0 == Pair(a: 7, b: "p") }?.2 == [1])
  }

  @Test(arguments: shardCounts, memoryLimits)
  func foldKeepsArrivalOrderPerKey(shards: Int, limit: Int) throws {
    let session = session(limit)
    let keys = (0..<600).map { $0 % 13 }
    let values = Array(0..<600)
    // One input shard keeps arrival order well defined: rows of a key arrive in input order.
    let input: Slice<Int, Int> = const(1, keys, values).reshard(shards)
    let lists: Slice<Int, [Int]> = input.fold([Int]()) { (acc: [Int], v: Int) in acc + [v] }
    let folded = try session.run(lists)
    for (key, list) in Array(folded) {
      #expect(list == values.filter { $0 % 13 == key })
    }
  }
}

@Suite struct PassThroughTests {
  @Test(arguments: shardCounts, memoryLimits)
  func writerFuncSeesEveryRowThenTheEnd(shards: Int, limit: Int) throws {
    let seen = Counter()
    let values = Array(0..<1000)
    let slice = const(shards, values, values.map { "v\($0)" }).writerFunc(initial: { _ in 0 }) {
      (shard: Int, rows: inout Int, batch: RowBatch<Int, String>?, error: Error?) in
      if let batch {
        for i in 0..<batch.count where batch[i].1 != "v\(batch[i].0)" { seen.add(-1_000_000) }
        rows += batch.count
      } else {
        #expect(error == nil)
        seen.add(rows)
        seen.ends(1)
      }
    }
    let result = try session(limit).run(slice)
    #expect(result.count == 1000)
    #expect(seen.value == 1000)
    #expect(seen.endings == shards)
  }

  @Test(arguments: shardCounts, memoryLimits)
  func distinctKeepsEachRowOnce(shards: Int, limit: Int) throws {
    let (k, v) = randomPairs(4000, keys: 30, seed: 7)
    let small = v.map { $0 % 4 }
    let result = try session(limit).run(const(shards, k, small).distinct())
    let expected = Set(zip(k, small).map { "\([AnyHashable($0), AnyHashable($1)])" })
    #expect(multiset(result) == expected.sorted())
    #expect(result.schema.prefix == 1)
  }

  @Test func unwrapResetsThePrefix() throws {
    let slice = const(2, [1, 2], ["a", "b"], [0.5, 1.5]).prefixed(2)
    #expect(slice.schema.prefix == 2)
    #expect(slice.unwrap().schema.prefix == 1)
  }
}

/// A thread-safe counter for closures that run on task threads.
final class Counter: Sendable {
  private let state = Mutex<(total: Int, ended: Int)>((0, 0))
  func add(_ n: Int) { state.withLock { $0.total += n } }
  func ends(_ n: Int) { state.withLock { $0.ended += n } }
  var value: Int { state.withLock { $0.total } }
  var endings: Int { state.withLock { $0.ended } }
}
