import Frame
import SliceIO
import Testing

/// Reference: the rows of `frames` stably sorted by the key under `order`.
func referenceSorted(_ frames: [Frame], _ order: SortOrder) throws -> [[AnyHashable]] {
  let all = try Frame.concat(frames)
  var prefixes = [UInt64](repeating: 0, count: all.count)
  if case .hash(let seed) = order { prefixes = try all.hashKeys(seed: seed) }
  let indices = (0..<all.count).sorted { a, b in
    if prefixes[a] != prefixes[b] { return prefixes[a] < prefixes[b] }
    let c = all.compareKeys(a, all, b)
    return c != 0 ? c < 0 : a < b
  }
  let rows = all.anyRows
  return indices.map { rows[$0] }
}

@Suite struct MergeTests {
  @Test(arguments: [SortOrder.keys, .hash(seed: 3)], [1, 2, 9])
  func mergingSortedReadersEqualsSortingEverything(order: SortOrder, k: Int) throws {
    var inputs: [Frame] = []
    var readers: [any Reader] = []
    for i in 0..<k {
      let frame = try randomFrame(rows: 200 * (i + 1), seed: UInt64(i), distinctKeys: 50).sorted(order)
      inputs.append(frame)
      readers.append(FrameReader(frame, rows: 37))  // many small frames per source
    }
    readers.append(FrameReader([]))  // an empty source
    let merged = try readAll(MergeReader(readers, order: order, batchRows: 100))
    #expect(rows(merged) == (try referenceSorted(inputs, order)))
  }

  @Test func mergingOnStringKeysComparesBeyondThePrefix() throws {
    let a = try Frame([Column(strings: ["abcdefgh1", "abcdefgh3", "b"]), Column([Int64(1), 3, 5])]).sorted(.keys)
    let b = try Frame([Column(strings: ["abcdefgh0", "abcdefgh2", "abcdefgh3"]), Column([Int64(0), 2, 4])]).sorted(
      .keys)
    let merged = try readAll(MergeReader([FrameReader([a]), FrameReader([b])], order: .keys))
    #expect(rows(merged).map { $0[1] } == [0, 1, 2, 3, 4, 5])
  }
}

@Suite struct ExternalSortTests {
  /// Budgets that force 1 run (all in memory), 2 runs, and about 50 runs.
  @Test(arguments: [SortOrder.keys, .hash(seed: 8)], [1, 2, 50])
  func externalSortEqualsSortingInMemory(order: SortOrder, runs: Int) throws {
    let dir = try SpillDirectory()
    let frames = try (0..<50).map { try randomFrame(rows: 400, seed: UInt64($0), distinctKeys: 300) }
    let total = frames.reduce(0) { $0 + $1.byteCount }
    let perFrame = total / frames.count
    // Spills happen when the buffered bytes pass half the budget.
    let budget = runs == 1 ? total * 4 : (runs == 2 ? total + perFrame : perFrame)
    let sorter = ExternalSorter(schema: frames[0].schema, order: order, budget: budget, directory: dir, maxFanIn: 16)
    for f in frames { try sorter.add(f) }
    let spilled = sorter.spilledRuns
    let sorted = try readAll(try sorter.finish())
    switch runs {
    case 1: #expect(spilled == 0)
    case 2: #expect(spilled == 1)
    default: #expect(spilled == 50)
    }
    #expect(rows(sorted) == (try referenceSorted(frames, order)))
  }

  @Test func sortingAStreamOfOtherTypesIsAnError() throws {
    let sorter = ExternalSorter(
      schema: Schema([.string]), order: .keys, budget: 1 << 20, directory: try SpillDirectory())
    #expect(throws: SliceIOError.self) { try sorter.add(try Frame([Column([Int64(1)])])) }
  }
}
