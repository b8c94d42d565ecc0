import Bigmachine
import BigsliceTestFuncs
import Foundation
import Frame
import SliceIO
import Testing

@testable import Bigslice

/// Registered in the test process only: the worker binary does not have it.
let driverOnly = Func("tests.driverOnly") { (n: Int) in const(1, Array(0..<n)) }

/// The `bigslice-testworker` binary, built beside the test bundle.
func testWorkerBinary() throws -> String {
  let exe = try #require(Bundle.main.executablePath.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
  let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("bigslice-testworker").path
  try #require(FileManager.default.isExecutableFile(atPath: path), "no bigslice-testworker binary at \(path)")
  return path
}

@Suite(.serialized, .engine) struct MachineTests {
  /// Sessions made, used and shut down one after another on one in-process machine: each
  /// session's worker state, compiled tasks and store come and go with it.
  @Test func sessionsComeAndGoOnInProcessMachines() async throws {
    TestFuncs.register()
    let (k, v) = randomPairs(20_000, keys: 500, seed: 11)
    var sums: [Int: Int] = [:]
    for (key, value) in zip(k, v) { sums[key, default: 0] += value }
    for round in 0..<4 {
      let session = Session(executor: .machines(system: .inProcess, count: 1, procs: 1))
      for shards in [1, 3] {
        let result = try await session.run(TestFuncs.reduceSum, shards, k, v)
        var got: [Int: Int] = [:]
        for (key, sum) in try result.rows() { got[key] = sum }
        #expect(got == sums, "round \(round), \(shards) shards")
      }
      session.shutdown()
    }
  }

  /// The bytes the machines' tasks spill count in the session's `spilledBytes`, as they do in
  /// one process; without a limit nothing spills.
  @Test func spillsOnTheMachinesCountInTheSessionsFigure() async throws {
    TestFuncs.register()
    let (k, v) = randomPairs(20_000, keys: 5_000, seed: 12)
    var sums: [Int: Int] = [:]
    for (key, value) in zip(k, v) { sums[key, default: 0] += value }
    for limit in [nil, 1] as [Int?] {
      let session = Session(executor: .machines(system: .inProcess, count: 2, procs: 2), memoryLimit: limit)
      defer { session.shutdown() }
      let result = try await session.run(TestFuncs.reduceSum, 4, k, v)
      #expect(Dictionary(uniqueKeysWithValues: Array(try result.rows())) == sums)
      if limit == nil {
        #expect(session.spilledBytes == 0)
      } else {
        #expect(session.spilledBytes > 0, "the machines spilled under a 1-byte limit")
      }
    }
  }

  /// The combiners' spills and bypasses on the machines count in the session's figures too,
  /// as many as the same job makes in one process with as many threads per task.
  @Test func combinerSpillsOnTheMachinesCountInTheSessionsFigures() async throws {
    TestFuncs.register()
    let n = 300_000
    let (k, v) = (Array((0..<n).map { ($0 &* 7_919) % n }), Array(repeating: 1, count: n))
    var figures: [[Int]] = []
    for executor in [.local(procs: 2), .machines(system: .inProcess, count: 1, procs: 2)] as [Executor] {
      let session = Session(executor: executor, memoryLimit: 1)
      defer { session.shutdown() }
      let result = try await session.run(TestFuncs.reduceSum, 2, k, v)
      #expect(try result.count == n)
      figures.append([session.spilledRuns, session.combinerBypasses])
    }
    #expect(figures[0][0] > 0, "nothing spilled in one process: \(figures)")
    #expect(figures[0][1] > 0, "no combiner was bypassed in one process: \(figures)")
    #expect(figures[1] == figures[0])
  }

