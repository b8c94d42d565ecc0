import CSupport
import Frame
import Testing

/// The kernels of a many-way shuffle's read (bs_pieces.h) against a plain model, and
/// `RawFrame.concat`, which copies through them, against `Frame.concat`.
@Suite struct PiecesTests {
  /// A partition index in the layout `bs_part_index` documents, built from each row's
  /// partition, and the model's answer: each partition's rows.
  struct ModelIndex {
    let entries: [UInt32]
    let narrow: Bool
    let sparse: Bool
    let ids: Int
    let ranges: [Range<Int>]

    init(partitionOfRows sorted: [Int], parts: Int, sparse: Bool, narrow: Bool) {
      var ranges = Array(repeating: 0..<0, count: parts)
      var start = 0
      for p in 0..<parts {
        var end = start
        while end < sorted.count, sorted[end] == p { end += 1 }
        ranges[p] = start..<end
        start = end
      }
      self.ranges = ranges
      self.narrow = narrow
      self.sparse = sparse
      if sparse {
        let held = (0..<parts).filter { !ranges[$0].isEmpty }
        ids = held.count
        entries = held.map { UInt32(ranges[$0].lowerBound) } + [UInt32(sorted.count)] + held.map { UInt32($0) }
      } else {
        ids = 0
        entries = (0..<parts).map { UInt32(ranges[$0].lowerBound) } + [UInt32(sorted.count)]
      }
    }

    /// The entries as the index's bytes.
    var bytes: [UInt8] {
      entries.flatMap { value -> [UInt8] in
        narrow ? [UInt8(value & 0xff), UInt8(value >> 8)] : (0..<4).map { UInt8((value >> (8 * $0)) & 0xff) }
      }
    }
  }

