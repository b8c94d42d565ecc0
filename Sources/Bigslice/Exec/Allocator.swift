import Frame

/// The process's allocator, set up for the engine once, by the first session or machine.
///
/// glibc keeps small freed chunks unmerged in "fastbins"; the next large allocation merges
/// every one of them (`malloc_consolidate`), a walk over all of them, and again after the next
/// burst. A result of lists frees millions of small arrays at once, and those walks cost a
/// large share of a cogroup's time, so fastbins are off (`Memory.disableFastbins`). Small
/// frees still go to the per-thread cache first, so small allocations stay fast.
///
/// Big buffers (columns, combiner tables, from 4 MiB) come from the C core's pool of freed
/// mappings, which keeps up to `poolCap` bytes of them faulted in for the next task.
enum Allocator {
  static let configured: Void = { Memory.disableFastbins() }()

  /// The pool's cap without a memory limit (the C core's default).
  static let poolCap = 512 << 20

  /// Caps the pool at an eighth of `memoryLimit`, and each thread's cache of freed working
  /// buffers at a sixty-fourth (at least 1 MiB, which a task's working set of a small frame
  /// needs), so freed memory held for reuse stays small beside the data.
  /// Both are the process's: the lowest cap any session asked for holds.
  static func limitPool(toFit memoryLimit: Int?) {
    configured
    guard let memoryLimit else { return }
    Memory.lowerPoolCap(to: poolCap(toFit: memoryLimit))
    Memory.lowerThreadCacheCap(to: threadCacheCap(toFit: memoryLimit))
  }

  static func poolCap(toFit memoryLimit: Int) -> Int { min(poolCap, memoryLimit / 8) }
  static func threadCacheCap(toFit memoryLimit: Int) -> Int { max(memoryLimit / 64, 1 << 20) }

  /// The freed memory that the pool and the caches of `threads` task threads may hold under
  /// `memoryLimit`: resident, so a store leaves room for it under the limit.
  static func held(toFit memoryLimit: Int, threads: Int) -> Int {
    poolCap(toFit: memoryLimit) + threadCacheCap(toFit: memoryLimit) * threads
  }
}
