import Bigmachine
import Bigslice
import BigsliceTestFuncs
import Frame
import Synchronization
import Testing

/// Rows as a sorted multiset, for order-insensitive comparison.
func multiset<each C>(_ result: SliceResult<repeat each C>) throws -> [String] {
  try result.frames.flatMap(\.anyRows).map { "\($0)" }.sorted()
}

func multiset(_ rows: [[AnyHashable]]) -> [String] { rows.map { "\($0)" }.sorted() }

let shardCounts = [1, 2, 7, 64]

/// Unlimited memory, and a budget so small that every intermediate output spills to disk.
let memoryLimits = [Int.max, 1]

func session(_ limit: Int) -> Session {
  Session(executor: .local(procs: 2), memoryLimit: limit == Int.max ? nil : limit)
}

/// Where a property test runs its funcs: in this process, on in-process machines, or on
/// three worker processes of the `bigslice-testworker` binary. Every engine must give the
/// same answer.
enum Engine: String, CaseIterable, Sendable {
  case local, inProcess, processes
}

/// An engine and a memory limit (per machine on machines).
struct Setup: Sendable, CustomStringConvertible {
  let engine: Engine
  let limit: Int
  var description: String { "\(engine) \(limit == Int.max ? "unlimited" : "limit \(limit)")" }
}

/// The engines the property tests run on.
let testedEngines: [Engine] = Engine.allCases

let setups: [Setup] = testedEngines.flatMap { engine in memoryLimits.map { Setup(engine: engine, limit: $0) } }

/// The machine sessions, made once per engine and limit and kept for the test process: each
/// starts three machines.
private let machineSessions = Mutex<[String: Session]>([:])

/// A session for `setup`: a fresh local one, or the shared session on machines.
func session(_ setup: Setup) throws -> Session {
  TestFuncs.register()
  let limit = setup.limit == Int.max ? nil : setup.limit
  let system: MachineSystem
  switch setup.engine {
  case .local: return Session(executor: .local(procs: 2), memoryLimit: limit)
  case .inProcess: system = .inProcess
  case .processes: system = .system(LocalSystem(executable: try testWorkerBinary(), maxprocs: 2))
  }
  return machineSessions.withLock { sessions in
    if let s = sessions[setup.description] { return s }
    let s = Session(executor: .machines(system: system, count: 3, procs: 2), memoryLimit: limit)
    sessions[setup.description] = s
    return s
  }
}

func randomPairs(_ n: Int, keys: Int, seed: UInt64) -> ([Int], [Int]) {
  var rng = SplitMix64(seed: seed)
  return (
    (0..<n).map { _ in Int.random(in: 0..<keys, using: &rng) },
    (0..<n).map { _ in Int.random(in: -1000...1000, using: &rng) }
  )
}

@Suite(.engine) struct CombinatorTests {

  @Test(arguments: setups, shardCounts)
  func constSplitsEvenlyAndKeepsEveryRowInOrder(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let (k, v) = randomPairs(1000, keys: 50, seed: 1)
    let result = try await session.run(TestFuncs.constPairs, shards, k, v)
    #expect(try result.frames.flatMap(\.anyRows) == zip(k, v).map { [AnyHashable($0), AnyHashable($1)] })
    let rows = Array(try result.rows())
    #expect(rows.count == 1000 && rows[17].0 == k[17] && rows[17].1 == v[17])
  }

  @Test(arguments: setups, shardCounts)
  func mapFilterAndFlatMapEqualTheNaiveModel(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let (k, v) = randomPairs(3000, keys: 100, seed: 2)
    var expected: [[AnyHashable]] = []
    for (key, value) in zip(k, v) where (value * 2) % 3 != 0 {
      for i in 0..<(abs(value * 2) % 3) { expected.append([String(key), i]) }
    }
    #expect(try multiset(try await session.run(TestFuncs.mapFilterFlatMap, shards, k, v)) == multiset(expected))
  }

