import Bigmachine
import Bigslice
import BigsliceTestFuncs
import Foundation
import Frame
import SliceIO
import Synchronization
import Testing

/// A gate that user closures wait at (with a deadline) until async code opens it for good.
final class Gate: Sendable {
  private let isOpen = Mutex(false)
  func open() { isOpen.withLock { $0 = true } }
  /// False if nobody opened the gate within `seconds`.
  func wait(seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while !isOpen.withLock({ $0 }) {
      if Date() > deadline { return false }
      usleep(1_000)
    }
    return true
  }
}

@Suite(.engine) struct AsyncRunTests {
  @Test func anAsyncRunEqualsTheSynchronousOne() async throws {
    let rows = (0..<5_000).map { ($0 % 97, $0) }
    let slice = const(7, rows.map(\.0), rows.map(\.1)).reduce(.sum)
    let session = Session()
    let asynchronous = try await session.run(slice)
    let synchronous = try { try session.run(slice) }()
    var got: [Int: Int] = [:]
    var it = asynchronous.makeAsyncIterator()
    while let (k, v) = try await it.next() { got[k] = v }
    #expect(got == Dictionary(Array(try synchronous.rows()), uniquingKeysWith: +))
    #expect(got == Dictionary(rows, uniquingKeysWith: +))
  }

  /// Runs waiting on the cooperative pool would starve the task that lets them go: more jobs
  /// at once than the pool has threads, each blocked until async code opens the gate.
  @Test func asyncRunsLeaveTheCooperativePoolFree() async throws {
    let jobs = ProcessInfo.processInfo.activeProcessorCount + 2
    let gate = Gate()
    let started = Counter()
    @Sendable func slice() -> Slice<Int> {
      const(1, [1, 2, 3]).map { (v: Int) throws -> Int in
        started.add(1)
        guard gate.wait(seconds: 20) else { throw CocoaError(.userCancelled) }
        return v * 2
      }
    }
    try await withThrowingTaskGroup(of: Int.self) { group in
      for _ in 0..<jobs {
        group.addTask { try await Session(executor: .local(procs: 1)).run(slice()).reduce(0) { $0 + $1 } }
      }
      group.addTask {
        // Every job's closure is waiting before the gate opens: this task still gets a thread.
        while started.value < jobs { try await Task.sleep(for: .milliseconds(5)) }
        gate.open()
        return 0
      }
      var sum = 0
      for try await s in group { sum += s }
      #expect(sum == jobs * 12)
    }
  }

  @Test func cancellingTheCallerCancelsTheJob() async throws {
    let ran = Counter()
    let cancelled = Counter()
    // 40 shards on one proc; from the third on, each waits until the caller has cancelled,
    // so the job cannot finish first however long this task waits for a thread (sync tests
    // of other suites can hold the cooperative pool for minutes).
    let slice = const(40, Array(0..<40)).map { (v: Int) -> Int in
      ran.add(1)
      while ran.value > 2 && cancelled.value == 0 { usleep(1000) }
      usleep(50_000)
      return v
    }
    let session = Session(executor: .local(procs: 1))
    let job = Task { try await session.run(slice).count }
    while ran.value < 2 { try await Task.sleep(for: .milliseconds(5)) }
    job.cancel()
    cancelled.add(1)
    await #expect(throws: CancellationError.self) { try await job.value }
    let atCancel = ran.value
    #expect(atCancel < 40)
    // The session serves the next run.
    #expect(try await session.run(const(2, [1, 2, 3])).count == 3)
  }

