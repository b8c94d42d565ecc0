import Bigmachine
import BigsliceTestFuncs
import Dispatch
import Foundation
import Synchronization
import Testing
import Workloads

@testable import Bigslice

/// Jobs on three worker processes that lose one of them (SIGKILL) mid-job: each answer must
/// still equal the naive reference, with no row lost or duplicated.
@Suite(.serialized, .engine) struct ChaosTests {
  static let rows = 10_000_000
  static let keys = 100_000
  static let cogroupRows = 1_000_000
  static let cogroupKeys = 100_000
  static let shards = 12

  /// The sum of the values of each key of the W1-shaped table, nil for a key with no row.
  static let reduceReference: [Int?] = {
    var sums = [Int?](repeating: nil, count: keys)
    for i in 0..<rows {
      let (key, value) = Workloads.row(i, keys: keys, seed: 0)
      sums[key] = (sums[key] ?? 0) + value
    }
    return sums
  }()

  /// Per key: rows and value sums of each side of the cogroup.
  static let cogroupReference: [[Int]] = {
    var out = [[Int]](repeating: [0, 0, 0, 0], count: cogroupKeys)
    for i in 0..<cogroupRows {
      let (ka, va) = Workloads.row(i, keys: cogroupKeys, seed: 0)
      out[ka][0] += 1
      out[ka][1] += va
      let (kb, vb) = Workloads.row(i, keys: cogroupKeys, seed: 1 << 50)
      out[kb][2] += 1
      out[kb][3] += vb
    }
    return out
  }()

  /// A session on 3 worker processes, two procs each; their stores go under `stores` when
  /// given, and its trace to `trace`.
  func processes(stores: String? = nil, trace: String? = nil) throws -> Session {
    TestFuncs.register()
    let system = LocalSystem(executable: try testWorkerBinary(), maxprocs: 2)
    return Session(
      executor: .machines(system: .system(system), count: 3, procs: 2), spillDirectory: stores, tracePath: trace)
  }

