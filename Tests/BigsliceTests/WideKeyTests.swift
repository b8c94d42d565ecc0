import Bigslice
import BigsliceTestFuncs
import Frame
import Testing

/// Random columns with few distinct values, so that keys of several columns collide often.
/// Strings run from empty to longer than the combiner's 7-byte inline keys.
struct WideRows {
  static let words = ["", "a", "b", "ab", "a\u{0}b", "longer than seven", "longer than eight", "é"]
  static let reals = [-1.5, 0, 0.25, 2, 1e9]

  var rng: SplitMix64
  let n: Int

  init(_ n: Int, seed: UInt64) {
    rng = SplitMix64(seed: seed)
    self.n = n
  }

  mutating func ints(_ range: Range<Int>) -> [Int] { (0..<n).map { _ in Int.random(in: range, using: &rng) } }
  mutating func strings() -> [String] { (0..<n).map { _ in Self.words.randomElement(using: &rng)! } }
  mutating func bools() -> [Bool] { (0..<n).map { _ in Bool.random(using: &rng) } }
  /// Quarters, so that sums in any order are exact.
  mutating func doubles() -> [Double] { (0..<n).map { _ in Double(Int.random(in: -400...400, using: &rng)) / 4 } }
  mutating func keyReals() -> [Double] { (0..<n).map { _ in Self.reals.randomElement(using: &rng)! } }
}

/// Keys of two and three columns after `prefixed(p)`, and built-in reduces over several value
/// columns, against a naive model, on every engine, with and without a limit that spills
/// everything.
@Suite(.engine) struct WideKeyTests {
  static let shards = [1, 7]

  @Test(arguments: setups, shards)
  func builtInReducesFoldEveryValueColumnPerKeyOfOneToThreeColumns(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(3000, seed: UInt64(11 + shards))
    let (a, b, c, x, y) = (r.strings(), r.ints(0..<6), r.bools(), r.ints(-1000..<1000), r.doubles())
    let sums = try await session.run(WideKeyFuncs.sumThreeKeysTwoValues, shards, a, b, c, x, y)
    #expect(sums.schema.prefix == 3)
    var sumModel: [[AnyHashable]: (Int, Double)] = [:]
    for i in 0..<a.count {
      let s = sumModel[[a[i], b[i], c[i]], default: (0, 0)]
      sumModel[[a[i], b[i], c[i]]] = (s.0 &+ x[i], s.1 + y[i])
    }
    #expect(try multiset(sums) == multiset(sumModel.map { $0.key + [$0.value.0, $0.value.1] }))

    let (k, d, z) = (r.ints(0..<40), r.keyReals(), r.ints(-5..<5))
    let maxima = try await session.run(WideKeyFuncs.maxTwoKeysThreeValues, shards, k, d, x, y, z)
    var maxModel: [[AnyHashable]: (Int, Double, Int)] = [:]
    for i in 0..<k.count {
      let m = maxModel[[k[i], d[i]], default: (.min, -.infinity, .min)]
      maxModel[[k[i], d[i]]] = (max(m.0, x[i]), max(m.1, y[i]), max(m.2, z[i]))
    }
    #expect(try multiset(maxima) == multiset(maxModel.map { $0.key + [$0.value.0, $0.value.1, $0.value.2] }))

    let minima = try await session.run(WideKeyFuncs.minOneKeyThreeValues, shards, k, x, y, z)
    var minModel: [Int: (Int, Double, Int)] = [:]
    for i in 0..<k.count {
      let m = minModel[k[i], default: (.max, .infinity, .max)]
      minModel[k[i]] = (min(m.0, x[i]), min(m.1, y[i]), min(m.2, z[i]))
    }
    #expect(try multiset(minima) == multiset(minModel.map { [$0.key, $0.value.0, $0.value.1, $0.value.2] }))
  }

