import Foundation
import Synchronization
import Testing

@testable import Bigslice

/// Events for one made-up task, at times counted in seconds from `origin`.
struct FakeTask {
  let key: TaskKey
  let origin: ContinuousClock.Instant

  init(_ id: Int, _ operation: String, shard: Int = 0, origin: ContinuousClock.Instant) {
    key = TaskKey(id: id, operation: operation, shard: shard)
    self.origin = origin
  }

  func event(_ state: TaskState, at second: Double = 0, rows: Int = 0, bytes: Int = 0) -> TaskEvent {
    TaskEvent(
      task: key, state: state, time: origin + .milliseconds(Int(second * 1000)), rows: rows, bytes: bytes,
      error: state == .failed ? "boom" : nil)
  }
}

/// Collects what a display writes.
final class Written: Sendable {
  private let texts = Mutex<[String]>([])
  func add(_ text: String) { texts.withLock { $0.append(text) } }
  var all: [String] { texts.withLock { $0 } }
}

@Suite(.engine) struct StatusTests {
  let origin = ContinuousClock.now

  @Test func countsFollowEachTaskToItsLatestState() async {
    let job = JobStatus(name: "job", started: origin)
    let tasks = (0..<3).map { FakeTask($0, "map@a:1", shard: $0, origin: origin) }
    for t in tasks { job.record(t.event(.waiting)) }
    var op = job.operations(now: origin)[0]
    #expect((op.waiting, op.running, op.done, op.tasks) == (3, 0, 0, 3))

    job.record(tasks[0].event(.running, at: 1))
    job.record(tasks[1].event(.running, at: 1))
    op = job.operations(now: origin)[0]
    #expect((op.waiting, op.running, op.done) == (1, 2, 0))

    job.record(tasks[0].event(.done, at: 2, rows: 100, bytes: 800))
    job.record(tasks[1].event(.failed, at: 2))
    op = job.operations(now: origin)[0]
    #expect((op.waiting, op.running, op.done, op.failed) == (1, 0, 1, 1))
    #expect((op.rows, op.bytes) == (100, 800))
    #expect(job.tasks(now: origin).first { $0.id == 1 }?.error == "boom")

    // Task 0's output is lost: its rows no longer count, and it waits to run again.
    job.record(tasks[0].event(.lost, at: 3))
    op = job.operations(now: origin)[0]
    #expect((op.done, op.lost, op.losses, op.rows) == (0, 1, 1, 0))
    job.record(tasks[0].event(.waiting, at: 3))
    job.record(tasks[0].event(.running, at: 4))
    job.record(tasks[0].event(.done, at: 5, rows: 100, bytes: 800))
    op = job.operations(now: origin)[0]
    #expect((op.waiting, op.running, op.done, op.lost, op.failed, op.losses) == (1, 0, 1, 0, 1, 1))
    // Computed twice, counted once.
    #expect((op.rows, op.bytes) == (100, 800))
    #expect(op.tasks == 3)
    for state in TaskState.allCases { #expect(op.count(state) == job.tasks().filter { $0.state == state }.count) }
  }

  @Test func rowsPerSecondIsRowsOverTheOperationsBusyTime() async {
    let job = JobStatus(name: "job", started: origin)
    let a = FakeTask(1, "scan@a:1", origin: origin)
    let b = FakeTask(2, "scan@a:1", shard: 1, origin: origin)
    job.record(a.event(.running, at: 1))
    job.record(b.event(.running, at: 2))
    job.record(a.event(.done, at: 3, rows: 1000))
    // b still runs: the busy time runs up to now.
    var op = job.operations(now: origin + .seconds(5))[0]
    #expect(abs(op.seconds - 4) < 1e-9)
    #expect(abs(op.rowsPerSecond - 250) < 1e-9)
    job.record(b.event(.done, at: 5, rows: 3000))
    // Both done: the busy time ends at the last finish, however late we look.
    op = job.operations(now: origin + .seconds(100))[0]
    #expect(abs(op.seconds - 4) < 1e-9)
    #expect(abs(op.rowsPerSecond - 1000) < 1e-9)
    let running = job.tasks(now: origin + .seconds(100))
    #expect(running.map(\.seconds) == [2, 3])
  }

  @Test func operationsAreListedInTheOrderFirstSeen() async {
    let job = JobStatus(name: "job", started: origin)
    for (i, name) in ["scan@a:1", "reduce@a:2", "map@a:3"].enumerated() {
      job.record(FakeTask(i, name, origin: origin).event(.waiting))
    }
    job.record(FakeTask(3, "reduce@a:2", shard: 1, origin: origin).event(.waiting))
    #expect(job.operations().map(\.name) == ["scan@a:1", "reduce@a:2", "map@a:3"])
    #expect(job.operations().map(\.tasks) == [1, 2, 1])
    #expect(job.tasks().map(\.id) == [0, 1, 3, 2])
  }

  @Test func aJobCountsEveryTaskDoneWithItsOutputRows() async throws {
    let session = Session(executor: .local(procs: 2))
    let slice = const(4, Array(0..<1000), Array(repeating: 1, count: 1000))
      .map { (k: Int, v: Int) in (k % 10, v) }
      .reduce(.sum)
    let result = try await session.run(slice)
    let job = try #require(session.jobs.last)
    #expect(job.isFinished && job.error == nil)
    let ops = job.operations()
    #expect(ops.count == 2)
    // Every task done; the reduce's output is the result's rows.
    #expect(ops.map(\.done) == [4, 4])
    #expect(ops.allSatisfy { $0.tasks == $0.done && $0.failed == 0 && $0.losses == 0 })
    #expect(ops[0].name.hasPrefix("map_const@"))
    // The graph: the reduce reads the map.
    #expect(ops.map(\.inputs) == [[], [ops[0].name]])
    #expect(try ops[1].rows == result.count)
    #expect(try result.count == 10)
    // Map-side combining leaves at most 10 keys per map task.
    #expect(ops[0].rows <= 40 && ops[0].rows >= 10)
    #expect(job.tasks().count == 8)
  }

  @Test func aFailingTaskIsCountedFailedAndEndsTheJob() async {
    struct Boom: Error {}
    let session = Session(executor: .local(procs: 1))
    let slice = const(3, Array(0..<30)).map { (v: Int) throws -> Int in
      if v == 15 { throw Boom() }
      return v
    }
    await #expect(throws: BigsliceError.self) { try await session.run(slice) }
    let job = session.jobs.last!
    let op = job.operations()[0]
    #expect(op.failed == 1)
    #expect(op.running == 0)
    #expect(job.error != nil)
    #expect(job.tasks().first { $0.state == .failed }?.shard == 1)
  }

  @Test func aLostOutputIsCountedAndComputedAgain() async throws {
    let session = Session(executor: .local(procs: 2), memoryLimit: 1)
    let removed = Counter()
    _ = try await session.run(EvaluationTests().losingJob(session, times: 1, removed: removed))
    #expect(removed.value > 0)
    let ops = session.jobs.last!.operations()
    #expect(ops.reduce(0) { $0 + $1.losses } > 0)
    #expect(ops.allSatisfy { $0.tasks == $0.done })
  }

  @Test func eachRunIsAJobOfTheSession() async throws {
    let session = Session()
    for n in 1...3 { _ = try await session.run(const(1, Array(0..<n))) }
    #expect(session.jobs.count == 3)
    #expect(session.jobs.map { $0.operations()[0].rows } == [1, 2, 3])
  }

  @Test func theTerminalLinesShowEachOperationsCounts() async {
    let job = JobStatus(name: "wordcount", started: origin)
    let tasks = (0..<4).map { FakeTask($0, "count@a:1", shard: $0, origin: origin) }
    for t in tasks { job.record(t.event(.waiting)) }
    job.record(tasks[0].event(.running, at: 0))
    job.record(tasks[0].event(.done, at: 2, rows: 2_500_000))
    job.record(tasks[1].event(.running, at: 2))
    let lines = StatusDisplay.lines(job, width: 200, now: origin + .seconds(2))
    #expect(lines.count == 2)
    #expect(lines[0] == "wordcount: 1/4 tasks done, 2.0 s")
    #expect(
      lines[1] == "  count@a:1 [#####...............] 1/4 2.5M rows 1.3M/s, 1 running, 2 waiting, 0 lost, 0 failed")
    let narrow = StatusDisplay.lines(job, width: 30, now: origin + .seconds(2))
    #expect(narrow.allSatisfy { $0.count <= 30 })
    let line = StatusDisplay.line(job, now: origin + .seconds(2))
    #expect(
      line
        == "status wordcount 2.0 s: count@a:1 1/4 done, 1 running, 2 waiting, 0 lost, 0 failed, 2.5M rows, 1.3M rows/s")
  }

  @Test func aPlainDisplayPrintsALinePeriodicallyAndAtTheEnd() async throws {
    let written = Written()
    let job = JobStatus(name: "slow")
    let display = StatusDisplay(job: job, terminal: false, interval: .milliseconds(20), output: written.add)
    display.start()
    let slow = const(2, Array(0..<4)).map { (v: Int) -> Int in
      usleep(50_000)
      return v
    }
    var compiler = Compiler()
    try LocalExecutor(procs: 1, store: OutputStore(memoryLimit: nil, spillParent: nil, procs: 1))
      .evaluate(compiler.compile(slow.node), counters: Counters(), observer: job)
    job.finish()
    display.finish()
    let lines = written.all
    #expect(lines.count >= 3)
    #expect(lines.allSatisfy { $0.hasPrefix("status slow ") && $0.hasSuffix("\n") && !$0.contains("\u{1B}") })
    #expect(lines.last!.contains("2/2 done, 0 running, 0 waiting"))
  }

  @Test func aTerminalDisplayRedrawsInPlace() async {
    let written = Written()
    let job = JobStatus(name: "job")
    job.record(FakeTask(0, "map@a:1", origin: origin).event(.waiting))
    let display = StatusDisplay(job: job, terminal: true, interval: .milliseconds(10), output: written.add)
    display.start()
    usleep(60_000)
    display.finish()
    let texts = written.all
    #expect(texts.count >= 2)
    #expect(!texts[0].hasPrefix("\u{1B}"))
    // Every later draw first moves back up over the two lines drawn before, and clears them.
    #expect(texts.dropFirst().allSatisfy { $0.hasPrefix("\u{1B}[2F\u{1B}[J") })
  }

  @Test func countsAreShortened() async {
    #expect(StatusDisplay.format(count: 999) == "999")
    #expect(StatusDisplay.format(count: 9999) == "9999")
    #expect(StatusDisplay.format(count: 12_345) == "12.3K")
    #expect(StatusDisplay.format(count: 1_250_000) == "1.3M")
    #expect(StatusDisplay.format(count: 3_000_000_000) == "3.0G")
  }
}

