import CSupport

/// The process's allocator, set up for the engine once, by the first session or machine.
///
/// glibc keeps small freed chunks unmerged in "fastbins"; the next large allocation merges
/// every one of them (`malloc_consolidate`), a walk over all of them, and again after the next
/// burst. A result of lists frees millions of small arrays at once, and those walks took a
/// fifth of W3: in-process 2.09–2.22 s with fastbins, 1.65–1.77 s without; on two machines
/// about 4.0 s against 3.3 s (`bigslice-bench jobs --only W1,W3 --repeat 5`, the same binary
/// with `GLIBC_TUNABLES=glibc.malloc.mxfast=0`; W1 unchanged). Small frees still go to the
/// per-thread cache first, so small allocations stay fast.
///
/// Big buffers (columns, combiner tables, from 4 MiB) come from CSupport's pool of freed
/// mappings, which keeps up to `poolCap` bytes of them faulted in for the next task.
enum Allocator {
  static let configured: Void = { _ = bs_disable_fastbins() }()

  /// The pool's cap without a memory limit (CSupport's default).
  static let poolCap = 512 << 20

  /// Caps the pool at an eighth of `memoryLimit`, so freed memory held for reuse stays small
  /// beside the data. The pool is the process's: the lowest cap any session asked for holds.
  static func limitPool(toFit memoryLimit: Int?) {
    configured
    guard let memoryLimit else { return }
    bs_pool_lower_cap(nil, min(poolCap, memoryLimit / 8))
  }
}
