import CSupport
import Frame
import Testing

/// The process's pool is named by `bs_pool_process()`, never by NULL, and `Memory` acts on
/// it. These tests share the pool with every test running at the same time, so they check
/// only what others cannot undo: the same pool, counters that only grow, a cap that only
/// falls.
@Suite struct ProcessMemoryTests {
  @Test func theProcessPoolIsOneAndTheSamePool() throws {
    let pool = try #require(bs_pool_process())
    #expect(bs_pool_process() == pool)
  }

  /// bs_buffer_alloc takes a big buffer from the process's pool or maps it for that pool:
  /// either way one of its counters moves.
  @Test func bigColumnBuffersComeFromTheProcessPool() throws {
    var before = bs_pool_stats()
    #expect(bs_pool_read_stats(bs_pool_process(), &before) == BS_OK)
    let bytes = 6 << 20
    let p = try #require(bs_buffer_alloc(bytes))
    defer { bs_buffer_free(p, bytes) }
    let after = Memory.poolStatistics
    #expect(after.reused + after.mapped >= before.reused + before.mapped + 1)
  }

  @Test func theProcessPoolCannotBeDestroyed() throws {
    #expect(bs_pool_destroy(bs_pool_process()) == BS_EINVAL)
    let p = try #require(bs_buffer_alloc(5 << 20), "the pool still serves")
    bs_buffer_free(p, 5 << 20)
  }

  /// NULL used to mean the process's pool. Now every pool function says BS_EINVAL, or
  /// returns no buffer, and leaves the process's pool alone.
  @Test func aNullPoolIsAnErrorNotTheProcessPool() {
    #expect(bs_pool_lower_cap(nil, 0) == BS_EINVAL)
    #expect(bs_pool_empty(nil) == Int64(BS_EINVAL.rawValue))
    #expect(bs_pool_buffer_alloc(nil, 64) == nil)
    #expect(bs_pool_buffer_alloc(nil, 8 << 20) == nil)
    #expect(bs_pool_big_alloc(nil, 8 << 20) == nil)
    #expect(bs_pool_buffer_free(nil, nil, 0) == BS_EINVAL)
    var stats = bs_pool_stats()
    #expect(bs_pool_read_stats(nil, &stats) == BS_EINVAL)
    #expect(bs_pool_read_stats(bs_pool_process(), nil) == BS_EINVAL)
    #expect(bs_pool_destroy(nil) == BS_OK, "destroying nothing is a no-op, as free(NULL)")
  }

  /// Lowering by one byte keeps the pool useful for the other tests; raising is ignored.
  /// (Sessions under a memory limit, in other tests of this process, may have lowered the cap
  /// to anything, 0 included, and may lower it further meanwhile.)
  @Test func lowerPoolCapLowersTheProcessPoolsCapAndNeverRaisesIt() {
    let cap = Memory.poolStatistics.capBytes
    let lowered = max(cap - 1, 0)
    Memory.lowerPoolCap(to: lowered)
    #expect(Memory.poolStatistics.capBytes <= lowered)
    Memory.lowerPoolCap(to: cap + (1 << 20))
    #expect(Memory.poolStatistics.capBytes <= lowered, "a cap never rises")
  }

  @Test func poolStatisticsAreTheProcessPools() {
    var stats = bs_pool_stats()
    #expect(bs_pool_read_stats(bs_pool_process(), &stats) == BS_OK)
    let figures = Memory.poolStatistics
    #expect(figures.capBytes <= stats.cap, "a cap only falls")
    #expect(figures.reused >= stats.reused && figures.mapped >= stats.mapped)
  }

  @Test func releasingAndEmptyingReportWhatThePoolGaveBack() {
    #expect(Memory.emptyPool() >= 0)
    #expect(Memory.releaseFreeMemory() >= 0)
  }

  #if canImport(Glibc)
    @Test func glibcTakesTheFastbinSetting() {
      #expect(Memory.disableFastbins())
      #expect(bs_disable_fastbins() == BS_OK)
    }
  #endif
}
