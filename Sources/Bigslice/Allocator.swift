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
enum Allocator {
  static let configured: Void = { _ = bs_disable_fastbins() }()
}
