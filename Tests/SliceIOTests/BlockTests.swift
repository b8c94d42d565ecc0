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

  @Test(arguments: [BlockEncoder.stored, BlockEncoder.fast, -5, -1, 1, 3, 19])
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
    let runs = Array(repeating: UInt8(0), count: 40) + raw + Array(repeating: UInt8(7), count: 33)
    for (level, raw) in [(1, raw), (BlockEncoder.stored, raw), (BlockEncoder.fast, runs)] {
      let block = try encode(raw, level: level)
      if level == BlockEncoder.fast { #expect(codec(block) == BS_CODEC_RUNS) }
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

  /// A block whose header, payload and trailer are all valid but whose raw checksum is not
  /// the decoded bytes': only the check of the decoded bytes can refuse it (a decoder bug, or
  /// a forged block with a valid payload checksum), for each codec.
  @Test func aWrongRawChecksumIsRefusedAfterDecodingForEveryCodec() throws {
    var rng = SplitMix64(seed: 23)
    let words = ["alpha", "beta", "gamma", "delta"]
    let text = Array((0..<3000).map { _ in words[Int(rng.next() % 4)] }.joined(separator: " ").utf8)
    let cases: [(String, [UInt8], Int32, bs_codec)] = [
      ("raw", (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, 1, BS_CODEC_RAW),
      ("runs", [UInt8](repeating: 9, count: 3000), 1, BS_CODEC_RUNS),
      ("zstd", text, 3, BS_CODEC_ZSTD),
    ]
    let decoder = BlockDecoder()
    for (name, raw, level, expected) in cases {
      var block = try encode(raw, level: level)
      #expect(codec(block) == expected, "\(name)")
      let good = try block.withUnsafeBytes { try decoder.decode($0, source: name, index: 0).raw.elementsEqual(raw) }
      #expect(good, "\(name)")
      // Another raw checksum, and a header checksum that covers it.
      block[24] ^= 1
      let headerSum = block.withUnsafeBytes { bs_hash_one($0.baseAddress, 32, 0) }
      for i in 0..<8 { block[32 + i] = UInt8(truncatingIfNeeded: headerSum >> (8 * UInt64(i))) }
      #expect(throws: SliceIOError.integrity(source: name, block: 0, problem: .checksum), "\(name)") {
        try block.withUnsafeBytes { _ = try decoder.decode($0, source: name, index: 0) }
      }
    }
  }

  /// The codec a block's header names.
  func codec(_ block: [UInt8]) -> bs_codec { bs_codec(UInt32(block[6]) | UInt32(block[7]) << 8) }

  /// Random mixes of runs (of every length around the shortest coded one) and literals,
  /// at every alignment, come back exactly; long runs are coded as runs.
  @Test func runsCodingRoundTripsRandomMixes() throws {
    var rng = SplitMix64(seed: 11)
    let decoder = BlockDecoder()
    for trial in 0..<300 {
      var raw: [UInt8] = []
      let pieces = Int(rng.next() % 12) + 1
      for _ in 0..<pieces {
        let length = Int(rng.next() % (trial % 3 == 0 ? 4000 : 70)) + 1
        if rng.next() % 2 == 0 {
          raw += Array(repeating: UInt8(truncatingIfNeeded: rng.next() % 3), count: length)
        } else {
          raw += (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        }
      }
      let block = try encode(raw, level: BlockEncoder.fast, rows: trial)
      let same = try block.withUnsafeBytes {
        try decoder.decode($0, source: "mix", index: trial).raw.elementsEqual(raw)
      }
      #expect(same, "trial \(trial) decodes to its bytes")
    }
    // Small integers, byte-shuffled: their zero planes are runs.
    let values = (0..<50_000).map { _ in Int64(rng.next() % 1000) }
    var shuffled = [UInt8](repeating: 0, count: values.count * 8)
    #expect(bs_byte_shuffle(values, 8, values.count, &shuffled) == BS_OK)
    let block = try encode(shuffled, level: BlockEncoder.fast)
    #expect(codec(block) == BS_CODEC_RUNS)
    #expect(block.count < shuffled.count / 3, "6 of 8 byte planes are zeros")
  }

  /// zstd levels code blocks under 4 KiB with runs (a many-way shuffle writes millions of
  /// such sections, where a zstd call costs more than it saves), try zstd on those of 1 KiB
  /// or more that runs cannot shrink by a quarter (text), and use zstd from 4 KiB on. Each
  /// block decodes to its bytes.
  @Test func zstdLevelsCodeSmallBlocksWithRuns() throws {
    var rng = SplitMix64(seed: 5)
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    let text = Array((0..<4000).map { _ in words[Int(rng.next() % 8)] }.joined(separator: " ").utf8)
    let noise = (0..<8192).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let decoder = BlockDecoder()
    func codecOf(_ raw: [UInt8], level: Int32 = 3) throws -> bs_codec {
      let block = try encode(raw, level: level)
      let same = try block.withUnsafeBytes { try decoder.decode($0, source: "zstd", index: 0).raw.elementsEqual(raw) }
      #expect(same, "the block decodes to its bytes")
      return codec(block)
    }
    #expect(try codecOf([UInt8](repeating: 0, count: 127)) == BS_CODEC_RUNS)
    #expect(try codecOf([UInt8](repeating: 0, count: 4095)) == BS_CODEC_RUNS)
    #expect(try codecOf([UInt8](repeating: 0, count: 4096)) == BS_CODEC_ZSTD)
    #expect(try codecOf([UInt8](repeating: 0, count: 127), level: -1) == BS_CODEC_RUNS)
    // Below 1 KiB nothing shrinks noise or short text: raw.
    #expect(try codecOf(Array(noise[..<17])) == BS_CODEC_RAW)
    #expect(try codecOf(Array(text[..<1000])) == BS_CODEC_RAW)
    // Text of 1-4 KiB: runs leave it whole, zstd shrinks it.
    #expect(try codecOf(Array(text[..<3000])) == BS_CODEC_ZSTD)
    // Noise stays raw at any size.
    #expect(try codecOf(Array(noise[..<3000])) == BS_CODEC_RAW)
    #expect(try codecOf(noise) == BS_CODEC_RAW)
  }

  /// The fast level tries zstd on what runs cannot shrink (text), keeps it while it pays,
  /// and after it fails to (random bytes) leaves it alone for the next 32 such blocks.
  @Test func fastLevelTriesZstdOnlyWhileItPays() throws {
    var rng = SplitMix64(seed: 3)
    let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    let text = Array((0..<4000).map { _ in words[Int(rng.next() % 8)] }.joined(separator: " ").utf8)
    let noise = (0..<20_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let encoder = BlockEncoder(level: BlockEncoder.fast)
    let decoder = BlockDecoder()
    func codecOf(_ raw: [UInt8]) throws -> bs_codec {
      let out = ByteWriter()
      try raw.withUnsafeBytes { try encoder.encode($0, rows: 1, into: out) }
      let block = Array(out.bytes)
      let same = try block.withUnsafeBytes { try decoder.decode($0, source: "fast", index: 0).raw.elementsEqual(raw) }
      #expect(same, "the block decodes to its bytes")
      return codec(block)
    }
    let tiny = Array(noise[..<17])  // a stream's end marker is 17 bytes
    #expect(try codecOf(text) == BS_CODEC_ZSTD)
    // Blocks under 1 KiB neither try zstd nor count against it.
    #expect(try codecOf(tiny) == BS_CODEC_RAW)
    #expect(try codecOf(Array(noise[..<1000])) == BS_CODEC_RAW)
    #expect(try codecOf(text) == BS_CODEC_ZSTD)
    #expect(try codecOf(noise) == BS_CODEC_RAW)
    for i in 0..<32 {
      #expect(try codecOf(text) == BS_CODEC_RAW, "weak block \(i) after zstd failed")
      #expect(try codecOf(tiny) == BS_CODEC_RAW)
    }
    #expect(try codecOf(text) == BS_CODEC_ZSTD)
  }

  /// A block runs shrink a little, not enough to skip zstd, and zstd does not shrink
  /// further: zstd's attempt wrote over the runs tokens, which are coded again.
  @Test func runsAreCodedAgainAfterZstdFails() throws {
    var rng = SplitMix64(seed: 9)
    let raw = Array(repeating: UInt8(0), count: 300) + (0..<2000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let block = try encode(raw, level: BlockEncoder.fast)
    #expect(codec(block) == BS_CODEC_RUNS)
    #expect(block.count < raw.count)
    let decoder = BlockDecoder()
    let same = try block.withUnsafeBytes { try decoder.decode($0, source: "again", index: 0).raw.elementsEqual(raw) }
    #expect(same)
  }

  /// A destination too small for the block is `BS_EDSTSIZE`, and too small for zstd's budget
  /// it does not count as zstd failing to pay.
  @Test func aCrampedDestinationIsAnErrorAndLeavesZstdAlone() throws {
    var rng = SplitMix64(seed: 4)
    let words = ["one", "two", "three", "four", "five"]
    let text = Array((0..<3000).map { _ in words[Int(rng.next() % 5)] }.joined(separator: " ").utf8)
    let noise = (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let encoder = try #require(bs_block_encoder_new())
    defer { bs_block_encoder_free(encoder) }
    func codecOf(_ raw: [UInt8], room: Int) -> (Int, bs_codec) {
      var out = [UInt8](repeating: 0, count: Int(BS_BLOCK_HEADER_SIZE) + room)
      let n = bs_block_encode(encoder, raw, raw.count, 1, BlockEncoder.fast, &out, out.count)
      return (Int(n), n > 0 ? codec(out) : BS_CODEC_RAW)
    }
    #expect(codecOf(text, room: text.count).1 == BS_CODEC_ZSTD)
    #expect(codecOf(noise, room: 64).0 == Int(BS_EDSTSIZE.rawValue))
    #expect(codecOf(text, room: text.count).1 == BS_CODEC_ZSTD)
  }

  /// Runs tokens that do not add up (zero lengths, overruns, a cut token), under valid
  /// checksums, are length errors.
  @Test func malformedRunsTokensAreLengthErrors() throws {
    func block(tokens: [UInt8], rawLength: Int) -> [UInt8] {
      var payload = tokens
      withUnsafeBytes(of: bs_hash_one(tokens, tokens.count, 0).littleEndian) { payload += $0 }
      var h = [UInt8](repeating: 0, count: Int(BS_BLOCK_HEADER_SIZE))
      func put(_ v: UInt64, at: Int, bytes: Int) {
        for i in 0..<bytes { h[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
      }
      put(UInt64(BS_BLOCK_MAGIC), at: 0, bytes: 4)
      put(UInt64(BS_BLOCK_VERSION), at: 4, bytes: 2)
      put(UInt64(BS_CODEC_RUNS.rawValue), at: 6, bytes: 2)
      put(1, at: 8, bytes: 8)
      put(UInt64(rawLength), at: 16, bytes: 4)
      put(UInt64(payload.count), at: 20, bytes: 4)
      put(0, at: 24, bytes: 8)
      put(bs_hash_one(h, 32, 0), at: 32, bytes: 8)
      return h + payload
    }
    func token(_ length: UInt32, run: Bool) -> [UInt8] {
      withUnsafeBytes(of: (length << 1 | (run ? 1 : 0)).littleEndian, Array.init)
    }
    let cases: [(String, [UInt8])] = [
      ("a zero-length run", token(0, run: true) + [9] + token(60, run: true) + [1]),
      ("a run past the end", token(61, run: true) + [1] + Array(repeating: 0, count: 40)),
      ("literals past the end", token(61, run: false) + Array(repeating: 5, count: 40)),
      ("literals cut short", token(50, run: false) + Array(repeating: 5, count: 30)),
      ("a run without its byte", token(30, run: false) + Array(repeating: 5, count: 30) + token(30, run: true)),
      ("a cut token", token(30, run: true) + [4] + [1, 2]),
      ("too few bytes", token(30, run: true) + [4]),
    ]
    for (name, tokens) in cases {
      let bad = block(tokens: tokens, rawLength: 60)
      #expect(throws: SliceIOError.integrity(source: "runs", block: 2, problem: .badLength), "\(name)") {
        _ = try bad.withUnsafeBytes { try BlockDecoder().decode($0, source: "runs", index: 2) }
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
      #expect(bs_byte_shuffle(src, width, n, &mid) == BS_OK)
      #expect(bs_byte_unshuffle(mid, width, n, &back) == BS_OK)
      #expect(back == src)
      #expect(mid[1] == src[width], "byte 0 of element 1 follows byte 0 of element 0")
    }
  }

  @Test func byteShuffleRejectsAnotherWidthAndNullBuffers() {
    let src = [UInt8](repeating: 1, count: 64)
    var dst = [UInt8](repeating: 0, count: 64)
    #expect(bs_byte_shuffle(src, 3, 8, &dst) == BS_EINVAL)
    #expect(bs_byte_unshuffle(src, 1, 8, &dst) == BS_EINVAL)
    #expect(bs_byte_shuffle(nil, 8, 8, &dst) == BS_EINVAL)
    #expect(bs_byte_unshuffle(src, 8, 8, nil) == BS_EINVAL)
    #expect(bs_byte_shuffle(nil, 8, 0, nil) == BS_OK)
  }

  /// The bound is a size or BS_EINVAL, never a 0 to mistake for room.
  @Test func aBlockOverTheRawBoundHasNoBound() {
    let max = Int(BS_BLOCK_MAX_RAW)
    #expect(bs_block_bound(max + 1) == Int64(BS_EINVAL.rawValue))
    #expect(bs_block_bound(max) >= Int64(max) + Int64(BS_BLOCK_HEADER_SIZE))
    #expect(bs_block_bound(0) >= Int64(BS_BLOCK_HEADER_SIZE))
  }

  @Test func aNullContextIsAnErrorAndFreesAsANoOp() {
    let raw = [UInt8](repeating: 7, count: 100)
    var dst = [UInt8](repeating: 0, count: 4096)
    let einval = Int64(BS_EINVAL.rawValue)
    #expect(bs_block_encode(nil, raw, raw.count, 1, 3, &dst, dst.count) == einval)
    #expect(bs_block_decode(nil, dst, dst.count, nil, 0, nil) == einval)
    bs_block_encoder_free(nil)
    bs_block_decoder_free(nil)
  }
}
