import Frame
import Testing
import Workloads

/// The generators' remainder by multiplication equals `%` for every divisor shape: powers of
/// two, small and large odd ones, the largest, and random ones, at the edges of each.
@Suite struct RemainderTests {
  @Test func remaindersEqualTheDivisionsOnes() {
    var rng = SplitMix64(seed: 17)
    var divisors: [UInt64] = [1, 2, 3, 5, 7, 10, 641, 1000, 1 << 20, 1_000_000, 5_000_000, (1 << 32) + 1]
    divisors += [(1 << 63) - 1, 1 << 63, (1 << 63) + 1, .max - 1, .max]
    divisors += (0..<200).map { _ in
      UInt64.random(in: 1 ... .max, using: &rng) >> UInt64.random(in: 0...63, using: &rng)
    }
    for d in divisors where d > 0 {
      let r = Remainder(d)
      var xs: [UInt64] = [
        0, 1, d - 1, d, d &+ 1, .max, .max - 1, d &* 2, (UInt64.max / d) &* d, (UInt64.max / d) &* d &- 1,
      ]
      xs += (0..<500).map { _ in UInt64.random(in: 0 ... .max, using: &rng) }
      for x in xs {
        #expect(r.of(x) == x % d, "\(x) % \(d)")
      }
    }
  }
}