  @Test(arguments: setups, shards)
  func closureReducesKeyOnEveryColumnButTheLast(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(3000, seed: UInt64(21 + shards))
    let (a, b, v) = (r.ints(0..<30), r.strings(), r.ints(-1000..<1000))
    let two = try await session.run(WideKeyFuncs.closureTwoKeys, shards, a, b, v)
    var twoModel: [[AnyHashable]: Int] = [:]
    for i in 0..<a.count { twoModel[[a[i], b[i]], default: 0] &+= v[i] }
    #expect(try multiset(two) == multiset(twoModel.map { $0.key + [$0.value] }))

    let (flags, words, texts) = (
      r.bools(), r.strings(), r.strings().map { "\($0)\(Int.random(in: 0..<9, using: &r.rng))" }
    )
    let three = try await session.run(WideKeyFuncs.closureThreeKeys, shards, flags, words, a, texts)
    var threeModel: [[AnyHashable]: String] = [:]
    for i in 0..<a.count {
      let key: [AnyHashable] = [flags[i], words[i], a[i]]
      threeModel[key] = max(threeModel[key] ?? texts[i], texts[i])
    }
    #expect(try multiset(three) == multiset(threeModel.map { $0.key + [$0.value] }))

    // A boxed column in the key: grouped by sorting instead of the C table.
    let boxed = try await session.run(WideKeyFuncs.closureBoxedAndIntKey, shards, a.map { $0 % 7 }, b, a, v)
    var boxedModel: [[AnyHashable]: Int] = [:]
    for i in 0..<a.count { boxedModel[[Pair(a: a[i] % 7, b: b[i]), a[i]], default: 0] &+= v[i] }
    #expect(try multiset(boxed) == multiset(boxedModel.map { $0.key + [$0.value] }))
  }

