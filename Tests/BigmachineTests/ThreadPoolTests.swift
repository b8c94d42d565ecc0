import Bigmachine
import Dispatch
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite struct ThreadPoolTests {
  /// `count` bodies run at once: each waits until all of them have started.
  @Test func countBodiesRunAtOnce() {
    let pool = ThreadPool(count: 3)
    let started = Atomic<Int>(0)
    let done = DispatchSemaphore(value: 0)
    for _ in 0..<3 {
      pool.submit {
        started.add(1, ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(30)
        while started.load(ordering: .relaxed) < 3 && ContinuousClock.now < deadline { usleep(100) }
        done.signal()
      }
    }
    for _ in 0..<3 { done.wait() }
    #expect(started.load(ordering: .relaxed) == 3)
    pool.shutdown()
  }

  /// What a finished body captured goes with it, though later work is still queued: a pool
  /// that kept taken work until its queue drained kept a task's output (and its spill file)
  /// alive after the job that made it ended.
  @Test func aFinishedBodyLetsGoOfWhatItCaptured() {
    final class Captured: Sendable {}
    let pool = ThreadPool(count: 1)
    let release = DispatchSemaphore(value: 0)
    let blocked = DispatchSemaphore(value: 0)
    weak var gone: Captured?
    do {
      let captured = Captured()
      gone = captured
      pool.submit { _ = captured }
    }
    pool.submit {
      blocked.signal()
      release.wait()
    }
    pool.submit {}
    blocked.wait()
    // The first body has run, the second is running, the third is queued.
    #expect(gone == nil, "the first body's capture outlived it")
    release.signal()
    pool.shutdown()
  }

  /// Shutdown runs what was queued before it, in order on one thread, then returns.
  @Test func shutdownRunsTheQueuedWorkFirst() {
    let pool = ThreadPool(count: 1)
    let order = Mutex<[Int]>([])
    for i in 0..<1000 { pool.submit { order.withLock { $0.append(i) } } }
    pool.shutdown()
    #expect(order.withLock { $0 } == Array(0..<1000))
  }

  /// A pool whose last task shuts it down from one of its own threads does not wait for itself.
  @Test func aPoolShutDownFromItsOwnThreadStops() {
    let pool = ThreadPool(count: 2)
    let done = DispatchSemaphore(value: 0)
    pool.submit {
      pool.shutdown()
      done.signal()
    }
    #expect(done.wait(timeout: .now() + 30) == .success)
  }

  /// `blockingAwait` runs a Swift task on the pool, returns its value and rethrows its error.
  @Test func swiftTasksRunOnThePoolAndBlockingAwaitBridgesThem() throws {
    struct Refused: Error {}
    let pool = ThreadPool(count: 2)
    let value = try pool.blockingAwait { () async throws -> Int in
      await Task.yield()
      return 42
    }
    #expect(value == 42)
    #expect(throws: Refused.self) { try pool.blockingAwait { () async throws -> Int in throw Refused() } }
    pool.shutdown()
  }

  /// A detached body runs on a thread of its own while the caller waits.
  @Test func detachRunsOnANewThread() {
    let caller = pthread_self()
    let other = Atomic<Bool>(false)
    let done = DispatchSemaphore(value: 0)
    ThreadPool.detach {
      other.store(pthread_equal(pthread_self(), caller) == 0, ordering: .relaxed)
      done.signal()
    }
    done.wait()
    let ranElsewhere = other.load(ordering: .relaxed)
    #expect(ranElsewhere)
  }
}
