import CSupport

/// The process's memory as the C core holds it: the C library's hold on freed heap memory,
/// and the pool of freed big buffers (from 4 MiB) that columns and combiner tables come from.
///
/// A freed big buffer waits in the pool, still mapped and faulted in, for the next buffer of
/// about its size, while the pool holds less than its cap (512 MiB until lowered). Everything
/// here acts on the whole process, is safe to call from any thread, and allocates nothing.
public enum Memory {
  /// The pool's figures at one instant.
  public struct PoolStatistics: Sendable, Equatable {
    /// Bytes of freed buffers the pool holds now.
    public var heldBytes: Int
    /// The most bytes the pool holds; freed buffers over it go back to the system.
    public var capBytes: Int
    /// Big allocations served from the pool since the process started.
    public var reused: UInt64
    /// Big allocations that needed a fresh mapping since the process started.
    public var mapped: UInt64
  }

  /// Turns off glibc's fastbins: small frees go to the per-thread cache and are then merged
  /// at once, instead of piling up for a later allocation to merge all of them in one long
  /// walk. Call it once, early; later calls change nothing.
  /// - Returns: whether the allocator took the setting; `false` where the C library has no
  ///   such setting.
  @discardableResult
  public static func disableFastbins() -> Bool {
    bs_disable_fastbins() == BS_OK
  }

  /// Gives freed memory back to the system, so the resident set follows what is live rather
  /// than what was ever used: every buffer held in the pool, then the free heap memory of
  /// every malloc arena (glibc's `malloc_trim`; only the pool elsewhere).
  ///
  /// Cost: one `munmap` per held buffer and a walk over the heap's free memory; the next big
  /// buffers are then mapped and faulted in afresh.
  /// - Returns: the bytes the pool gave back (the heap's part is not known).
  @discardableResult
  public static func releaseFreeMemory() -> Int {
    Int(bs_release_free_memory())
  }

  /// Gives every buffer held in the pool back to the system, keeping the pool's cap.
  /// - Returns: the bytes given back.
  @discardableResult
  public static func emptyPool() -> Int {
    let bytes = bs_pool_empty(bs_pool_process())
    precondition(bytes >= 0, "the process's pool cannot be invalid")
    return Int(bytes)
  }

  /// Lowers the pool's cap to `bytes` when that is lower than the cap now, and gives back
  /// what the pool holds if that is over the new cap. A cap is never raised: the lowest that
  /// any caller asked for holds, for the rest of the process. A negative `bytes` counts as 0.
  public static func lowerPoolCap(to bytes: Int) {
    let rc = bs_pool_lower_cap(bs_pool_process(), max(bytes, 0))
    precondition(rc == BS_OK, "the process's pool cannot be invalid")
  }

  /// Lowers the bytes of freed buffers (2 KiB to 4 MiB) each thread keeps for its next
  /// buffers of the same size, 8 MiB at first, when `bytes` is lower. As for the pool's cap,
  /// the lowest any caller asked for holds. A negative `bytes` counts as 0.
  public static func lowerThreadCacheCap(to bytes: Int) {
    bs_thread_cache_lower_cap(max(bytes, 0))
  }

  /// The pool's figures now. Other threads may change them at any time.
  public static var poolStatistics: PoolStatistics {
    var stats = bs_pool_stats()
    let rc = bs_pool_read_stats(bs_pool_process(), &stats)
    precondition(rc == BS_OK, "the process's pool cannot be invalid")
    return PoolStatistics(
      heldBytes: stats.bytes, capBytes: stats.cap, reused: stats.reused, mapped: stats.mapped)
  }

  /// Calls `body` with room for `count` values of `T` (uninitialized) that lives only for the
  /// call. It comes from the calling thread's cache of freed buffers where one of its size
  /// waits there, else the heap, and goes back to that cache: a task's working arrays then
  /// leave no holes in the heap for the objects that outlive the task to split.
  /// - Throws: `FrameError.outOfMemory`; what `body` throws.
  package static func withScratch<T, R>(
    _ type: T.Type, count: Int, _ body: (UnsafeMutableBufferPointer<T>) throws -> R
  ) throws -> R {
    let bytes = max(count, 1) * MemoryLayout<T>.stride
    guard let raw = bs_buffer_alloc(bytes) else { throw FrameError.outOfMemory("\(bytes) bytes of working memory") }
    defer { bs_buffer_free(raw, bytes) }
    return try body(
      UnsafeMutableBufferPointer(start: raw.bindMemory(to: T.self, capacity: max(count, 1)), count: count))
  }
}