  /// The machines' store directories under `parent`.
  func stores(in parent: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: parent).filter { $0.hasPrefix("bigslice-store-") }
  }

  /// A file name no worker has made yet: the chaos funcs kill the first worker to make it.
  func marker() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("bigslice-chaos-\(UUID().uuidString)").path
  }

  /// Reads every row of a reduce result, checking each key once, against the reference.
  func checkReduce(_ rows: some Sequence<(Int, Int)>) {
    var seen = [Bool](repeating: false, count: Self.keys)
    var wrong = 0
    var duplicated = 0
    var count = 0
    for (key, sum) in rows {
      count += 1
      if seen[key] { duplicated += 1 }
      seen[key] = true
      if Self.reduceReference[key] != sum { wrong += 1 }
    }
    let expected = Self.reduceReference.filter { $0 != nil }.count
    #expect(
      count == expected && duplicated == 0 && wrong == 0,
      "\(count) rows of \(expected), \(duplicated) duplicated, \(wrong) wrong")
  }

  func checkCogroup(_ result: SliceResult<Int, Int, Int, Int, Int>) throws {
    var seen = [Bool](repeating: false, count: Self.cogroupKeys)
    var wrong = 0
    var duplicated = 0
    var count = 0
    for (key, na, sa, nb, sb) in try result.rows() {
      count += 1
      if seen[key] { duplicated += 1 }
      seen[key] = true
      if Self.cogroupReference[key] != [na, sa, nb, sb] { wrong += 1 }
    }
    let expected = Self.cogroupReference.filter { $0[0] + $0[2] > 0 }.count
    #expect(
      count == expected && duplicated == 0 && wrong == 0,
      "\(count) rows of \(expected), \(duplicated) duplicated, \(wrong) wrong")
  }

  /// A worker killed mid-shuffle (SIGKILL: it cleans nothing up) is replaced, and its
  /// replacement removes the dead worker's store before it starts; the others remove theirs
  /// when the session shuts down.
  @Test(arguments: [ChaosPoint.map, .reduce])
  func aReduceSurvivesAWorkerKilled(in point: ChaosPoint) async throws {
    let parent = FileManager.default.temporaryDirectory.appendingPathComponent("bigslice-stores-\(UUID())").path
    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: parent) }
    let session = try processes(stores: parent)
    defer { session.shutdown() }
    let marker = marker()
    defer { try? FileManager.default.removeItem(atPath: marker) }
    let result = try await session.run(ChaosFuncs.reduce, Self.rows, Self.keys, Self.shards, point, marker)
    #expect(FileManager.default.fileExists(atPath: marker), "no worker was killed")
    checkReduce(Array(try result.rows()))
    #expect(session.machines.count == 3, "the killed machine is replaced")
    let live = try stores(in: parent)
    #expect(live.count == 3, "one store per live machine: \(live)")
    session.shutdown()
    let left = try stores(in: parent)
    #expect(left.isEmpty, "stores left after shutdown: \(left)")
  }

  @Test(arguments: [ChaosPoint.map, .reduce])
  func aCogroupSurvivesAWorkerKilled(in point: ChaosPoint) async throws {
    let session = try processes()
    defer { session.shutdown() }
    let marker = marker()
    defer { try? FileManager.default.removeItem(atPath: marker) }
    let result = try await session.run(
      ChaosFuncs.cogroup, Self.cogroupRows, Self.cogroupKeys, Self.shards, point, marker)
    #expect(FileManager.default.fileExists(atPath: marker), "no worker was killed")
    try checkCogroup(result)
  }

  /// The machine holding the last shard of `result` (the shard read last).
  func holderOfLastShard<each C>(_ result: SliceResult<repeat each C>, in session: Session) throws -> Machine {
    guard case .remote(let output)? = result.tasks.last?.output?.storage else {
      throw BigsliceError.invalidArgument("the last shard is not stored on a machine")
    }
    let address = output.worker.address
    let machine = try #require(session.machines.first { $0.address == address })
    // A pid of 0 would signal this whole process group.
    try #require(machine.processID > 0)
    return machine
  }

  @Test func aReduceResultSurvivesItsMachineKilledWhileScanned() async throws {
    let session = try processes()
    defer { session.shutdown() }
    let result = try await session.run(ChaosFuncs.reduce, Self.rows, Self.keys, Self.shards, ChaosPoint.none, "")
    let jobs = session.jobs.count
    let victim = try holderOfLastShard(result, in: session)
    var reader = result.makeRowReader()
    var rows: [(Int, Int)] = []
    while let row = try reader.next() {
      rows.append(row)
      if rows.count == 10 { kill(victim.processID, SIGKILL) }
    }
    checkReduce(rows)
    #expect(session.jobs.count > jobs, "the lost shards are computed again")
  }

  @Test func aCogroupResultSurvivesItsMachineKilledWhileScanned() async throws {
    let session = try processes()
    defer { session.shutdown() }
    let result = try await session.run(
      ChaosFuncs.cogroup, Self.cogroupRows, Self.cogroupKeys, Self.shards, ChaosPoint.none, "")
    let jobs = session.jobs.count
    let victim = try holderOfLastShard(result, in: session)
    kill(victim.processID, SIGKILL)
    try checkCogroup(result)
    #expect(session.jobs.count > jobs, "the lost shards are computed again")
  }

  /// A machine killed while a result is read synchronously, its shards' inputs deleted so they
  /// cannot be computed again: the reader throws an error naming the input, and this process
  /// lives on to run the next job.
  @Test func aResultThatCannotBeComputedAgainThrowsFromItsReader() async throws {
    let session = try processes()
    defer { session.shutdown() }
    let input = marker()
    #expect(FileManager.default.createFile(atPath: input, contents: Data("x".utf8)))
    let result = try await session.run(TestFuncs.needsFile, Self.shards, input)
    try FileManager.default.removeItem(atPath: input)
    let victim = try holderOfLastShard(result, in: session)
    var reader = result.makeRowReader()
    var rows = 0
    let error = #expect(throws: (any Error).self) {
      while try reader.next() != nil {
        rows += 1
        if rows == 10 { kill(victim.processID, SIGKILL) }
      }
    }
    #expect("\(error.map { "\($0)" } ?? "")".contains("the input \(input) is gone"), "\(String(describing: error))")
    #expect(rows < Self.shards * 100, "every row was read: no shard was lost")
    #expect(try await session.run(TestFuncs.slow, 2, 3, 0).count == 2)
  }

  /// A machine killed while one of its shards is half read: the shard is computed again and
  /// the rows already read are skipped. A deterministic func reads on to the right rows; one
  /// that gives other values the second time is an error naming the operation, not rows of
  /// two computations mixed.
  @Test(arguments: [true, false])
  func aShardComputedAgainMidReadIsCheckedAgainstTheRowsRead(deterministic: Bool) async throws {
    let session = try processes()
    defer { session.shutdown() }
    let attempts = marker()
    defer { try? FileManager.default.removeItem(atPath: attempts) }
    let rows = 2_000_000
    let result = try await session.run(TestFuncs.unstable, 2, rows, deterministic, attempts)
    let victim = try holderOfLastShard(result, in: session)
    let jobs = session.jobs.count
    var reader = result.makeRowReader()
    var read = 0
    var wrong = 0
    // What each shard's computation added to its values: one number a shard.
    var added: [Set<Int>] = [[], []]
    var problem: Error?
    do {
      while let (key, value) = try reader.next() {
        if read == rows + 50_000 { kill(victim.processID, SIGKILL) }
        if key != read { wrong += 1 }
        added[min(key / rows, 1)].insert(value &- TestFuncs.scramble(key))
        read += 1
      }
    } catch {
      problem = error
    }
    #expect(wrong == 0, "\(wrong) rows out of place")
    #expect(added.allSatisfy { $0.count == 1 }, "rows of two computations of one shard: \(added)")
    if deterministic { #expect(added == [[0], [0]]) }
    #expect(session.jobs.count > jobs, "the half-read shard was computed again")
    if deterministic {
      #expect(problem == nil, "\(String(describing: problem))")
      #expect(read == 2 * rows)
    } else {
      guard case .nondeterministic(let op, let shard, _)? = problem as? BigsliceError else {
        Issue.record("expected a nondeterministic error, got \(String(describing: problem)) after \(read) rows")
        return
      }
      #expect(shard == 1 && op.contains("reader"), "\(op)")
    }
  }

  /// A sorted job whose map shards draw other keys each time they are computed, with the
  /// machine of the last sorted shard killed: every machine cuts the same key ranges (the
  /// samples the driver got first), so the result is still in order across shards (its rows
  /// are not those of one computation: such a func breaks the rule that funcs are
  /// deterministic).
  @Test func aSortWhoseInputsAreComputedAgainStaysInOrder() async throws {
    let session = try processes()
    defer { session.shutdown() }
    let (kill, attempts) = (marker(), marker())
    defer { for path in [kill, attempts] { try? FileManager.default.removeItem(atPath: path) } }
    let result = try await session.run(ChaosFuncs.sortedUnstable, 60_000, Self.shards, kill, attempts)
    #expect(FileManager.default.fileExists(atPath: kill), "no worker was killed")
    var keys: [Int] = []
    for shard in 0..<result.shards {
      for frame in try result.frames(shard: shard) { keys += Array(frame.columns[0].scalars(Int.self)) }
    }
    // The rows themselves may differ from any one computation: the func is not deterministic,
    // and the shards not lost keep the rows of the first.
    #expect(keys.count > 0)
    let disorder = zip(keys, keys.dropFirst()).filter { $0 > $1 }.count
    #expect(disorder == 0, "\(disorder) keys out of order")
  }

  /// Outputs held by a machine that stopped between two jobs are planned again with the
  /// second job, before the tasks reading them start: no reading task runs only to find its
  /// input gone.
  @Test func outputsOnAStoppedMachineAreComputedAgainBeforeTheirReadersStart() async throws {
    let trace = temporaryTracePath()
    defer { try? FileManager.default.removeItem(atPath: trace) }
    let session = try processes(trace: trace)
    defer { session.shutdown() }
    let result = try await session.run(ChaosFuncs.reduce, Self.rows, Self.keys, Self.shards, ChaosPoint.none, "")
    let victim = try holderOfLastShard(result, in: session)
    kill(victim.processID, SIGKILL)
    let noticed = ContinuousClock.now
    while result.tasks.allSatisfy({ $0.output?.isAvailable ?? false }) {
      try #require(ContinuousClock.now - noticed < .seconds(30), "the driver never noticed the machine stop")
      try await Task.sleep(for: .milliseconds(20))
    }
    let regrouped = try await session.run(TestFuncs.resultRegrouped, result, 7, 2)
    var model: [Int: Int] = [:]
    for (key, sum) in Self.reduceReference.enumerated() { if let sum { model[key % 7, default: 0] += sum * 2 } }
    #expect(Dictionary(Array(try regrouped.rows()), uniquingKeysWith: { a, _ in a }) == model)
    let summary = try TraceSummary(path: trace)
    let interrupted = summary.operations.filter { $0.interrupted > 0 }.map(\.name)
    #expect(interrupted.isEmpty, "tasks started on inputs already lost: \(interrupted)")
  }

  /// A damaged partition in a worker's store fails its block checksum when read; the task
  /// that produced it is computed again, and the scan goes on.
  @Test func aCorruptStoredPartitionIsDetectedAndComputedAgain() async throws {
    let session = try processes()
    defer { session.shutdown() }
    let result = try await session.run(ChaosFuncs.reduce, Self.rows, Self.keys, Self.shards, ChaosPoint.none, "")
    let jobs = session.jobs.count
    let holder = try holderOfLastShard(result, in: session)
    let store = try await holder.call("Bigslice.storePath", true, returning: String.self)
    let files = try FileManager.default.contentsOfDirectory(atPath: store).filter { $0.hasPrefix("output") }
    #expect(!files.isEmpty, "no output files in \(store)")
    for name in files {
      // Flip a byte in the middle of each task's output file: inside a compressed block.
      let handle = try #require(FileHandle(forUpdatingAtPath: store + "/" + name))
      let size = try handle.seekToEnd()
      try handle.seek(toOffset: size / 2)
      let byte = try #require(try handle.read(upToCount: 1)?.first)
      try handle.seek(toOffset: size / 2)
      try handle.write(contentsOf: [byte ^ 0x5a])
      try handle.close()
    }
    checkReduce(Array(try result.rows()))
    #expect(session.jobs.count > jobs, "the damaged shards are computed again")
    #expect(holder.state == .running, "a damaged file is not the machine's death")
  }

  /// A task whose every run kills its machine fails after five tries, naming the operation.
  @Test func aTaskThatKeepsLosingItsMachineFailsAfterFiveTries() async throws {
    TestFuncs.register()
    let system = LocalSystem(executable: try testWorkerBinary(), maxprocs: 1)
    let session = Session(executor: .machines(system: .system(system), count: 1, procs: 1))
    defer { session.shutdown() }
    do {
      _ = try await session.run(ChaosFuncs.suicide, 1)
      Issue.record("the job finished")
    } catch {
      #expect("\(error)".contains("too many tries (5 in a row"), "\(error)")
    }
  }
}
