import CSupport
import Frame
import Testing

/// CSupport's pool of big buffers, each test on a pool of its own (the process's pool is
/// shared with every test running at the same time): whatever it hands out is whole, apart
/// from every other live buffer, aligned, and zeroed where zeroing is promised, however blocks
/// were split, grown and reused; and it keeps to its cap.
/// A live buffer of a test, each 8-byte word stamped with `stamp` plus its index.
private struct Stamped {
  let p: UnsafeMutableRawPointer
  let bytes: Int
  let stamp: UInt64

  /// Stamps `bytes` at `p`.
  init(_ p: UnsafeMutableRawPointer, bytes: Int, stamp: UInt64) {
    self.p = p
    self.bytes = bytes
    self.stamp = stamp
    let words = p.assumingMemoryBound(to: UInt64.self)
    for i in 0..<(bytes / 8) { words[i] = stamp &+ UInt64(i) }
  }

  /// Expects every `step`th word and the last to hold their stamps still.
  func check(every step: Int) {
    let words = p.assumingMemoryBound(to: UInt64.self)
    let n = bytes / 8
    for i in stride(from: 0, to: n, by: step) { #expect(words[i] == stamp &+ UInt64(i)) }
    #expect(words[n - 1] == stamp &+ UInt64(n - 1))
  }
}

@Suite struct MemoryPoolTests {
  func stats(_ pool: OpaquePointer) -> bs_pool_stats {
    var s = bs_pool_stats()
    #expect(bs_pool_read_stats(pool, &s) == BS_OK)
    return s
  }

  /// Random sizes around the pool's 4 MiB threshold, allocated, stamped, checked and freed in
  /// random order: a block split or grown wrongly would overlap another and lose its stamp.
  @Test func liveBuffersNeverOverlap() throws {
    let pool = try #require(bs_pool_new(96 << 20))
    defer { _ = bs_pool_destroy(pool) }
    var rng = SplitMix64(seed: 41)
    var live: [Stamped] = []
    for round in 0..<300 {
      if live.count < 3 || Int.random(in: 0..<2, using: &rng) == 0 && live.count < 6 {
        let bytes = Int.random(in: 1...24, using: &rng) << 20 + Int.random(in: 0..<4096, using: &rng) * 8
        let p = try #require(bs_pool_buffer_alloc(pool, bytes))
        #expect(UInt(bitPattern: p) % 64 == 0, "\(bytes) bytes")
        live.append(Stamped(p, bytes: bytes, stamp: UInt64(round) << 40))
      } else {
        let b = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
        b.check(every: 4093)
        _ = bs_pool_buffer_free(pool, b.p, b.bytes)
      }
      for b in live { b.check(every: 4093) }
      #expect(stats(pool).bytes <= 96 << 20)
    }
    for b in live { _ = bs_pool_buffer_free(pool, b.p, b.bytes) }
    let after = stats(pool)
    #expect(after.reused > 50, "most big buffers come from the pool: \(after.reused) reused, \(after.mapped) mapped")
  }

  /// A table's block is zero even when it is a buffer full of old data, reused whole or as
  /// the front of a bigger one (the rest of which stays in the pool).
  @Test func bigBlocksComeZeroedWhenReused() throws {
    let pool = try #require(bs_pool_new(64 << 20))
    defer { _ = bs_pool_destroy(pool) }
    for (dirtyBytes, bytes) in [(6 << 20, 6 << 20), (24 << 20, 8 << 20), (9 << 20, 5 << 20)] {
      let dirty = try #require(bs_pool_buffer_alloc(pool, dirtyBytes))
      dirty.initializeMemory(as: UInt8.self, repeating: 0xab, count: dirtyBytes)
      _ = bs_pool_buffer_free(pool, dirty, dirtyBytes)
      let reused = stats(pool).reused
      let table = try #require(bs_pool_big_alloc(pool, bytes))
      #expect(table == dirty, "the freed buffer is reused")
      #expect(stats(pool).reused == reused + 1)
      #expect(UnsafeRawBufferPointer(start: table, count: bytes).allSatisfy { $0 == 0 })
      _ = bs_pool_buffer_free(pool, table, bytes)
      _ = bs_pool_empty(pool)
    }
  }

