import Synchronization

/// The tasks of one operation of a job, counted by state at one moment.
public struct OperationStatus: Sendable, Equatable, Codable {
  /// The operation's name (see `TaskKey.operation`).
  public let name: String
  public var waiting = 0
  public var running = 0
  public var done = 0
  public var lost = 0
  public var failed = 0
  /// Times an output of this operation was lost after it was done, so it had to be computed
  /// again (the `lost` count is only the tasks lost right now).
  public var losses = 0
  /// Rows output by the tasks done, and so far by those running; bytes output by the tasks
  /// done. (After map-side combining, for a task whose output is combined; a task computed
  /// again counts once.)
  public var rows = 0
  public var bytes = 0
  /// Seconds from the first task starting to the last one finishing (or now, while one runs).
  public var seconds = 0.0
  /// The operations whose output this one reads.
  public var inputs: [String] = []

  public init(name: String) { self.name = name }

  /// Every task of the operation the job knows of.
  public var tasks: Int { waiting + running + done + lost + failed }

  /// Tasks in `state`.
  public func count(_ state: TaskState) -> Int {
    switch state {
    case .waiting: return waiting
    case .running: return running
    case .done: return done
    case .lost: return lost
    case .failed: return failed
    }
  }

  /// Output rows per second over `seconds`; 0 before anything finished.
  public var rowsPerSecond: Double { seconds > 0 ? Double(rows) / seconds : 0 }

  fileprivate mutating func add(_ n: Int, to state: TaskState) {
    switch state {
    case .waiting: waiting += n
    case .running: running += n
    case .done: done += n
    case .lost: lost += n
    case .failed: failed += n
    }
  }
}

/// One task as the status model last saw it.
public struct TaskStatus: Sendable, Equatable, Codable {
  public let id: Int
  public let operation: String
  public let shard: Int
  public var state: TaskState
  public var machine: String
  /// Output rows (so far, while running) and bytes (once done).
  public var rows = 0
  public var bytes = 0
  /// Seconds the task has run (its last run, while running or once finished).
  public var seconds = 0.0
  public var error: String?
}

/// The live status of one job: every task it has planned and the state each is in, counted
/// per operation. Fed by the executor through `record` (it is a `TaskObserver`), read by the
/// terminal display and the debug pages at any time from any thread.
///
/// A task may move between any two states (a done task whose output was lost waits again);
/// the counts always add up to the tasks known, each in its latest state. Each event costs
/// one lock and a dictionary update.
public final class JobStatus: TaskObserver, @unchecked Sendable {
  /// The job's name (its slice's).
  public let name: String
  /// When the job started.
  public let started: ContinuousClock.Instant

  private struct Record {
    var status: TaskStatus
    var start: ContinuousClock.Instant?
    var end: ContinuousClock.Instant?
    /// While it runs.
    var progress: TaskProgress?
  }

  private struct Operation {
    var status: OperationStatus
    var firstStart: ContinuousClock.Instant?
    var lastEnd: ContinuousClock.Instant?
  }

  private struct State {
    var tasks: [Int: Record] = [:]
    var operations: [String: Operation] = [:]
    /// Operation names in the order first seen (upstream operations are planned first).
    var order: [String] = []
    var finished: ContinuousClock.Instant?
    var error: String?
  }

  private let state = Mutex(State())

  public init(name: String, started: ContinuousClock.Instant = .now) {
    self.name = name
    self.started = started
  }

  public func record(_ event: TaskEvent) {
    state.withLock { s in
      let key = event.task
      if s.operations[key.operation] == nil {
        s.operations[key.operation] = Operation(status: OperationStatus(name: key.operation))
        s.order.append(key.operation)
      }
      var record =
        s.tasks[key.id]
        ?? Record(
          status: TaskStatus(id: key.id, operation: key.operation, shard: key.shard, state: event.state, machine: ""))
      var op = s.operations[key.operation]!
      for input in event.inputs where !op.status.inputs.contains(input) { op.status.inputs.append(input) }
      if s.tasks[key.id] != nil { op.status.add(-1, to: record.status.state) }
      op.status.add(1, to: event.state)
      record.status.state = event.state
      record.status.machine = event.machine
      record.progress = event.state == .running ? event.progress : nil
      switch event.state {
      case .running:
        record.start = event.time
        record.end = nil
        if op.firstStart == nil { op.firstStart = event.time }
      case .done:
        op.status.rows += event.rows - record.status.rows
        op.status.bytes += event.bytes - record.status.bytes
        record.status.rows = event.rows
        record.status.bytes = event.bytes
        finish(&record, &op, at: event.time)
      case .failed:
        record.status.error = event.error
        finish(&record, &op, at: event.time)
      case .lost:
        op.status.losses += 1
        op.status.rows -= record.status.rows
        op.status.bytes -= record.status.bytes
        record.status.rows = 0
        record.status.bytes = 0
      case .waiting:
        break
      }
      s.tasks[key.id] = record
      s.operations[key.operation] = op
    }
  }

  private func finish(_ record: inout Record, _ op: inout Operation, at time: ContinuousClock.Instant) {
    record.end = time
    if let start = record.start { record.status.seconds = seconds(time - start) }
    op.lastEnd = max(op.lastEnd ?? time, time)
  }

  /// Marks the job finished, with the error that ended it if any.
  public func finish(error: Error? = nil, at time: ContinuousClock.Instant = .now) {
    state.withLock {
      $0.finished = time
      $0.error = error.map { "\($0)" }
    }
  }

  /// Whether the job has finished, and its error.
  public var isFinished: Bool { state.withLock { $0.finished != nil } }
  public var error: String? { state.withLock { $0.error } }

  /// Seconds since the job started, up to when it finished.
  public func elapsed(now: ContinuousClock.Instant = .now) -> Double {
    seconds((state.withLock { $0.finished } ?? now) - started)
  }

  /// The operations, upstream first, with their counts as of `now`.
  public func operations(now: ContinuousClock.Instant = .now) -> [OperationStatus] {
    state.withLock { s in
      var live: [String: Int] = [:]
      for record in s.tasks.values {
        guard let progress = record.progress else { continue }
        live[record.status.operation, default: 0] += progress.rowsWritten
      }
      return s.order.map { name in
        let op = s.operations[name]!
        var status = op.status
        status.rows += live[name] ?? 0
        if let first = op.firstStart {
          let end = status.running > 0 ? now : (op.lastEnd ?? now)
          status.seconds = seconds(end - first)
        }
        return status
      }
    }
  }

  /// Every task, by operation (upstream first) and shard; a running task's seconds so far.
  public func tasks(now: ContinuousClock.Instant = .now) -> [TaskStatus] {
    state.withLock { s in
      let rank = Dictionary(uniqueKeysWithValues: s.order.enumerated().map { ($1, $0) })
      return s.tasks.values.map { record in
        var status = record.status
        if status.state == .running, let start = record.start { status.seconds = seconds(now - start) }
        if let progress = record.progress { status.rows = progress.rowsWritten }
        return status
      }.sorted { (rank[$0.operation]!, $0.shard, $0.id) < (rank[$1.operation]!, $1.shard, $1.id) }
    }
  }
}

/// The status of a session's latest jobs, oldest first, up to `limit`.
final class JobHistory: Sendable {
  private let jobs = Mutex<[JobStatus]>([])
  let limit: Int

  init(limit: Int = 16) { self.limit = limit }

  func add(_ job: JobStatus) {
    jobs.withLock {
      $0.append(job)
      if $0.count > limit { $0.removeFirst($0.count - limit) }
    }
  }

  var all: [JobStatus] { jobs.withLock { $0 } }
}
