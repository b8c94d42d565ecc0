import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

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

/// The cancellation of one evaluation: set from any thread; it wakes the evaluating thread,
/// which then starts no new task.
final class Cancellation: Sendable {
  private let state = Mutex<(cancelled: Bool, wake: (@Sendable () -> Void)?)>((false, nil))

  func cancel() {
    let wake = state.withLock { s -> (@Sendable () -> Void)? in
      s.cancelled = true
      return s.wake
    }
    wake?()
  }

  var isCancelled: Bool { state.withLock { $0.cancelled } }

  /// Calls `wake` on cancellation (at once if already cancelled) until `detach()`.
  func attach(_ wake: @escaping @Sendable () -> Void) {
    let now = state.withLock { s -> Bool in
      s.wake = wake
      return s.cancelled
    }
    if now { wake() }
  }

  func detach() { state.withLock { $0.wake = nil } }
}
