import Frame
import SliceIO

struct Tag: Codable, Hashable, Sendable {
  var name: String
  var weight: Int
}

/// A random frame with a column of every kind: scalar keys, strings, bytes, doubles and a
/// boxed type.
func randomFrame(rows: Int, seed: UInt64, distinctKeys: Int64 = 1000) throws -> Frame {
  var rng = SplitMix64(seed: seed)
  let keys = (0..<rows).map { _ in Int64.random(in: 0..<distinctKeys, using: &rng) - distinctKeys / 2 }
  let strings = (0..<rows).map { _ in
    String(repeating: "ab", count: Int.random(in: 0..<6, using: &rng)) + "\(rng.next() % 97)"
  }
  let bytes = (0..<rows).map { _ in
    (0..<Int.random(in: 0..<5, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
  }
  let doubles = (0..<rows).map { _ in Double.random(in: -1...1, using: &rng) }
  let tags = (0..<rows).map { _ in Tag(name: "t\(rng.next() % 5)", weight: Int(rng.next() % 3)) }
  let small = (0..<rows).map { _ in UInt16(truncatingIfNeeded: rng.next()) }
  return try Frame([
    Column(keys), Column(strings: strings), Column(byteArrays: bytes), Column(doubles), Column(boxed: tags),
    Column(small),
    Column((0..<rows).map { _ in Bool.random(using: &rng) }),
  ])
}

func rows(_ frames: [Frame]) -> [[AnyHashable]] { frames.flatMap(\.anyRows) }
