import Synchronization

/// Where a task is in its life. A task waits for its inputs, runs, and is then done (its
/// output stored), failed (user code or the data raised an error; the job fails), or lost
/// (its output went away after it was done; it waits to be computed again).
public enum TaskState: String, Sendable, CaseIterable, Codable {
  case waiting, running, done, lost, failed
}

/// Names one task in status and trace events.
public struct TaskKey: Hashable, Sendable {
  /// Unique in the process.
  public let id: Int
  /// The operation the task belongs to: the ops of its pipeline and where its slice was made.
  public let operation: String
  /// The shard the task computes.
  public let shard: Int

  public init(id: Int, operation: String, shard: Int) {
    self.id = id
    self.operation = operation
    self.shard = shard
  }
}

/// What a task read from its inputs and wrote as its output, counted frame by frame: rows,
/// bytes (in memory, before compression) and the time spent inside the reads and writes.
public struct TaskIO: Sendable, Equatable {
  public var readRows = 0
  public var readBytes = 0
  public var readTime: Duration = .zero
  /// When the first read started; nil if the task read nothing (a source).
  public var firstRead: ContinuousClock.Instant?
  public var writeRows = 0
  public var writeBytes = 0
  public var writeTime: Duration = .zero

  public init() {}
}

/// The rows a running task has written to its output so far, counted frame by frame as they
/// go (a relaxed atomic add per frame), so that the status shows rows and rows/s before the
/// task ends. A task whose output is combined map-side writes most of its rows at its end.
public final class TaskProgress: Sendable {
  private let written = Atomic<Int>(0)

  public init() {}

  /// Rows written so far.
  public var rowsWritten: Int { written.load(ordering: .relaxed) }

  /// Counts `rows` more written.
  public func wrote(rows: Int) { written.add(rows, ordering: .relaxed) }
}

/// One task changing state, as an executor reports it.
public struct TaskEvent: Sendable {
  public var task: TaskKey
  /// The state the task is in from `time` on.
  public var state: TaskState
  public var time: ContinuousClock.Instant
  /// The machine the task runs on ("local" in this process).
  public var machine: String
  /// For `.done`: the rows and bytes of its output, and what it read and wrote.
  public var rows: Int
  public var bytes: Int
  public var io: TaskIO?
  /// For `.failed`: what went wrong.
  public var error: String?
  /// For `.waiting`: the operations whose output the task reads (the edges of the job's graph).
  public var inputs: [String]
  /// For `.running`: the task's output rows so far, updated while it runs.
  public var progress: TaskProgress?

  public init(
    task: TaskKey, state: TaskState, time: ContinuousClock.Instant = .now, machine: String = "local", rows: Int = 0,
    bytes: Int = 0, io: TaskIO? = nil, error: String? = nil, inputs: [String] = [], progress: TaskProgress? = nil
  ) {
    self.inputs = inputs
    self.progress = progress
    self.task = task
    self.state = state
    self.time = time
    self.machine = machine
    self.rows = rows
    self.bytes = bytes
    self.io = io
    self.error = error
  }
}

/// Takes the state changes of tasks. An executor calls `record` at every transition, from
/// whichever thread the task runs on: once per task and state, never per row, so an observer
/// may take a lock.
public protocol TaskObserver: Sendable {
  func record(_ event: TaskEvent)
}

/// Hands each event to several observers in turn.
struct TaskObservers: TaskObserver {
  let observers: [any TaskObserver]

  func record(_ event: TaskEvent) {
    for observer in observers { observer.record(event) }
  }
}

extension TaskObserver {
  /// Reports that `task` entered `state`; for `.done`, with the rows and bytes of its output.
  func record(
    _ task: ShardTask, _ state: TaskState, output: TaskOutput? = nil, io: TaskIO? = nil, error: Error? = nil,
    progress: TaskProgress? = nil, machine: String = "local"
  ) {
    let rows = output?.rows ?? 0
    let bytes = output?.bytes ?? 0
    // The graph's edges go with the planning of a task: one name per dependency, not per
    // upstream task.
    let inputs = state == .waiting ? task.deps.compactMap { $0.tasks.first?.operation } : []
    record(
      TaskEvent(
        task: TaskKey(id: task.id, operation: task.operation, shard: task.shard), state: state, machine: machine,
        rows: rows, bytes: bytes, io: io, error: error.map { "\($0)" }, inputs: inputs, progress: progress))
  }
}
