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

  /// Buffers for data that outlives its task, of sizes on both sides of the carved range
  /// (8 KiB to 256 KiB), made on two threads and freed in a shuffled order from the other one:
  /// each is 64-byte aligned, none overlaps another (each keeps the bytes written to it while
  /// the others are written and freed), and so are those made after the frees.
  @Test func lastingBuffersKeepTheirBytesWhateverThreadFreesTheOthers() async throws {
    struct Buffer: @unchecked Sendable {
      let base: UnsafeMutableRawPointer
      let bytes: Int
      let fill: UInt8
    }
    func make(_ count: Int, seed: UInt64) -> [Buffer] {
      var rng = SplitMix64(seed: seed)
      return (0..<count).map { i in
        let bytes = [
          Int.random(in: (1 << 10)..<(8 << 10), using: &rng), Int.random(in: (8 << 10)..<(256 << 10), using: &rng),
          Int.random(in: (256 << 10)..<(3 << 20), using: &rng),
        ][i % 7 == 0 ? 2 : i % 3 == 0 ? 0 : 1]
        let base = bs_lasting_alloc(bytes)!
        let fill = UInt8(truncatingIfNeeded: seed &+ UInt64(i))
        base.initializeMemory(as: UInt8.self, repeating: fill, count: bytes)
        return Buffer(base: base, bytes: bytes, fill: fill)
      }
    }
    // Every 61st byte and the last: a buffer overlapping another (of 1 KiB at least) shows.
    func intact(_ buffer: Buffer) -> Bool {
      let bytes = UnsafeRawBufferPointer(start: buffer.base, count: buffer.bytes)
      let probes = stride(from: 0, to: bytes.count, by: 61).map { $0 } + [bytes.count - 1]
      return Int(bitPattern: buffer.base) % 64 == 0 && probes.allSatisfy { bytes[$0] == buffer.fill }
    }
    async let first = Task.detached { make(300, seed: 1) }.value
    async let second = Task.detached { make(300, seed: 2) }.value
    var buffers = await first + second
    var rng = SplitMix64(seed: 3)
    buffers.shuffle(using: &rng)
    let (freed, kept) = (Array(buffers[..<300]), Array(buffers[300...]))
    await Task.detached {
      for buffer in freed { bs_lasting_free(buffer.base, buffer.bytes) }
    }.value
    let later = make(300, seed: 4)
    let all = kept + later
    #expect(all.allSatisfy(intact))
    for buffer in all { bs_lasting_free(buffer.base, buffer.bytes) }
  }
}