  @Test(arguments: setups, shardCounts)
  func headTakesTheFirstRowsOfEachShard(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let values = Array(0..<500)
    let result = try await session.run(TestFuncs.head, shards, values, 3)
    var expected: [Int] = []
    for s in 0..<shards { expected += values[(s * 500 / shards)..<((s + 1) * 500 / shards)].prefix(3) }
    #expect(Array(try result.rows()) == expected)
  }

  @Test(arguments: setups, shardCounts)
  func reduceWithAClosureAndBuiltInSumEqualADictionary(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let (k, v) = randomPairs(5000, keys: 300, seed: 3)
    var sums: [Int: Int] = [:]
    var maxes: [Int: Int] = [:]
    for (key, value) in zip(k, v) {
      sums[key, default: 0] += value
      maxes[key] = max(maxes[key] ?? .min, value)
    }
    let closure = try await session.run(TestFuncs.reduceClosure, shards, k, v)
    let builtIn = try await session.run(TestFuncs.reduceSum, shards, k, v)
    let maxed = try await session.run(TestFuncs.reduceMax, shards, k, v)
    for result in [closure, builtIn] {
      #expect(Dictionary(uniqueKeysWithValues: Array(try result.rows())) == sums)
    }
    #expect(Dictionary(uniqueKeysWithValues: Array(try maxed.rows())) == maxes)
    // Every key lands in exactly one shard.
    #expect(try closure.count == sums.count)
  }

  @Test(arguments: setups, shardCounts)
  func reduceGroupsStringAndBoxedKeys(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let words = (0..<2000).map { "w\($0 % 37)" }
    let counted = try await session.run(TestFuncs.countWords, shards, words)
    var reference: [String: Int] = [:]
    for w in words { reference[w, default: 0] += 1 }
    #expect(Dictionary(uniqueKeysWithValues: Array(try counted.rows())) == reference)

    let keys = (0..<1000).map { Pair(a: $0 % 7, b: "x\($0 % 3)") }
    let ones = Array(repeating: 1, count: 1000)
    let grouped = try await session.run(TestFuncs.reduceBoxed, shards, keys, ones)
    var expected: [Pair: Int] = [:]
    for key in keys { expected[key, default: 0] += 1 }
    #expect(Dictionary(uniqueKeysWithValues: Array(try grouped.rows())) == expected)
  }

  @Test(arguments: setups, shardCounts)
  func reshuffleAndReshardPutEachKeyInOneShard(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let (k, v) = randomPairs(3000, keys: 200, seed: 4)
    for result in [
      try await session.run(TestFuncs.reshuffle, shards, k, v),
      try await session.run(TestFuncs.reshard, shards, k, v, max(1, shards / 2 + 3)),
    ] {
      #expect(try multiset(result) == multiset(zip(k, v).map { [AnyHashable($0), AnyHashable($1)] }))
      var shardOf: [AnyHashable: Int] = [:]
      for shard in 0..<result.shards {
        for row in try result.frames(shard: shard).flatMap(\.anyRows) {
          #expect(shardOf[row[0], default: shard] == shard, "key \(row[0]) in shards \(shardOf[row[0]]!) and \(shard)")
          shardOf[row[0]] = shard
        }
      }
    }
  }

  @Test(arguments: setups, [1, 7])
  func typedAndVariadicRowCombinatorsEqualTheNaiveModel(setup: Setup, shards: Int) async throws {
    var rng = SplitMix64(seed: UInt64(shards) + 7)
    let pieces = ["", "a", "bé", "longer words"]
    let words = (0..<2000).map { _ in pieces.randomElement(using: &rng)! }
    let numbers = (0..<2000).map { _ in Int.random(in: -50...50, using: &rng) }
    var expected: [String] = []
    for (word, n) in zip(words, numbers) where n % 5 != 0 || word.isEmpty {
      let half = Double(n) / 2
      let (length, pair, big, loud) = (word.count, [n, n * 2], half > 10, word + "!")
      let value = pair[1] + length
      for i in 0..<(big ? 2 : 1) where (value + i) % 7 != 3 { expected.append("\(loud)\(value + i)".uppercased()) }
    }
    let result = try await session(setup).run(TestFuncs.rowShapes, shards, words, numbers)
    #expect(Array(try result.rows()).sorted() == expected.sorted())
  }

