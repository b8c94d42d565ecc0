import Dispatch
import Synchronization

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// A fixed set of threads of our own, running closures (`submit`) and Swift tasks that prefer
/// it (`Task(executorPreference:)`) in the order they arrive.
///
/// Work that blocks (CPU-bound task bodies, file reads, a synchronous API waiting for an
/// asynchronous call) runs here instead of on Swift's cooperative pool or Dispatch's global
/// queues, which have only as many threads as cores and are shared with everything else in
/// the process: what waits here can never starve them, and `count` bodies really run at once.
///
/// The queue is guarded by a `Mutex` and counted by a semaphore, both held by the pool
/// object, so no lock lives in a stored property whose address Swift may move.
public final class ThreadPool: TaskExecutor, @unchecked Sendable {
  private enum Work: @unchecked Sendable {
    case closure(() -> Void)
    case job(UnownedJob)
  }

  private struct Queue {
    /// Queued work from `head` on; the slots before it are emptied as their work is taken, so
    /// that what it captured goes with it (a task's output, say), not when the queue drains.
    var work: [Work?] = []
    var head = 0
    var stopping = false
    var threads: [pthread_t] = []
  }

  /// The number of threads.
  public let count: Int
  private let queue = Mutex(Queue())
  /// One signal per queued item, and one per thread when the pool stops.
  private let available = DispatchSemaphore(value: 0)

  /// A pool of `count` threads (at least one), running until `shutdown()`.
  public init(count: Int) {
    self.count = max(1, count)
    var threads: [pthread_t] = []
    for _ in 0..<self.count {
      var thread = pthread_t()
      let box = Unmanaged.passRetained(self).toOpaque()
      let rc = pthread_create(
        &thread, nil,
        { raw in
          let pool = Unmanaged<ThreadPool>.fromOpaque(raw!).takeRetainedValue()
          pool.work()
          return nil
        }, box)
      precondition(rc == 0, "pthread_create failed: \(rc)")
      threads.append(thread)
    }
    queue.withLock { $0.threads = threads }
  }

  /// The pool shared by the process's own asynchronous plumbing: the services of in-process
  /// machines, reaping child processes, and the Swift tasks that `blockingAwait` waits for.
  /// Work on it may do short synchronous I/O but never waits for other work on it. Four
  /// threads, for the life of the process.
  public static let shared = ThreadPool(count: 4)

  /// Queues `body` to run on one of the threads.
  /// - Precondition: the pool has not been shut down.
  public func submit(_ body: @escaping () -> Void) { push(.closure(body)) }

  public func enqueue(_ job: consuming ExecutorJob) { push(.job(UnownedJob(job))) }

  private func push(_ work: Work) {
    queue.withLock { q in
      precondition(!q.stopping, "work submitted to a thread pool that was shut down")
      q.work.append(work)
    }
    available.signal()
  }

  /// Stops the threads once the queued work is done, and waits for them. Called from one of
  /// the pool's own threads, it does not wait for that thread.
  public func shutdown() {
    let threads = queue.withLock { q -> [pthread_t] in
      guard !q.stopping else { return [] }
      q.stopping = true
      return q.threads
    }
    for _ in threads { available.signal() }
    let me = pthread_self()
    for thread in threads {
      if pthread_equal(thread, me) != 0 {
        pthread_detach(thread)
      } else {
        pthread_join(thread, nil)
      }
    }
  }

  private func work() {
    pthread_setspecific(ThreadPool.current, Unmanaged.passUnretained(self).toOpaque())
    while true {
      available.wait()
      let next = queue.withLock { q -> Work? in
        guard q.head < q.work.count else { return nil }
        let work = q.work[q.head]
        q.work[q.head] = nil
        q.head += 1
        if q.head == q.work.count {
          q.work.removeAll(keepingCapacity: true)
          q.head = 0
        } else if q.head > 1024 && q.head * 2 > q.work.count {
          q.work.removeFirst(q.head)
          q.head = 0
        }
        return work
      }
      // A signal with nothing queued is the pool stopping.
      guard let next else { return }
      switch next {
      case .closure(let body): body()
      case .job(let job): job.runSynchronously(on: asUnownedTaskExecutor())
      }
    }
  }

  /// Waits on the calling thread for `body`, run as a Swift task on this pool: the bridge from
  /// synchronous code to asynchronous calls, which never needs a thread of the cooperative
  /// pool.
  /// - Precondition: the calling thread is not one of this pool's, which could wait for itself.
  /// - Throws: what `body` throws.
  public func blockingAwait<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    precondition(
      pthread_getspecific(ThreadPool.current) != Unmanaged.passUnretained(self).toOpaque(),
      "blockingAwait on a thread of the pool it waits for")
    let outcome = Outcome<T>()
    let done = DispatchSemaphore(value: 0)
    Task(executorPreference: self) {
      do {
        outcome.value = .success(try await body())
      } catch {
        outcome.value = .failure(error)
      }
      done.signal()
    }
    done.wait()
    return try outcome.value!.get()
  }

  /// The pool whose thread this is, for `blockingAwait`'s check.
  private static let current: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key, nil)
    return key
  }()

  /// Runs `body` on a new thread of its own, detached: a caller that must wait for a long time
  /// (a whole job driven from async code) waits there, not on a pool. If no thread can be made,
  /// `body` runs on the calling thread.
  public static func detach(_ body: @escaping @Sendable () -> Void) {
    final class Box {
      let body: @Sendable () -> Void
      init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body)).toOpaque()
    let rc = pthread_create(
      &thread, nil,
      { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
      }, box)
    guard rc == 0 else {
      Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body()
      return
    }
    pthread_detach(thread)
  }
}

/// What a task that `blockingAwait` waits for ended with: written by the task before it
/// signals, read by the waiter after.
private final class Outcome<T>: @unchecked Sendable {
  var value: Result<T, Error>?
}