  /// A session of `count` in-process machines and the result of its reduce of 20,000 random
  /// pairs over `shards` shards, checked against a dictionary. The caller shuts it down (unless
  /// the run throws).
  func reduceOnMachines(count: Int, shards: Int, seed: UInt64) async throws -> (Session, SliceResult<Int, Int>) {
    TestFuncs.register()
    let (k, v) = randomPairs(20_000, keys: 500, seed: seed)
    let session = Session(executor: .machines(system: .inProcess, count: count, procs: 2))
    let result: SliceResult<Int, Int>
    do {
      result = try await session.run(TestFuncs.reduceSum, shards, k, v)
    } catch {
      session.shutdown()
      throw error
    }
    var sums: [Int: Int] = [:]
    for (key, value) in zip(k, v) { sums[key, default: 0] += value }
    #expect(Dictionary(uniqueKeysWithValues: Array(try result.rows())) == sums)
    return (session, result)
  }

  /// A machine is told where each upstream output is once, not once per task that reads
  /// it: a 64-shard shuffle on 2 machines sends about 64 locations to each, not 64 × 64.
  @Test func eachUpstreamLocationIsSentToAMachineOnce() async throws {
    let shards = 64
    let (session, _) = try await reduceOnMachines(count: 2, shards: shards, seed: 13)
    defer { session.shutdown() }
    let handles = try #require(session.remote?.handles)
    let sent = handles.reduce(0) { $0 + $1.sentLocations.load(ordering: .relaxed) }
    // Each machine may hear of each of the 64 map outputs once, and again from concurrent
    // runs before the first is confirmed: far below one per (reduce task, map output).
    #expect(sent > 0 && sent <= 2 * shards * 2, "\(sent) locations sent")
  }

