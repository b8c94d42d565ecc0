import CSupport
import Frame
import Testing

/// CSupport's pool of big buffers: whatever it hands out is whole, apart from every other live
/// buffer, and zeroed where zeroing is promised, however blocks were split, grown and reused.
/// (Other tests use the pool at the same time, so these check properties, not counts.)
@Suite struct MemoryPoolTests {
  /// Random sizes around the pool's 4 MiB threshold, allocated, stamped, checked and freed in
  /// random order: a block split or grown wrongly would overlap another and lose its stamp.
  @Test func liveBuffersNeverOverlap() {
    var rng = SplitMix64(seed: 41)
    var live: [(p: UnsafeMutableRawPointer, bytes: Int, stamp: UInt64)] = []
    func check(_ b: (p: UnsafeMutableRawPointer, bytes: Int, stamp: UInt64)) {
      let words = b.p.assumingMemoryBound(to: UInt64.self)
      let n = b.bytes / 8
      for i in stride(from: 0, to: n, by: 4093) { #expect(words[i] == b.stamp &+ UInt64(i)) }
      #expect(words[n - 1] == b.stamp &+ UInt64(n - 1))
    }
    for round in 0..<200 {
      if live.count < 6 || Int.random(in: 0..<3, using: &rng) > 0 && live.count < 12 {
        let bytes = Int.random(in: 1...40, using: &rng) << 20 + Int.random(in: 0..<4096, using: &rng) * 8
        guard let p = bs_buffer_alloc(bytes) else {
          Issue.record("no buffer of \(bytes) bytes")
          return
        }
        #expect(UInt(bitPattern: p) % 64 == 0)
        let stamp = UInt64(round) << 40
        let words = p.assumingMemoryBound(to: UInt64.self)
        for i in 0..<(bytes / 8) { words[i] = stamp &+ UInt64(i) }
        live.append((p, bytes, stamp))
      } else {
        let b = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
        check(b)
        bs_buffer_free(b.p, b.bytes)
      }
      for b in live { check(b) }
    }
    for b in live { bs_buffer_free(b.p, b.bytes) }
  }

  /// A table's block is zero even when it is a reused buffer full of old data.
  @Test func bigBlocksComeZeroedEvenWhenReused() {
    for bytes in [6 << 20, 24 << 20, 5 << 20, 24 << 20] {
      guard let dirty = bs_buffer_alloc(bytes) else {
        Issue.record("no buffer")
        return
      }
      dirty.initializeMemory(as: UInt8.self, repeating: 0xab, count: bytes)
      bs_buffer_free(dirty, bytes)
      guard let table = bs_big_alloc(bytes) else {
        Issue.record("no block")
        return
      }
      let b = UnsafeRawBufferPointer(start: table, count: bytes)
      #expect(b.allSatisfy { $0 == 0 })
      bs_big_free(table, bytes)
    }
    #expect(bs_pool_read_stats().reused > 0)
  }

  /// The pool never holds more than its cap; a lower cap lets go of what is over it.
  @Test func thePoolKeepsToItsCap() {
    let before = bs_pool_read_stats().cap
    defer { bs_pool_set_cap(before) }
    bs_pool_set_cap(16 << 20)
    let blocks = (0..<4).compactMap { _ in bs_buffer_alloc(8 << 20) }
    #expect(blocks.count == 4)
    for p in blocks { bs_buffer_free(p, 8 << 20) }
    #expect(bs_pool_read_stats().bytes <= 16 << 20)
    bs_pool_set_cap(0)
    #expect(bs_pool_read_stats().bytes == 0)
  }
}
