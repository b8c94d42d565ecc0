import Bigslice
import Frame
import Testing

#if canImport(Glibc)
  import Glibc
#endif

struct Boom: Error, CustomStringConvertible {
  var description: String { "boom" }
}

let sumByKey = Func("tests.sumByKey") { (n: Int, shards: Int) in
  const(shards, (0..<n).map { $0 % 10 }, Array(repeating: 1, count: n)).reduce(.sum)
}

let duplicateA = Func("tests.duplicate") { (n: Int) in const(1, Array(0..<n)) }
let duplicateB = Func("tests.duplicate") { (n: Int) in const(1, Array(0..<n)) }

/// Nothing Bigslice exports shadows the standard library: in a file that imports it,
/// `Result` and `Task` are Swift's, unqualified (this file would not compile otherwise).
@Test func theStandardLibrarysResultAndTaskNeedNoQualifier() async throws {
  let ok: Result<Int, any Error> = .success(3)
  let failed: Result<Int, any Error> = .failure(CancellationError())
  #expect(try ok.get() == 3)
  #expect(throws: CancellationError.self) { try failed.get() }
  #expect(await Task { 4 }.value == 4)
}

@Suite(.engine) struct SessionTests {
  let session = Session(executor: .local(procs: 2))

  @Test func aRegisteredFuncRunsWithItsArguments() async throws {
    let result = try await session.run(sumByKey, 1000, 3)
    #expect(
      Dictionary(uniqueKeysWithValues: Array(try result.rows()))
        == Dictionary(uniqueKeysWithValues: (0..<10).map { ($0, 100) }))
    #expect(FuncRegistry.fingerprint.contains { $0.hasPrefix("tests.sumByKey: (Int, Int)") })
  }

  @Test func wrongArgumentTypesAreAClearError() async {
    let error = await #expect(throws: BigsliceError.self) { try await session.run(sumByKey, "1000", 3) }
    #expect(error?.description.contains("takes (Int, Int), but was run with (String, Int)") == true)
    await #expect(throws: BigsliceError.self) { try await session.run(sumByKey, 1000) }
  }

  @Test func twoFuncsUnderOneKeyAreAnError() async {
    // Globals are initialised lazily: touch both, as a program registers its funcs at start.
    _ = (duplicateA, duplicateB)
    let error = await #expect(throws: BigsliceError.self) { try await session.run(duplicateA, 3) }
    #expect(error?.description.contains("tests.duplicate") == true)
  }

  @Test func aThrowingClosureFailsTheJobNamingTheOperationAndShard() async {
    let slice = const(4, Array(0..<100)).map { (v: Int) throws -> Int in
      if v == 77 { throw Boom() }
      return v
    }
    let error = await #expect(throws: BigsliceError.self) { try await session.run(slice) }
    let text = error?.description ?? ""
    #expect(text.contains("map@") && text.contains("shard 3") && text.contains("boom"), "\(text)")
  }

  @Test func aThrowInTheMiddleOfAPipelineNamesThatOperation() async {
    let slice = const(2, Array(0..<50))
      .filter { (v: Int) throws -> Bool in
        if v == 40 { throw Boom() }
        return true
      }
      .map { (v: Int) in v * 2 }
    let error = await #expect(throws: BigsliceError.self) { try await session.run(slice) }
    let text = error?.description ?? ""
    #expect(text.contains("filter@") && text.contains("shard 1") && text.contains("boom"), "\(text)")
  }

  @Test func invalidArgumentsAreReportedBeforeAnythingRuns() async {
    await #expect(throws: BigsliceError.self) { try await session.run(const(0, [1, 2])) }
    await #expect(throws: BigsliceError.self) { try await session.run(const(2, [1, 2]).head(-1)) }
    await #expect(throws: BigsliceError.self) { try await session.run(const(2, [1, 2], [3])) }
    await #expect(throws: BigsliceError.self) { try await session.run(const(2, ["a"], [1]).reduce(.sum).reshard(0)) }
  }

  @Test func aTinyMemoryLimitSpillsAndTheSpillFilesGoWithTheSession() async throws {
    var path: String?
    do {
      let small = Session(executor: .local(procs: 2), memoryLimit: 16)
      let result = try await small.run(sumByKey, 20_000, 4)
      #expect(
        Dictionary(uniqueKeysWithValues: Array(try result.rows()))
          == Dictionary(uniqueKeysWithValues: (0..<10).map { ($0, 2000) })
      )
      #expect(small.spilledBytes > 0)
      path = small.spillPath
      #expect(path.map { access($0, F_OK) == 0 } == true)
    }
    // The last references go with the worker threads' closures, a moment after run returns.
    var gone = false
    for _ in 0..<200 where !gone {
      gone = path.map { access($0, F_OK) != 0 } ?? false
      if !gone { usleep(10_000) }
    }
    #expect(gone, "the spill directory outlived its session")
  }

  @Test func anUnwritableSpillDirectoryIsAClearError() async {
    let small = Session(executor: .local(procs: 2), memoryLimit: 1, spillDirectory: "/nonexistent/spill")
    let error = await #expect(throws: (any Error).self) { try await small.run(sumByKey, 1000, 2) }
    #expect("\(error!)".contains("/nonexistent/spill"))
  }

  @Test func aRepartitionToAShardOutOfRangeIsAnError() async {
    await #expect(throws: BigsliceError.self) { try await session.run(const(2, [1, 2, 3]).repartition { n, _ in n }) }
  }
}

