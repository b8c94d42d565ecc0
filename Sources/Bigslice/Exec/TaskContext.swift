#if canImport(Glibc)
  import Glibc
#endif

/// What a running task's user code can see: its shard and its metric counters.
///
/// User closures reach it with `TaskContext.current`: a task runs on one thread from start to
/// end, and the executor sets the context for that thread while the task runs.
public final class TaskContext: @unchecked Sendable {
  /// The shard this task computes.
  public let shard: Int
  let counters: Counters
  /// The executor's store, for operators that spill.
  let store: OutputStore?
  /// What the task reads from its inputs and writes to its output.
  let io: TaskIOMeter
  /// The task's only node writes its rows straight to files (a machine's store): an operator
  /// may then keep list columns packed, as they are coded (see `Column.packedLists`).
  var rowsOnlyEncoded = false
  /// The cancellation of the run the task is part of.
  let cancel: Cancellation?
  /// The files of the task's file readers in its compile, by `InputFiles`.
  let inputFiles: [ObjectIdentifier: [String]]

  init(
    shard: Int, counters: Counters, store: OutputStore? = nil, io: TaskIOMeter = TaskIOMeter(),
    cancel: Cancellation? = nil, inputFiles: [ObjectIdentifier: [String]] = [:]
  ) {
    self.shard = shard
    self.counters = counters
    self.store = store
    self.io = io
    self.cancel = cancel
    self.inputFiles = inputFiles
  }

  /// Whether the run this task is part of was cancelled: a long task should stop then (the
  /// engine checks between frames).
  public var isCancelled: Bool { cancel?.isCancelled ?? false }

  /// Throws `CancellationError` when the run was cancelled: called between frames.
  func checkCancelled() throws {
    if let cancel, cancel.isCancelled { throw CancellationError() }
  }

  /// Adds `n` to the counter `name` of this task; counters are merged across tasks into the
  /// result's `metrics`.
  public func increment(_ name: String, by n: Int = 1) { counters.add(name, n) }

  /// The context of the task running on this thread, nil outside a task.
  public static var current: TaskContext? {
    guard let raw = pthread_getspecific(contextKey) else { return nil }
    return Unmanaged<TaskContext>.fromOpaque(raw).takeUnretainedValue()
  }

  /// Runs `body` with `self` as the thread's current context.
  func with<T>(_ body: () throws -> T) rethrows -> T {
    let previous = pthread_getspecific(contextKey)
    pthread_setspecific(contextKey, Unmanaged.passUnretained(self).toOpaque())
    defer { pthread_setspecific(contextKey, previous) }
    return try withExtendedLifetime(self) { try body() }
  }
}

/// The thread-local slot of `TaskContext.current`.
private let contextKey: pthread_key_t = {
  var key = pthread_key_t()
  pthread_key_create(&key, nil)
  return key
}()