  /// A map from one to three columns returns at most four as a tuple; a fifth makes the whole
  /// tuple one column, which is an error that says what to write instead.
  @Test func aMapToFiveColumnsFromOneIsAClearError() async throws {
    let five = const(1, [1, 2]).map { (x: Int) in (x, x, x, x, x) }
    do {
      _ = try await Session(executor: .local(procs: 2)).run(five)
      Issue.record("a tuple of five values ran as one column")
    } catch {
      #expect("\(error)".contains("return a struct, or map in two steps"), "\(error)")
    }
  }

  @Test(arguments: setups, shardCounts)
  func repartitionSendsRowsWhereTheUserSays(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let values = Array(0..<400)
    let result = try await session.run(TestFuncs.repartition, shards, values)
    #expect(Array(try result.rows()).sorted() == values)
    for shard in 0..<shards {
      let values = try result.frames(shard: shard).flatMap { Array($0.columns[0].scalars(Int.self)) }
      #expect(values.allSatisfy { $0 % shards == shard })
    }
  }

  @Test(arguments: setups, shardCounts)
  func readerFuncKeepsPerShardStateUntilTheEnd(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let rows = Array(try (await session.run(TestFuncs.readerFunc, shards)).rows())
    #expect(rows.count == shards * 250)
    #expect(Set(rows.map(\.1)) == Set((0..<shards).flatMap { s in (s * 1000)..<(s * 1000 + 250) }))
  }
}