  @Test(arguments: [1, 2, 7])
  func partitionRangesMatchEachIndexInEveryLayout(seed: UInt64) throws {
    var rng = SplitMix64(seed: seed)
    let parts = Int.random(in: 1...300, using: &rng)
    var models: [ModelIndex?] = []
    var rowsOf: [Int] = []
    for _ in 0..<Int.random(in: 1...700, using: &rng) {
      let rows = Int.random(in: 0...(Bool.random(using: &rng) ? 40 : 3000), using: &rng)
      rowsOf.append(rows)
      if Int.random(in: 0..<10, using: &rng) == 0 {
        models.append(nil)  // every row in partition 0
        continue
      }
      let partitionOfRows = (0..<rows).map { _ in Int.random(in: 0..<parts, using: &rng) }.sorted()
      models.append(
        ModelIndex(
          partitionOfRows: partitionOfRows, parts: parts, sparse: Bool.random(using: &rng),
          narrow: rows <= Int(UInt16.max) && parts <= Int(UInt16.max) && Bool.random(using: &rng)))
    }
    let storage = models.map { $0.map { $0.bytes } ?? [] }
    let buffers = storage.map { bytes -> UnsafeMutableRawPointer in
      let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 4)
      p.copyMemory(from: bytes, byteCount: bytes.count)
      return p
    }
    defer { for buffer in buffers { buffer.deallocate() } }
    let indexes = models.enumerated().map { i, model in
      bs_part_index(
        starts: model == nil ? nil : UnsafeRawPointer(buffers[i]), rows: UInt32(rowsOf[i]), parts: UInt32(parts),
        ids: UInt32(model?.ids ?? 0), narrow: model?.narrow == true ? 1 : 0, sparse: model?.sparse == true ? 1 : 0)
    }
    var starts = [UInt32](repeating: 9, count: indexes.count)
    var ends = [UInt32](repeating: 9, count: indexes.count)
    // Every partition, one past the last, and far past it.
    for p in Array(0...parts) + [parts + 1000] {
      #expect(bs_partition_ranges(indexes, indexes.count, UInt32(p), &starts, &ends) == BS_OK)
      for i in indexes.indices {
        let want: Range<Int>
        if let model = models[i] {
          want = p < parts ? model.ranges[p] : 0..<0
        } else {
          want = p == 0 ? 0..<rowsOf[i] : 0..<0
        }
        let got = Int(starts[i])..<Int(ends[i])
        // An empty range may sit anywhere; a non-empty one must be exact.
        if want.isEmpty {
          #expect(got.isEmpty, "partition \(p) of index \(i)")
        } else {
          #expect(got == want, "partition \(p) of index \(i)")
        }
      }
    }
    #expect(bs_partition_ranges(nil, 1, 0, &starts, &ends) == BS_EINVAL)
    #expect(bs_partition_ranges(indexes, 1, 0, nil, &ends) == BS_EINVAL)
    #expect(bs_partition_ranges(nil, 0, 0, nil, nil) == BS_OK)
  }

  @Test(arguments: [1, 2, 4, 8, 16])
  func copiedPiecesAreTheRangesInOrder(width: Int) throws {
    var rng = SplitMix64(seed: UInt64(width))
    let source = (0..<50_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
    let values = source.count / width
    var pieces: [Range<Int>] = []
    for _ in 0..<2000 {
      // Mostly short pieces, the many-way case, around the kernel's cut between moves and
      // memcpy, and some long ones.
      let length = Bool.random(using: &rng) ? Int.random(in: 0...6, using: &rng) : Int.random(in: 0...300, using: &rng)
      let start = Int.random(in: 0...(values - length), using: &rng)
      pieces.append(start..<start + length)
    }
    var want: [UInt8] = []
    for piece in pieces { want += source[piece.lowerBound * width..<piece.upperBound * width] }
    var got = [UInt8](repeating: 0, count: want.count + 1)
    let status = source.withUnsafeBytes { base in
      let sources: [UnsafeRawPointer?] = pieces.map { base.baseAddress! + $0.lowerBound * width }
      let rows = pieces.map { UInt32($0.count) }
      return bs_copy_pieces(sources, rows, pieces.count, width, &got)
    }
    #expect(status == BS_OK)
    #expect(Array(got.prefix(want.count)) == want)
    #expect(got.last == 0, "nothing is written past the pieces")
    #expect(bs_copy_pieces(nil, [1], 1, width, &got) == BS_EINVAL)
    #expect(bs_copy_pieces(nil, nil, 0, width, nil) == BS_OK)
  }

  @Test func copyingPiecesRefusesAWidthItHasNoMoveFor() {
    var out = [UInt8](repeating: 0, count: 8)
    let source: [UInt8] = [1, 2, 3, 4, 5, 6]
    source.withUnsafeBytes { base in
      for width in [0, 3, 5, 32] {
        #expect(bs_copy_pieces([base.baseAddress], [1], 1, width, &out) == BS_EINVAL)
      }
    }
    #expect(out == [0, 0, 0, 0, 0, 0, 0, 0])
  }

  @Test func rawFramesConcatenateManyShortPiecesOfEveryColumnKind() throws {
    var rng = SplitMix64(seed: 3)
    var frames: [Frame] = []
    for f in 0..<40 {
      let n = Int.random(in: 0...200, using: &rng)
      frames.append(
        try Frame([
          Column((0..<n).map { Int64(f * 1000 + $0) }),
          Column(strings: (0..<n).map { "\(f)-\($0)" + String(repeating: "x", count: $0 % 5) }),
          Column((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) }),
          Column((0..<n).map { Int16(truncatingIfNeeded: $0 - 100) }),
          Column((0..<n).map { Double($0) / 3 }),
        ]))
    }
    let raws = try frames.map { try #require(RawFrame($0)) }
    defer { for raw in raws { raw.deallocate() } }
    var pieces: [(frame: RawFrame, rows: Range<Int>)] = []
    var slices: [Frame] = []
    for _ in 0..<3000 {
      let f = Int.random(in: 0..<frames.count, using: &rng)
      let count = frames[f].count
      let length = Int.random(in: 0...min(count, 5), using: &rng)
      let start = Int.random(in: 0...(count - length), using: &rng)
      pieces.append((raws[f], start..<start + length))
      slices.append(frames[f].slice(start..<start + length))
    }
    let copied = try RawFrame.concat(pieces, schema: frames[0].schema)
    let want = try Frame.concat(slices)
    #expect(copied.count == want.count)
    #expect(copied.anyRows == want.anyRows)
    // No pieces at all make an empty frame of the schema.
    let none = try RawFrame.concat([], schema: frames[0].schema)
    #expect(none.count == 0 && none.schema == frames[0].schema)
  }
}

@Suite struct JoinedSlicesTests {
  @Test func slicesSideBySideJoinWithNoCopyAndOthersDoNot() throws {
    let frame = try Frame([
      Column((0..<100).map { Int64($0) }), Column(strings: (0..<100).map { "s\($0)" }),
    ])
    let parts = [frame.slice(0..<10), frame.slice(10..<10), frame.slice(10..<55), frame.slice(55..<60)]
    let joined = try #require(Frame.joinedSlices(parts))
    #expect(joined.anyRows == frame.slice(0..<60).anyRows)
    #expect(joined.count == 60)
    // A gap, an overlap, the wrong order, or another frame's rows: no join.
    #expect(Frame.joinedSlices([frame.slice(0..<10), frame.slice(11..<20)]) == nil)
    #expect(Frame.joinedSlices([frame.slice(0..<10), frame.slice(9..<20)]) == nil)
    #expect(Frame.joinedSlices([frame.slice(10..<20), frame.slice(0..<10)]) == nil)
    let copy = try Frame.concat([frame.slice(0..<50), frame.slice(50..<100)])
    #expect(Frame.joinedSlices([frame.slice(0..<10), copy.slice(10..<20)]) == nil)
    #expect(Frame.joinedSlices([]) == nil)
  }
}