@Suite(.engine) struct TaskProgressTests {
  @Test func aRunningTasksRowsCountAsTheyAreWrittenAndOnceWhenDone() async {
    let origin = ContinuousClock.now
    let job = JobStatus(name: "job", started: origin)
    let task = FakeTask(1, "map@a:1", origin: origin)
    let progress = TaskProgress()
    var running = task.event(.running, at: 0)
    running.progress = progress
    job.record(running)
    #expect(job.operations(now: origin + .seconds(1))[0].rows == 0)
    progress.wrote(rows: 300)
    progress.wrote(rows: 200)
    var op = job.operations(now: origin + .seconds(2))[0]
    #expect(op.rows == 500)
    #expect(abs(op.rowsPerSecond - 250) < 1e-9)
    #expect(job.tasks(now: origin + .seconds(2))[0].rows == 500)
    // Done: the final count replaces the live one.
    job.record(task.event(.done, at: 4, rows: 800))
    progress.wrote(rows: 1000)
    op = job.operations(now: origin + .seconds(5))[0]
    #expect(op.rows == 800)
    #expect(job.tasks()[0].rows == 800)
  }

  @Test func theExecutorHandsOutTheProgressOfEachRunningTask() async throws {
    final class Progresses: TaskObserver, @unchecked Sendable {
      let seen = Mutex<[(TaskState, TaskProgress?, Int)]>([])
      func record(_ event: TaskEvent) { seen.withLock { $0.append((event.state, event.progress, event.rows)) } }
    }
    let observer = Progresses()
    var compiler = Compiler()
    let slice = const(2, Array(0..<100)).map { (v: Int) in v + 1 }
    try LocalExecutor(procs: 1, store: OutputStore(memoryLimit: nil, spillParent: nil, procs: 1))
      .evaluate(compiler.compile(slice.node), counters: Counters(), observer: observer)
    let seen = observer.seen.withLock { $0 }
    let running = seen.filter { $0.0 == .running }
    #expect(running.count == 2)
    // Each task's progress ends at the rows it wrote, which its done event reports.
    #expect(running.compactMap { $0.1?.rowsWritten }.sorted() == [50, 50])
    #expect(seen.filter { $0.0 == .done }.map(\.2) == [50, 50])
  }
}
