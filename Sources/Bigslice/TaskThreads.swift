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