  @Test(arguments: setups, shards)
  func aFoldOnTwoKeyColumnsSeesEachKeysValuesInArrivalOrder(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2000, seed: UInt64(31 + shards))
    let (a, b, v) = (r.ints(0..<25), r.bools(), r.ints(0..<100_000))
    let result = try await session.run(WideKeyFuncs.foldTwoKeys, shards, a, b, v)
    var model: [[AnyHashable]: [Int]] = [:]
    for i in 0..<a.count { model[[a[i], b[i]], default: []].append(v[i]) }
    #expect(try multiset(result) == multiset(model.map { $0.key + [$0.value] }))
  }

  @Test(arguments: setups, shards)
  func cogroupsOfTwoAndThreeInputsKeyedOnSeveralColumnsEqualANaiveJoin(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2500, seed: UInt64(41 + shards))
    let (ka, kb, va) = (r.ints(0..<20), r.strings(), r.ints(-500..<500))
    var s = WideRows(1800, seed: UInt64(51 + shards))
    let (kc, kd, vb) = (s.ints(10..<30), s.strings(), s.doubles())
    let two = try await session.run(WideKeyFuncs.cogroupTwoKeys, shards, ka, kb, va, kc, kd, vb)
    #expect(two.schema.prefix == 2)
    var left: [[AnyHashable]: [Int]] = [:]
    var right: [[AnyHashable]: [Double]] = [:]
    for i in 0..<ka.count { left[[ka[i], kb[i]], default: []].append(va[i]) }
    for i in 0..<kc.count { right[[kc[i], kd[i]], default: []].append(vb[i]) }
    let twoRows = Array(try two.rows())
    #expect(twoRows.count == Set(left.keys).union(right.keys).count)
    for (k1, k2, xs, ys) in twoRows {
      #expect(xs.sorted() == (left[[k1, k2]] ?? []).sorted(), "key (\(k1), \(k2))")
      #expect(ys.sorted() == (right[[k1, k2]] ?? []).sorted(), "key (\(k1), \(k2))")
    }

    let flags = r.bools()
    let three = try await session.run(WideKeyFuncs.cogroupThreeKeys, shards, ka, flags, kb, va)
    var lists: [[[AnyHashable]: [Int]]] = [[:], [:], [:]]
    for i in 0..<ka.count {
      let key: [AnyHashable] = [ka[i], flags[i], kb[i]]
      lists[0][key, default: []].append(va[i])
      if i < ka.count / 2 { lists[1][key, default: []].append(va[i]) }
      if i % 3 == 0 { lists[2][key, default: []].append(-va[i]) }
    }
    let threeRows = Array(try three.rows())
    #expect(threeRows.count == lists[0].count)
    for (k1, k2, k3, xs, ys, zs) in threeRows {
      let key: [AnyHashable] = [k1, k2, k3]
      #expect(xs.sorted() == (lists[0][key] ?? []).sorted())
      #expect(ys.sorted() == (lists[1][key] ?? []).sorted())
      #expect(zs.sorted() == (lists[2][key] ?? []).sorted())
    }
  }

  @Test(arguments: setups, shards)
  func distinctReshuffleAndSortedHonourATwoColumnKey(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2000, seed: UInt64(61 + shards))
    let (a, b, c) = (r.ints(0..<12), r.strings(), r.ints(0..<3))
    let rows = (0..<a.count).map { [AnyHashable(a[$0]), AnyHashable(b[$0]), AnyHashable(c[$0])] }

    let distinct = try await session.run(WideKeyFuncs.distinctTwoKeys, shards, a, b, c)
    #expect(distinct.schema.prefix == 2)
    #expect(try multiset(distinct) == Set(rows.map { "\($0)" }).sorted())

    let words = r.strings()
    let reshuffled = try await session.run(WideKeyFuncs.reshuffleTwoKeys, shards, words, a, c)
    #expect(try multiset(reshuffled) == multiset((0..<a.count).map { [words[$0], a[$0], c[$0]] }))
    var shardOf: [[AnyHashable]: Int] = [:]
    for shard in 0..<reshuffled.shards {
      for row in try reshuffled.frames(shard: shard).flatMap(\.anyRows) {
        let key = Array(row[..<2])
        #expect(shardOf[key, default: shard] == shard, "key \(key) in two shards")
        shardOf[key] = shard
      }
    }
    // Several keys share a first column: a partition by that column alone would put them
    // all in one shard.
    if shards > 1 { #expect(Set(shardOf.filter { "\($0.key[1])" == "0" }.values).count > 1) }

    let sorted = try await session.run(WideKeyFuncs.sortedTwoKeys, shards, a, b, c)
    #expect(try multiset(sorted) == multiset(rows))
    let keys = try (0..<sorted.shards).flatMap { shard in
      try sorted.frames(shard: shard).flatMap(\.anyRows).map { (Int($0[0].base as! Int64), $0[1].base as! String) }
    }
    #expect(keys.count == rows.count)
    for (p, q) in zip(keys, keys.dropFirst()) {
      #expect(p.0 < q.0 || (p.0 == q.0 && Array(p.1.utf8).lexicographicallyPrecedes(Array(q.1.utf8)) || p.1 == q.1))
    }
  }

  @Test func aClosureReduceOrFoldOrCogroupWhosePrefixIsNotTheKeyIsAClearError() async throws {
    let session = Session(executor: .local(procs: 2))
    let rows = const(2, [1, 2], ["a", "b"], [3, 4])
    let reduce = rows.reduce { (x: Int, y: Int) in x + y }
    await #expect(throws: BigsliceError.self) { try await session.run(reduce) }
    do {
      _ = try await session.run(reduce)
    } catch {
      #expect("\(error)".contains("prefixed(2)"), "\(error)")
    }
    let fold = rows.fold(0) { (acc: Int, v: Int) in acc + v }
    await #expect(throws: BigsliceError.self) { try await session.run(fold) }
    let joined = cogroup(rows, rows.prefixed(2))
    await #expect(throws: BigsliceError.self) { try await session.run(joined) }
    let text = const(1, [1], ["x"])
    await #expect(throws: BigsliceError.self) { try await session.run(text.reduce(.sum)) }
  }
}
