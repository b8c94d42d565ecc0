import Frame
import SliceIO
import Testing

@Suite struct PartitionBitsTests {
  @Test(arguments: [0, 1, 63, 64, 65, 200])
  func membersAreThePartitionsInsertedInOrder(count: Int) {
    var rng = SplitMix64(seed: UInt64(count))
    for density in [0.0, 0.1, 0.5, 1.0] {
      let want = (0..<count).filter { _ in Double.random(in: 0..<1, using: &rng) < density }
      var bits = PartitionBits(count: count)
      for p in want.shuffled(using: &rng) { bits.insert(p) }
      #expect(Array(bits.members) == want, "\(count) partitions, density \(density)")
      #expect(bits.count(in: 0..<count) == want.count)
    }
  }
}
