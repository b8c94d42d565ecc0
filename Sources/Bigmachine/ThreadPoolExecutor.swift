import NIOConcurrencyHelpers

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// A task executor on threads of its own: Swift tasks that prefer it
/// (`Task(executorPreference:)`) never need a thread of the cooperative pool, which has only
/// as many threads as cores. Code that blocks a pool thread while it waits for such tasks
/// (a synchronous API over asynchronous calls) cannot starve them.
public final class ThreadPoolTaskExecutor: TaskExecutor, @unchecked Sendable {
  private let lock = NIOLock()
  private var jobs: [UnownedJob] = []
  private var head = 0
  private var cond = pthread_cond_t()
  private var mutex = pthread_mutex_t()

  /// An executor running jobs on `threads` threads, which live as long as the process.
  public init(threads: Int) {
    pthread_mutex_init(&mutex, nil)
    pthread_cond_init(&cond, nil)
    for _ in 0..<max(1, threads) {
      var thread = pthread_t()
      let box = Unmanaged.passRetained(self).toOpaque()
      let rc = pthread_create(
        &thread, nil,
        { raw in
          let pool = Unmanaged<ThreadPoolTaskExecutor>.fromOpaque(raw!).takeRetainedValue()
          pool.work()
          return nil
        }, box)
      precondition(rc == 0, "pthread_create failed: \(rc)")
      pthread_detach(thread)
    }
  }

  public func enqueue(_ job: consuming ExecutorJob) {
    let job = UnownedJob(job)
    pthread_mutex_lock(&mutex)
    jobs.append(job)
    pthread_cond_signal(&cond)
    pthread_mutex_unlock(&mutex)
  }

  private func work() {
    while true {
      pthread_mutex_lock(&mutex)
      while head == jobs.count { pthread_cond_wait(&cond, &mutex) }
      let job = jobs[head]
      head += 1
      if head > 1024 && head * 2 > jobs.count {
        jobs.removeFirst(head)
        head = 0
      }
      pthread_mutex_unlock(&mutex)
      job.runSynchronously(on: asUnownedTaskExecutor())
    }
  }

  /// The executor of Bigmachine's own work where callers may block the pool: the services of
  /// in-process machines. Four threads.
  public static let shared = ThreadPoolTaskExecutor(threads: 4)
}