  /// Outputs the driver lets go are deleted from the machine's store, in batched calls: the
  /// shuffle's map outputs when the job is done, the result's when it is discarded.
  @Test func outputsLetGoAreDeletedInBatches() async throws {
    let shards = 8
    let (session, result) = try await reduceOnMachines(count: 1, shards: shards, seed: 12)
    defer { session.shutdown() }
    let machine = try #require(session.machines.first)
    let store = try await machine.call("Bigslice.storePath", true, returning: String.self)
    func files() throws -> Int {
      try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasPrefix("output") }.count
    }
    func waitFor(_ what: String, _ done: () throws -> Bool) async throws {
      let deadline = ContinuousClock.now + .seconds(20)
      while try !done() {
        guard ContinuousClock.now < deadline else {
          Issue.record("\(what): \(try files()) files left in \(store)")
          return
        }
        try await Task.sleep(for: .milliseconds(20))
      }
    }
    // The map side's outputs go; the result's 8 shards stay.
    try await waitFor("the map outputs are deleted") { try files() <= shards }
    #expect(try files() > 0, "the result's outputs are kept")
    result.discard()
    try await waitFor("the result's outputs are deleted") { try files() == 0 }
    let calls = try #require(session.remote?.handles.first).discardCalls.load(ordering: .relaxed)
    #expect(calls >= 1 && calls <= 4, "\(calls) discard calls for \(2 * shards) outputs")
  }

  /// Lists read back from a machine stay packed, and the row getter builds each row's list
  /// from them, slices included.
  @Test func packedListsReadBackAreReadRowByRow() async throws {
    let lists: [[Int]] = (0..<500).map { i in Array(0..<(i % 7)).map { $0 * i } }
    let frame = try Frame([Column([Int](0..<500)), Column(boxed: lists)], prefix: 1)
    let bytes = try encodeBlocks([frame])
    let back = try #require(try decodeBlocks(bytes, schema: frame.schema, name: "test"))
    #expect(back.columns[1].packedLists(as: [Int].self) != nil)
    #expect(back.columns[1].packedLists(as: [Double].self) == nil)
    for (column, range) in [(back.columns[1], 0..<500), (back.columns[1].slice(123..<321), 123..<321)] {
      let getter = ColumnGetter<[Int]>(column)
      withExtendedLifetime(column) {
        #expect((0..<range.count).map(getter.get) == Array(lists[range]))
      }
    }
  }

  /// A worker's failure travels as a typed detail, however long its list of lost tasks (a
  /// message was cut at 1000 characters).
  @Test func aWorkersFailureTravelsTypedWithEveryLostTask() async throws {
    let refs = (0..<3000).map { TaskRef(invocation: 2, index: $0) }
    let failures: [WorkerFailure] = [
      .lostInput(upstream: refs, cause: "a peer died"), .taskFailed(op: "map@x.swift:3", shard: 7, message: "boom"),
      .compile("func f is not registered"), .missing("no output"),
    ]
    for failure in failures {
      let sent = failure.serviceError
      #expect(sent.kind == WorkerFailure.kind)
      let received = BigmachineError.remote(
        address: "m", method: "Bigslice.run", kind: sent.kind, message: sent.message, temporary: false,
        detail: sent.detail)
      #expect(received.detail(as: WorkerFailure.self) == failure)
    }
  }

  /// A worker's words reach the driver bounded and free of control characters, as any text
  /// from a peer: a user error that prints a whole row, or a terminal escape, stays out.
  @Test func aWorkersFailureTextIsBoundedAndClean() throws {
    let sent = WorkerFailure.taskFailed(
      op: "map@x.swift:3", shard: 1, message: "\u{1B}[2J" + String(repeating: "x", count: 300_000)
    ).serviceError
    let received = BigmachineError.remote(
      address: "m", method: "Bigslice.run", kind: sent.kind, message: sent.message, temporary: false,
      detail: sent.detail)
    guard case .taskFailed(_, _, let message)? = received.detail(as: WorkerFailure.self)?.bounded else {
      Issue.record("no task failure in \(received)")
      return
    }
    #expect(message.unicodeScalars.count == 1024)
    #expect(message.hasPrefix("\u{FFFD}[2Jxxx") && message.hasSuffix("x\u{2026}"))
    #expect((sent.detail?.utf8.count ?? .max) < 10_000)
  }

  /// A machine builds a result argument only over a run whose columns are the result's.
  @Test func aResultArgumentOfOtherColumnsIsRefused() async throws {
    var compiler = Compiler(invocation: 1)
    let roots = compiler.compile(const(2, [1, 2, 3], [4, 5, 6]).node)
    let use = ResultOnMachine()
    #expect(try SliceResult<Int, Int>.onMachine(roots, use: use) is SliceResult<Int, Int>)
    do {
      _ = try SliceResult<Int, String>.onMachine(roots, use: use)
      Issue.record("a result of (Int, String) was built over an (Int, Int) run")
    } catch {
      #expect("\(error)".contains("refers to a run whose slice has columns"), "\(error)")
    }
  }

  /// A func the worker binary lacks fails when invoked, and the error names it.
  @Test func aFuncMissingOnTheWorkersFailsNamingIt() async throws {
    TestFuncs.register()
    _ = driverOnly
    let system = LocalSystem(executable: try testWorkerBinary(), maxprocs: 1)
    let session = Session(executor: .machines(system: .system(system), count: 1, procs: 1))
    defer { session.shutdown() }
    do {
      _ = try await session.run(driverOnly, 10)
      Issue.record("the job ran on a worker that lacks its func")
    } catch {
      #expect(
        "\(error)".contains("func tests.driverOnly is registered in the driver but not on this machine"), "\(error)")
    }
    // The session still runs the funcs its workers have.
    #expect(Array(try (await session.run(TestFuncs.head, 2, Array(0..<10), 2)).rows()) == [0, 1, 5, 6])
  }

  /// Funcs registered under one key with other signatures stop the machine at start, listing
  /// them; funcs registered on one side only do not.
  @Test func aRegistryMismatchListsTheDifferingFuncs() async {
    let driver = ["a: (Int) -> Slice<Int>", "b: (String) -> Slice<Int>", "c: (Int) -> Slice<Int>"]
    let worker = ["a: (Int) -> Slice<Int>", "b: (Int) -> Slice<Int>", "d: (Int) -> Slice<Int>"]
    let mismatch = RegistryMismatch(driver: driver, worker: worker)
    #expect(mismatch.differing.map(\.key) == ["b"])
    #expect(mismatch.onlyInDriver == ["c"])
    #expect(
      "\(mismatch)".contains("b: (String) -> Slice<Int> in the driver, b: (Int) -> Slice<Int> in the worker"),
      "\(mismatch)")
    #expect(RegistryMismatch(driver: driver, worker: driver + ["e: (Int) -> Slice<Int>"]).differing.isEmpty)
  }
}
