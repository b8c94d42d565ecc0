import Bigmachine
import Frame
import SliceIO
import Synchronization

/// Runs tasks in this process on a dedicated pool of `procs` threads (never Swift's
/// cooperative pool), keeping task outputs in the `OutputStore`:
/// in memory under the session's budget, in spill files beyond it.
final class LocalExecutor: ExecutorBackend, @unchecked Sendable {
  let procs: Int
  let store: OutputStore
  private let threads: ThreadPool

  /// Computes the tasks that run here.
  let runner: TaskRunner

  init(procs: Int, store: OutputStore) {
    self.procs = max(1, procs)
    self.store = store
    runner = TaskRunner(store: store)
    threads = ThreadPool(count: self.procs)
  }

  deinit { threads.shutdown() }

  /// Runs every task that `roots` need on at most `procs` threads (a task takes as many as
  /// its pragma asks, and an exclusive one takes them all); see `Bigslice.evaluate`.
  func evaluate(
    _ roots: [ShardTask], counters: Counters, cancel: Cancellation? = nil, observer: (any TaskObserver)? = nil,
    retries: Int = defaultRetries, claims: TaskClaims? = nil
  ) throws {
    try Bigslice.evaluate(
      roots, on: self, counters: counters, cancel: cancel, observer: observer, maxConsecutiveLost: maxConsecutiveLost,
      retries: retries, claims: claims)
  }

  var maxConsecutiveLost = defaultMaxConsecutiveLost
  /// Threads taken by the running tasks.
  private let used = Mutex(0)

  func start(
    _ task: ShardTask, idle: Bool, counters: Counters, observer: (any TaskObserver)?, cancel: Cancellation?,
    finish: @escaping @Sendable (consuming TaskOutcome) -> Void
  ) throws -> Bool {
    let need = min(task.procs(of: procs), procs)
    let admitted = used.withLock { used in
      guard idle || used + need <= procs else { return false }
      used += need
      return true
    }
    guard admitted else { return false }
    let job = Handoff((task, counters))
    threads.submit {
      // Nothing here holds the task or its output once `finish` has them: a result dropped as
      // soon as its run returns then finds no reference on this thread keeping its files.
      let outcome = self.runObserved(job.take(), observer: observer, cancel: cancel)
      self.used.withLock { $0 -= need }
      finish(consume outcome)
    }
    return true
  }

  /// Runs `task` here, reporting it running, then done or failed, to `observer`.
  private func runObserved(
    _ job: (task: ShardTask, counters: Counters), observer: (any TaskObserver)?, cancel: Cancellation?
  ) -> TaskOutcome {
    let (task, counters) = job
    let io = TaskIOMeter()
    observer?.record(task, .running, progress: io.progress)
    let taskCounters = Counters()
    do {
      let output = try runner.run(task, counters: taskCounters, io: io, cancel: cancel)
      observer?.record(task, .done, output: output, io: io.io)
      // Under a memory limit, hand the task's freed working memory back to the system:
      // glibc keeps freed blocks in its arenas, and the resident set would hold them.
      if store.isLimited { releaseFreeMemory() }
      counters.merge(taskCounters)
      return .done(output)
    } catch let error as LostInput {
      observer?.record(task, .waiting)
      return .lost(error)
    } catch {
      let wrapped =
        (error as? BigsliceError) ?? BigsliceError.taskFailed(op: task.op, shard: task.shard, cause: error)
      observer?.record(task, .failed, error: wrapped)
      return .failed(wrapped)
    }
  }

  /// Gives freed memory back to the system, at most once every `releaseInterval`: a trim walks
  /// every arena and advises the kernel page range by page range, which for thousands of
  /// small tasks cost more than the tasks (a 2,000-shard shuffle made a million `madvise`
  /// calls).
  private func releaseFreeMemory() {
    let now = ContinuousClock.now
    let due = lastRelease.withLock { last in
      guard now - last >= LocalExecutor.releaseInterval else { return false }
      last = now
      return true
    }
    if due { Memory.releaseFreeMemory() }
  }

  private let lastRelease = Mutex(ContinuousClock.now - LocalExecutor.releaseInterval)
  static let releaseInterval = Duration.milliseconds(50)

  /// Runs `body` on one of the executor's threads.
  func submit(_ body: @escaping @Sendable () -> Void) { threads.submit(body) }

}