  /// Tasks that would each run for 10 s, a row every 10 ms: a cancelled run stops them between
  /// frames and returns within a second, held and spilled, and the session serves the next
  /// run with its spill directory empty.
  @Test(arguments: [nil, 1] as [Int?])
  func cancellingStopsRunningTasksBetweenFrames(limit: Int?) async throws {
    let started = Counter()
    let slice = readerFunc(4, initial: { _ in 0 }) { (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      if next == 0 { started.add(1) }
      usleep(10_000)
      out.emit(shard, next)
      next += 1
      return next < 1_000
    }.reduce(.sum)
    let session = Session(executor: .local(procs: 2), memoryLimit: limit)
    let took = try await cancelOnceTwoStarted(started) { _ = try await session.run(slice).count }
    #expect(took < .seconds(1), "the run ended \(took) after its cancellation")
    #expect(started.value <= 2, "no task started after the cancellation")
    #expect(try await session.run(const(2, [1, 2, 3])).count == 3)
    if let path = session.spillPath {
      #expect(directoryEntries(path).isEmpty, "left behind: \(directoryEntries(path))")
    }
  }

  /// The two places a running task sees its run cancelled, each alone: between the frames a
  /// task reads (here a `const` of 20 frames a shard, each taking about 0.3 s in a `map`), and
  /// between the calls of a `readerFunc` that emit nothing (10 ms each, for 10 s). Either run
  /// ends within 3 s of its cancellation, where running on would take 6 s or more: a full
  /// suite on 2 cores (a fuzz run and worker processes beside it) once stretched a 0.3 s
  /// frame past 2 s.
  @Test(arguments: [false, true])
  func cancellationReachesTasksBetweenFramesAndBetweenEmptyCalls(emptyCalls: Bool) async throws {
    let started = Counter()
    let slice: Slice<Int>
    if emptyCalls {
      slice = readerFunc(2, initial: { _ in 0 }) { (_: Int, next: inout Int, out: RowEmitter<Int>) in
        if next == 0 { started.add(1) }
        usleep(10_000)
        next += 1
        if next == 1_000 { out.emit(next) }
        return next < 1_000
      }
    } else {
      slice = const(2, Array(0..<(40 * Frame.defaultRows))).map { (v: Int) -> Int in
        if v % Frame.defaultRows == 0 { started.add(1) }
        if v % 1_000 == 0 { usleep(5_000) }
        return v
      }
    }
    let session = Session(executor: .local(procs: 2))
    let took = try await cancelOnceTwoStarted(started) { _ = try await session.run(slice).count }
    #expect(took < .seconds(3), "the run ended \(took) after its cancellation")
  }

  /// Starts `run`, cancels it once `started` counts two tasks, expects `CancellationError`,
  /// and returns how long the run took to end after the cancellation.
  func cancelOnceTwoStarted(
    _ started: Counter, _ run: @escaping @Sendable () async throws -> Void
  ) async throws -> Duration {
    let job = Task { try await run() }
    while started.value < 2 { try await Task.sleep(for: .milliseconds(5)) }
    let cancelled = ContinuousClock.now
    job.cancel()
    await #expect(throws: CancellationError.self) { try await job.value }
    return ContinuousClock.now - cancelled
  }

  /// A run cancelled on a machine leaves nothing in the machine's store: the outputs of the
  /// tasks it had finished go with the run, and the stopped tasks' partial files with them.
  @Test func aRunCancelledOnAMachineLeavesItsStoreEmpty() async throws {
    TestFuncs.register()
    let parent = FileManager.default.temporaryDirectory.appendingPathComponent("bigslice-cancel-\(UUID())").path
    try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: parent) }
    let session = Session(
      executor: .machines(system: .inProcess, count: 1, procs: 2), memoryLimit: 1, spillDirectory: parent)
    defer { session.shutdown() }
    // 8 shards on 2 procs, a second each: the first tasks finish (their outputs in the store)
    // before the cancellation stops the later ones mid-way, even on a loaded machine.
    let job = Task { try await session.run(TestFuncs.slow, 8, 500, 2_000).count }
    func storeFiles() -> [String] {
      directoryEntries(parent).filter { $0.hasPrefix("bigslice-store") }.flatMap { directoryEntries("\(parent)/\($0)") }
        .filter { !$0.hasPrefix(".") }
    }
    let deadline = ContinuousClock.now + .seconds(20)
    while storeFiles().isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
    #expect(!storeFiles().isEmpty, "no task finished before the cancellation")
    job.cancel()
    await #expect(throws: CancellationError.self) { try await job.value }
    let emptied = ContinuousClock.now + .seconds(5)
    while !storeFiles().isEmpty && ContinuousClock.now < emptied { try await Task.sleep(for: .milliseconds(10)) }
    #expect(storeFiles().isEmpty, "left in the machine's store: \(storeFiles())")
  }

  /// Tasks that would each run for 10 s on the machines: a cancelled run returns within a
  /// second or so (3 s on a loaded machine), and the machines stop them (the next run gets
  /// their procs at once).
  @Test func cancellingARunStopsItsTasksOnTheMachines() async throws {
    TestFuncs.register()
    let system = LocalSystem(executable: try testWorkerBinary(), maxprocs: 2)
    let session = Session(executor: .machines(system: .system(system), count: 2, procs: 2))
    defer { session.shutdown() }
    // The machines are up, and have the funcs compiled.
    #expect(try await session.run(TestFuncs.slow, 2, 2, 0).count == 2)
    let job = Task { try await session.run(TestFuncs.slow, 4, 1_000, 10_000).count }
    try await Task.sleep(for: .milliseconds(500))
    let cancelled = ContinuousClock.now
    job.cancel()
    await #expect(throws: CancellationError.self) { try await job.value }
    #expect(ContinuousClock.now - cancelled < .seconds(3))
    let next = ContinuousClock.now
    #expect(try await session.run(TestFuncs.slow, 4, 5, 1_000).count == 4)
    #expect(ContinuousClock.now - next < .seconds(3), "the machines' procs were still taken")
  }
}