@Suite(.engine) struct CombinerSpillTests {
  /// Keys that barely repeat within a map task make map-side combining not worth its table:
  /// under a limit the combiner gives up at its first drain and the rest passes through,
  /// and the answer is the same. Keys that repeat a lot keep being combined.
  @Test func mapSideCombiningIsBypassedOnlyWhenKeysBarelyRepeat() async throws {
    func job(rows: Int, keys: Int) -> Slice<Int, Int> {
      readerFunc(4, initial: { _ in 0 }) { (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
        let stop = min(next + 10_000, rows)
        while next < stop {
          let i = UInt64(shard * rows + next)
          out.emit(Int(splitmix64(i) % UInt64(keys)), Int(splitmix64(i &+ 99) % 100))
          next += 1
        }
        return next < rows
      }.reduce(.sum)
    }
    for (keys, bypass) in [(1_000_000, true), (500, false)] {
      let tight = Session(executor: .local(procs: 2), memoryLimit: 1)
      let result = Dictionary(uniqueKeysWithValues: try (await tight.run(job(rows: 60_000, keys: keys))).rows())
      var expected: [Int: Int] = [:]
      for shard in 0..<4 {
        for next in 0..<60_000 {
          let i = UInt64(shard * 60_000 + next)
          expected[Int(splitmix64(i) % UInt64(keys)), default: 0] += Int(splitmix64(i &+ 99) % 100)
        }
      }
      #expect(result == expected)
      #expect((tight.combinerBypasses > 0) == bypass, "\(keys) keys: \(tight.combinerBypasses) bypasses")
    }
  }

  /// Without a memory limit, the map tasks of one shuffle share what combining achieved: once
  /// two tasks found their keys barely repeat, later tasks pass their rows through (but for a
  /// probe now and then), and the answer is the reduce side's all the same. Keys that repeat
  /// keep every task combining.
  @Test func mapTasksSkipCombiningOnceTheTasksBeforeFoundKeysBarelyRepeat() async throws {
    let shards = 24
    func job(keys: Int) -> Slice<Int, Int> {
      readerFunc(shards, initial: { _ in 0 }) { (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
        let stop = min(next + 1_000, 3_000)
        while next < stop {
          let i = UInt64(shard * 3_000 + next)
          out.emit(Int(splitmix64(i) % UInt64(keys)), Int(splitmix64(i &+ 7) % 100))
          next += 1
        }
        return next < 3_000
      }.reduce(.sum)
    }
    for (keys, skips) in [(1 << 40, true), (50, false)] {
      let session = Session(executor: .local(procs: 2))
      let result = Dictionary(uniqueKeysWithValues: try (await session.run(job(keys: keys))).rows())
      var expected: [Int: Int] = [:]
      for i in 0..<UInt64(shards * 3_000) {
        expected[Int(splitmix64(i) % UInt64(keys)), default: 0] += Int(splitmix64(i &+ 7) % 100)
      }
      #expect(result == expected, "\(keys) keys")
      if skips {
        // All but the first two reports (two more may start before those end) and a probe in
        // every eight tasks pass through.
        #expect(session.combinerBypasses >= shards - 2 - 2 - shards / 8, "\(keys) keys")
        #expect(session.combinerBypasses < shards, "some tasks still combine")
      } else {
        #expect(session.combinerBypasses == 0, "\(keys) keys: \(session.combinerBypasses) bypasses")
      }
    }
  }

  /// A map task whose output fills exactly one run under a limit (four frames of 16,384 rows
  /// of 16 bytes: the 1 MiB run size of a 1-byte limit) keeps that run as its file; one row
  /// fewer or more, or two runs, takes the other paths. Every row arrives either way.
  @Test(arguments: [65_535, 65_536, 65_537, 131_072])
  func anOutputOfExactlyOneRunIsThatRun(rows: Int) async throws {
    let session = Session(executor: .local(procs: 2), memoryLimit: 1)
    let keys = (0..<rows).map { Int(splitmix64(UInt64($0)) % 1_000_000) }
    let result = try await session.run(const(1, keys, Array(0..<rows)).reshard(4))
    let got = Array(try result.rows()).sorted { $0.1 < $1.1 }
    #expect(got.count == rows)
    #expect(got.map(\.0) == keys)
    #expect(got.map(\.1) == Array(0..<rows))
  }

  /// 60K distinct keys: the combiners outgrow their 256 KiB share of a 1-byte limit many
  /// times; map-side they pass what they hold on as output, reduce-side they spill it into hash
  /// buckets that are combined one by one (splitting again, level by level).
  @Test(arguments: [Combiner.Aggregate.sum, .min, .max])
  func builtInReduceSpillsRunsAndMergesThemBack(aggregate: Combiner.Aggregate) async throws {
    var rng = SplitMix64(seed: 31)
    let keys = (0..<240_000).map { _ in Int.random(in: 0..<60_000, using: &rng) }
    let ints = (0..<240_000).map { _ in Int.random(in: -1000...1000, using: &rng) }
    let doubles = ints.map { Double($0) / 4 }
    let tight = Session(executor: .local(procs: 2), memoryLimit: 1)
    let intResult = Dictionary(
      uniqueKeysWithValues: try (await tight.run(const(3, keys, ints).reduce(aggregate))).rows())
    let doubleResult = Dictionary(
      uniqueKeysWithValues: try (await tight.run(const(3, keys.map { "k\($0)" }, doubles).reduce(aggregate))).rows())
    #expect(tight.spilledRuns > 4, "the combiners should have spilled runs")
    var intExpected: [Int: Int] = [:]
    var doubleExpected: [String: Double] = [:]
    for (i, k) in keys.enumerated() {
      let (x, d) = (ints[i], doubles[i])
      switch aggregate {
      case .min:
        intExpected[k] = min(intExpected[k] ?? .max, x)
        doubleExpected["k\(k)"] = min(doubleExpected["k\(k)"] ?? .infinity, d)
      case .max:
        intExpected[k] = max(intExpected[k] ?? .min, x)
        doubleExpected["k\(k)"] = max(doubleExpected["k\(k)"] ?? -.infinity, d)
      default:
        intExpected[k, default: 0] += x
        doubleExpected["k\(k)", default: 0] += d
      }
    }
    #expect(intResult == intExpected)
    #expect(doubleResult == doubleExpected)
  }
}

@Suite(.engine) struct ReviewRegressionTests {
  @Test func foldOnAWiderKeyIsAClearError() async {
    let slice = const(2, [1, 1], [2, 3]).prefixed(2)
    let session = Session(executor: .local(procs: 2))
    await #expect(throws: BigsliceError.self) { try await session.run(slice.fold(0) { (a: Int, v: Int) in a + v }) }
  }

  @Test func argumentsMatchByDeclaredTypeNotDynamicType() async throws {
    let f = Func("tests.existential") { (value: any Sendable) in const(1, [String(describing: value)]) }
    let session = Session(executor: .local(procs: 2))
    let value: any Sendable = 42
    #expect(Array(try (await session.run(f, value)).rows()) == ["42"])
  }

  @Test func aNonSeekableFileIsAnErrorNotACrash() async throws {
    let session = Session(executor: .local(procs: 2))
    // A FIFO cannot seek: the reader must fail cleanly (and free what it holds once).
    let path = "/tmp/bigslice-fifo-\(getpid())"
    unlink(path)
    try #require(mkfifo(path, 0o600) == 0)
    defer { unlink(path) }
    let writer = open(path, O_RDWR | O_NONBLOCK)  // keeps the FIFO's read side from blocking
    defer { close(writer) }
    await #expect(throws: (any Error).self) { try await session.run(scanReader(2, paths: [path])) }
  }
}

@Suite(.engine) struct AsyncResultTests {
  @Test func aResultIsAlsoAnAsyncSequenceOfTypedRows() async throws {
    let session = Session(executor: .local(procs: 2))
    let result = try await session.run(const(3, [1, 2, 3, 4], ["a", "b", "c", "d"]))
    var rows: [String] = []
    // `for await` over a pack-typed element does not compile on Swift 6.3; the iterator does.
    var iterator = result.makeAsyncIterator()
    while let row = try await iterator.next() { rows.append("\(row.0)\(row.1)") }
    #expect(rows == ["1a", "2b", "3c", "4d"])
  }
}

@Suite(.engine) struct MetricsTests {
  @Test(arguments: [1, 7])
  func countersIncrementedInUserCodeAreMergedIntoTheResult(shards: Int) async throws {
    let session = Session(executor: .local(procs: 2))
    let slice = const(shards, Array(0..<1000)).filter { (v: Int) in
      let odd = v % 2 == 1
      TaskContext.current?.increment(odd ? "odd" : "even")
      return odd
    }
    let result = try await session.run(slice)
    #expect(try result.count == 500)
    #expect(result.metrics == ["odd": 500, "even": 500])
    #expect(TaskContext.current == nil)
  }
}