@Suite(.engine) struct SplitTests {
  /// The built-in split equals Swift's `split(separator:)` on random lines with runs of
  /// separators at either end, empty lines and multi-byte characters.
  @Test(arguments: setups, shardCounts)
  func splitEqualsSwiftsSplit(setup: Setup, shards: Int) async throws {
    var rng = SplitMix64(seed: UInt64(shards))
    let pieces = ["a", "bb", "ünï", "日本", "x y", " ", "  ", ""]
    let lines = (0..<3000).map { _ in
      (0..<Int.random(in: 0..<8, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }
    let session = try session(setup)
    let words = try await session.run(TestFuncs.split, shards, lines, " ")
    let expected = lines.flatMap { $0.split(separator: " ").map(String.init) }
    #expect(Array(try words.rows()).sorted() == expected.sorted())
    let commas = try await session.run(TestFuncs.split, shards, ["a,,b,", ",c", ""], ",")
    #expect(Array(try commas.rows()).sorted() == ["a", "b", "c"])
    await #expect(throws: BigsliceError.self) { try await session.run(TestFuncs.split, 1, ["a"], "é") }
  }

  /// `split()` cuts at runs of ASCII whitespace as Go's `strings.Fields` does: tabs, CRLF
  /// line ends, vertical tabs, form feeds and runs of spaces, at either end too; a no-break
  /// space (not ASCII) stays inside its word.
  @Test(arguments: setups, [1, 7])
  func splitCutsAtASCIIWhitespaceAsStringsFieldsDoes(setup: Setup, shards: Int) async throws {
    var rng = SplitMix64(seed: UInt64(shards) + 100)
    let pieces = ["a", "bb", "ünï", "日本", " ", "\t", "\r\n", "\u{0B}", "\u{0C}", "  \t ", "x\u{A0}y", ""]
    let lines = (0..<3000).map { _ in
      (0..<Int.random(in: 0..<10, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }
    let ascii: Set<UInt8> = [9, 10, 11, 12, 13, 32]
    let expected = lines.flatMap { line in
      line.utf8.split(whereSeparator: { ascii.contains($0) }).map { String(decoding: $0, as: UTF8.self) }
    }
    let words = try await session(setup).run(TestFuncs.fields, shards, lines)
    #expect(Array(try words.rows()).sorted() == expected.sorted())
    #expect(expected.contains("x\u{A0}y"))
    #expect(!expected.contains { $0.utf8.contains(where: ascii.contains) })
  }
}

@Suite(.engine) struct GroupingTests {

  @Test(arguments: setups, shardCounts)
  func cogroupEqualsANaiveJoinOfTwoAndThreeInputs(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let (ka, va) = randomPairs(2000, keys: 150, seed: 5)
    let (kb, vb) = randomPairs(1500, keys: 200, seed: 6)
    let b = (0..<kb.count).map { "b\(vb[$0])" }
    let result = try await session.run(TestFuncs.cogroup2, shards, ka, va, kb, b)
    #expect(result.shards == shards)
    var expectedA: [Int: [Int]] = [:]
    var expectedB: [Int: [String]] = [:]
    for (k, v) in zip(ka, va) { expectedA[k, default: []].append(v) }
    for (k, v) in zip(kb, b) { expectedB[k, default: []].append(v) }
    let rows = Array(try result.rows())
    #expect(rows.count == Set(ka).union(kb).count)
    for (key, avalues, bvalues) in rows {
      #expect(avalues.sorted() == (expectedA[key] ?? []).sorted())
      #expect(bvalues.sorted() == (expectedB[key] ?? []).sorted())
    }
    // A join is the cross product per key: W3's count.
    let joined = rows.reduce(0) { $0 + $1.1.count * $1.2.count }
    #expect(joined == expectedA.reduce(0) { $0 + $1.value.count * (expectedB[$1.key]?.count ?? 0) })

    let three = try await session.run(TestFuncs.cogroup3, shards, ka, va, kb, vb)
    let byKey = Dictionary(uniqueKeysWithValues: Array(try three.rows()).map { ($0.0, ($0.1, $0.2, $0.3)) })
    #expect(byKey[999]?.2 == ["z"] && byKey[999]?.0 == [])
    #expect(byKey[1]?.2.sorted() == ["x", "y"])
  }

  /// Results passed to funcs: regrouped and joined, on every engine (on machines the
  /// results stay on the machines that hold them), and again after the first is discarded.
  @Test(arguments: setups, [1, 7])
  func resultsPassedToFuncsAreReadWhereTheyAre(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let (k, v) = randomPairs(3_000, keys: 200, seed: 41)
    let sums = try await session.run(TestFuncs.reduceSum, shards, k, v)
    let maxima = try await session.run(TestFuncs.reduceMax, shards, k, v)
    var sumByKey: [Int: Int] = [:]
    var maxByKey: [Int: Int] = [:]
    for (key, value) in zip(k, v) {
      sumByKey[key, default: 0] += value
      maxByKey[key] = max(maxByKey[key] ?? .min, value)
    }
    var regrouped: [Int: Int] = [:]
    for (key, sum) in sumByKey { regrouped[key % 7, default: 0] += sum * 3 }
    for round in 0..<2 {
      let got = try await session.run(TestFuncs.resultRegrouped, sums, 7, 3)
      #expect(Dictionary(uniqueKeysWithValues: Array(try got.rows())) == regrouped, "round \(round)")
      // Computed again from its func, where its machines hold it.
      sums.discard()
    }
    let joined = Array(try (await session.run(TestFuncs.resultsJoined, sums, maxima)).rows())
    #expect(joined.count == sumByKey.count)
    for (key, a, b) in joined {
      #expect(a == [sumByKey[key]!] && b == [maxByKey[key]!], "key \(key)")
    }
  }

  /// A func body that reads a result argument's rows works in-process; on machines, whose
  /// funcs see a result only as a slice, the run fails saying so.
  @Test(arguments: setups.filter { $0.limit == Int.max })
  func aFuncReadingAResultsRowsFailsOnMachines(setup: Setup) async throws {
    let session = try session(setup)
    let result = try await session.run(TestFuncs.constPairs, 2, [1, 2, 3], [4, 5, 6])
    do {
      let counted = Array(try (await session.run(TestFuncs.resultRowsInBody, result)).rows())
      #expect(setup.engine == .local, "the rows were read in a func on machines")
      #expect(counted == [3])
    } catch {
      #expect(setup.engine != .local, "\(error)")
      #expect("\(error)".contains("may use a result argument only as a slice"), "\(error)")
    }
  }

  /// Inputs far beyond a tiny limit are split into hash buckets on disk and cogrouped bucket
  /// by bucket; a key heavier than any bucket is split level after level until the last
  /// level holds it in memory. String keys and values take the generic path, Int the
  /// specialised one; boxed keys the sort-merge fallback.
  @Test func aCogroupBeyondTheLimitSpillsBucketsAndIsStillExact() async throws {
    let tight = Session(executor: .local(procs: 2), memoryLimit: 1)
    var (ka, va) = randomPairs(120_000, keys: 30_000, seed: 8)
    ka += [Int](repeating: -1, count: 40_000)
    va += Array(0..<40_000)
    let (kb, vb) = randomPairs(90_000, keys: 40_000, seed: 9)
    let sb = vb.map { "v\($0)" }
    let grouped: Slice<Int, [Int], [String]> = cogroup(const(3, ka, va), const(2, kb, sb))
    let rows = Array(try (await tight.run(grouped)).rows())
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
    let named = Array(try (await tight.run(byName)).rows())
    #expect(named.count == Set(names).union(kb.map { "k\($0)" }).count)
    #expect(named.first { $0.0 == "k-1" }?.1.count == 40_000)

    let pairs = ka.prefix(20_000).map { Pair(a: $0 % 500, b: "p") }
    let byPair: Slice<Pair, [Int], [Int]> = cogroup(
      const(2, pairs, Array(va.prefix(20_000))), const(1, [Pair(a: 7, b: "p")], [1]))
    let paired = Array(try (await tight.run(byPair)).rows())
    #expect(paired.count == Set(pairs).count)
    #expect(paired.reduce(0) { $0 + $1.1.count } == 20_000)
    #expect(paired.first { $0.0 == Pair(a: 7, b: "p") }?.2 == [1])
  }

  @Test(arguments: setups, shardCounts)
  func foldKeepsArrivalOrderPerKey(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    let keys = (0..<600).map { $0 % 13 }
    let values = Array(0..<600)
    let folded = try await session.run(TestFuncs.foldLists, shards, keys, values)
    for (key, list) in try folded.rows() {
      #expect(list == values.filter { $0 % 13 == key })
    }
  }
}

@Suite(.engine) struct PassThroughTests {
  /// The writer's counts travel in the metrics, summed over the tasks wherever they ran.
  @Test(arguments: setups, shardCounts)
  func writerFuncSeesEveryRowThenTheEnd(setup: Setup, shards: Int) async throws {
    let values = Array(0..<1000)
    let result = try await session(setup).run(TestFuncs.writerFunc, shards, values)
    #expect(try result.count == 1000)
    #expect(result.metrics["rows"] == 1000)
    #expect(result.metrics["bad"] == nil)
    #expect(result.metrics["ends"] == shards)
  }

  @Test(arguments: setups, shardCounts)
  func distinctKeepsEachRowOnce(setup: Setup, shards: Int) async throws {
    let (k, v) = randomPairs(4000, keys: 30, seed: 7)
    let small = v.map { $0 % 4 }
    let result = try await session(setup).run(TestFuncs.distinct, shards, k, small)
    let expected = Set(zip(k, small).map { "\([AnyHashable($0), AnyHashable($1)])" })
    #expect(try multiset(result) == expected.sorted())
    #expect(result.schema.prefix == 1)
  }

  @Test func unwrapResetsThePrefix() async throws {
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
