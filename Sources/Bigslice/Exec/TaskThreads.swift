import Bigmachine
import Dispatch
import Frame
import NIOCore
import SliceIO
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Runs the Swift tasks of the machine executor on threads of its own, never on Swift's
/// cooperative pool: the threads that wait for those tasks (a session's caller, a task thread
/// reading a peer's partition) may themselves be pool threads, and the pool has only as many
/// threads as cores.
enum BridgeExecutor {
  static let shared = ThreadPoolTaskExecutor(threads: 4)
}

/// Waits on this thread for `body`, run as a Swift task on the bridge executor's threads.
func blockingAwait<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
  let box = Mutex<Result<UncheckedBox<T>, Error>?>(nil)
  let done = DispatchSemaphore(value: 0)
  Task(executorPreference: BridgeExecutor.shared) {
    do {
      let value = try await body()
      box.withLock { $0 = .success(UncheckedBox(value)) }
    } catch {
      box.withLock { $0 = .failure(error) }
    }
    done.signal()
  }
  done.wait()
  return try box.withLock { $0! }.get().value
}

/// A fixed pool of dedicated threads that run task bodies.
///
/// Task bodies are CPU-bound and may block on files, so they run neither on Swift's
/// cooperative pool nor on Dispatch's global pool (both sized to the cores, and shared with
/// everything else in the process): `count` threads of our own run them, so `procs` tasks
/// really do run at once. The threads stop when the pool goes away.
final class TaskThreads: @unchecked Sendable {
  let count: Int
  private var threads: [pthread_t] = []
  private var queue: [() -> Void] = []
  private var head = 0
  private var stopping = false
  private var mutex = pthread_mutex_t()
  private var nonEmpty = pthread_cond_t()

  init(count: Int) {
    self.count = max(1, count)
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&nonEmpty, nil)
    for _ in 0..<self.count {
      var thread = pthread_t()
      let box = Unmanaged.passRetained(self).toOpaque()
      let rc = pthread_create(
        &thread, nil,
        { raw in
          let pool = Unmanaged<TaskThreads>.fromOpaque(raw!).takeRetainedValue()
          pool.work()
          return nil
        }, box)
      precondition(rc == 0, "pthread_create failed: \(rc)")
      threads.append(thread)
    }
  }

  /// Stops the threads once the queued work is done, and waits for them.
  func shutdown() {
    pthread_mutex_lock(&mutex)
    stopping = true
    pthread_cond_broadcast(&nonEmpty)
    pthread_mutex_unlock(&mutex)
    for thread in threads { pthread_join(thread, nil) }
    threads = []
  }

  /// Queues `body` to run on one of the threads.
  func async(_ body: @escaping () -> Void) {
    pthread_mutex_lock(&mutex)
    queue.append(body)
    pthread_cond_signal(&nonEmpty)
    pthread_mutex_unlock(&mutex)
  }

  private func work() {
    while true {
      pthread_mutex_lock(&mutex)
      while head == queue.count && !stopping { pthread_cond_wait(&nonEmpty, &mutex) }
      if head == queue.count {
        pthread_mutex_unlock(&mutex)
        return
      }
      let body = queue[head]
      head += 1
      if head == queue.count {
        queue.removeAll(keepingCapacity: true)
        head = 0
      }
      pthread_mutex_unlock(&mutex)
      body()
    }
  }
}

/// Runs `body` on a new detached thread: a job driven from async code waits there, not on a
/// thread of the cooperative pool.
func detachThread(_ body: @escaping @Sendable () -> Void) {
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
    // No thread to be had: run here rather than never.
    Unmanaged<Box>.fromOpaque(box).takeRetainedValue().body()
    return
  }
  pthread_detach(thread)
}
