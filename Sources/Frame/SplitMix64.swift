/// The splitmix64 finaliser of ../BENCHMARKS.md: every engine generates benchmark data with it,
/// so results agree by checksum.
@inlinable
public func splitmix64(_ x: UInt64) -> UInt64 {
  var z = x &+ 0x9E37_79B9_7F4A_7C15
  z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
  z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
  return z ^ (z >> 31)
}

/// A seeded, reproducible random number generator (splitmix64 over a counter), for tests and
/// data generators that must give the same values in every process.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  @usableFromInline var state: UInt64

  public init(seed: UInt64) { state = seed }

  @inlinable
  public mutating func next() -> UInt64 {
    defer { state &+= 1 }
    return splitmix64(state)
  }
}
