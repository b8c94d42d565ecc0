import CSupport
import Frame
import SliceIO
import Testing

@Suite struct BlockTests {
  func encode(_ raw: [UInt8], level: Int32, rows: Int = 3) throws -> [UInt8] {
    let out = ByteWriter()
    try raw.withUnsafeBytes { try BlockEncoder(level: level).encode($0, rows: rows, into: out) }
    return Array(out.bytes)
  }

  @Test(arguments: [BlockEncoder.stored, -5, -1, 1, 3, 19])
  func blocksRoundTrip(level: Int32) throws {
    var rng = SplitMix64(seed: UInt64(bitPattern: Int64(level)))
    let inputs: [[UInt8]] = [
      [],
      [42],
      (0..<100_000).map { _ in UInt8(rng.next() % 4) },  // compressible
      (0..<10_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) },  // incompressible: stored raw
    ]
    let decoder = BlockDecoder()
    for raw in inputs {
      let block = try encode(raw, level: level, rows: raw.count)
      let (decoded, rows) = try block.withUnsafeBytes { b in
        let r = try decoder.decode(b, source: "test", index: 0)
        return (Array(r.raw), r.rows)
      }
      #expect(decoded == raw)
      #expect(rows == UInt64(raw.count))
      #expect(block.count <= Int(BS_BLOCK_HEADER_SIZE) + max(raw.count, 1) + 64)
    }
  }

  @Test func everySingleBitFlipAndEveryTruncationIsAnIntegrityError() throws {
    let raw = Array("the quick brown fox jumps over the lazy dog, again and again and again".utf8)
    let decoder = BlockDecoder()
    for level: Int32 in [1, BlockEncoder.stored] {
      let block = try encode(raw, level: level)
      for bit in 0..<(block.count * 8) {
        var damaged = block
        damaged[bit / 8] ^= UInt8(1 << (bit % 8))
        #expect(throws: SliceIOError.self, "bit \(bit) flipped at level \(level)") {
          _ = try damaged.withUnsafeBytes { try decoder.decode($0, source: "flip", index: 0) }
        }
      }
      for length in 0..<block.count {
        let cut = Array(block[..<length])
        do {
          _ = try cut.withUnsafeBytes { try decoder.decode($0, source: "cut", index: 7) }
          Issue.record("a block truncated to \(length) bytes decoded")
        } catch let SliceIOError.integrity(source, index, problem) {
          #expect(source == "cut" && index == 7)
          if length < Int(BS_BLOCK_HEADER_SIZE) {
            #expect(problem == .truncated("the bytes end inside block 7"))
          }
        }
      }
    }
  }

  @Test func foreignBytesAreRecognisedAsNotABlock() throws {
    let junk = Array(repeating: UInt8(0x41), count: 100)
    #expect(throws: SliceIOError.integrity(source: "junk", block: 0, problem: .badMagic)) {
      _ = try junk.withUnsafeBytes { try BlockDecoder().decode($0, source: "junk", index: 0) }
    }
  }

  @Test func byteShuffleRoundTrips() {
    var rng = SplitMix64(seed: 5)
    for width in [2, 4, 8, 16] {
      let n = 1001
      let src = (0..<(n * width)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
      var mid = [UInt8](repeating: 0, count: src.count)
      var back = [UInt8](repeating: 0, count: src.count)
      #expect(bs_byte_shuffle(src, width, n, &mid) == 0)
      #expect(bs_byte_unshuffle(mid, width, n, &back) == 0)
      #expect(back == src)
      #expect(mid[1] == src[width], "byte 0 of element 1 follows byte 0 of element 0")
    }
  }
}