  /// The pool keeps freed buffers up to its cap and gives back the rest; a lower cap lets go
  /// of what is over it, and a higher one is ignored.
  @Test func thePoolKeepsToItsCap() throws {
    let pool = try #require(bs_pool_new(16 << 20))
    defer { _ = bs_pool_destroy(pool) }
    let blocks = try (0..<4).map { _ in try #require(bs_pool_buffer_alloc(pool, 8 << 20)) }
    for p in blocks { _ = bs_pool_buffer_free(pool, p, 8 << 20) }
    #expect(stats(pool).bytes == 16 << 20)
    #expect(bs_pool_lower_cap(pool, 32 << 20) == BS_OK)
    #expect(stats(pool).cap == 16 << 20)
    #expect(bs_pool_lower_cap(pool, 8 << 20) == BS_OK)
    #expect(stats(pool).cap == 8 << 20)
    #expect(stats(pool).bytes == 0)
  }

  /// Emptying a pool gives back, and reports, exactly what it held.
  @Test func emptyingAPoolReportsTheBytesItGaveBack() throws {
    let pool = try #require(bs_pool_new(64 << 20))
    defer { _ = bs_pool_destroy(pool) }
    let blocks = try [5 << 20, 9 << 20].map { ($0, try #require(bs_pool_buffer_alloc(pool, $0))) }
    for (bytes, p) in blocks { #expect(bs_pool_buffer_free(pool, p, bytes) == BS_OK) }
    let held = stats(pool).bytes
    #expect(held == (6 << 20) + (10 << 20), "whole 2 MiB huge pages")
    #expect(bs_pool_empty(pool) == Int64(held))
    #expect(stats(pool).bytes == 0)
    #expect(bs_pool_empty(pool) == 0)
  }

  /// Buffers of 2 KiB to 1 MiB (the least a session's memory limit lowers the thread cache's
  /// cap to), of a few sizes, allocated and freed in random order on one thread: a freed one
  /// comes back for the next buffer of its size, never for another size, a live one never
  /// overlaps another, a table from the cache is zeroed, and the thread's cache keeps to its
  /// bound and is emptied by a release.
  @Test func freedMidSizeBuffersComeBackForTheirSizeOnly() throws {
    let pool = try #require(bs_pool_new(64 << 20))
    defer { _ = bs_pool_destroy(pool) }
    let sizes = [2_048, 4_160, 40_000, 300_000, 1 << 20]
    var rng = SplitMix64(seed: 7)
    var live: [Stamped] = []
    for round in 0..<400 {
      if live.count < 2 || Int.random(in: 0..<2, using: &rng) == 0 && live.count < 12 {
        let bytes = sizes[Int.random(in: 0..<sizes.count, using: &rng)]
        let table = Int.random(in: 0..<3, using: &rng) == 0
        let p = try #require(table ? bs_pool_big_alloc(pool, bytes) : bs_pool_buffer_alloc(pool, bytes))
        #expect(UInt(bitPattern: p) % 64 == 0)
        if table { #expect(UnsafeRawBufferPointer(start: p, count: bytes).allSatisfy { $0 == 0 }, "\(bytes)") }
        live.append(Stamped(p, bytes: bytes, stamp: UInt64(round) << 40))
      } else {
        let b = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
        b.check(every: 61)
        _ = bs_pool_buffer_free(pool, b.p, b.bytes)
        #expect(bs_thread_cached_bytes() <= 8 << 20)
        if Int.random(in: 0..<4, using: &rng) == 0 {
          let again = try #require(bs_pool_buffer_alloc(pool, b.bytes))
          #expect(again == b.p, "the buffer just freed serves the next of its size (\(b.bytes))")
          _ = bs_pool_buffer_free(pool, again, b.bytes)
        }
      }
      for b in live { b.check(every: 61) }
    }
    for b in live { _ = bs_pool_buffer_free(pool, b.p, b.bytes) }
    #expect(bs_thread_cached_bytes() > 0)
    _ = bs_release_free_memory()
    #expect(bs_thread_cached_bytes() == 0)
  }
}
