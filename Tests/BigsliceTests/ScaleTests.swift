import Bigmachine
import BigsliceTestFuncs
import Foundation
import Frame
import SliceIO
import Synchronization
import Testing

@testable import Bigslice

/// Shuffles of thousands of shards: one output file per map task, bounded descriptors.
@Suite(.engine) struct ScaleTests {
  /// 2,000 shards, every output on disk (a 1-byte limit), in a process allowed 256 open files:
  /// a file per (task, partition), or a reader per upstream task held open, would run out.
  /// The answer equals the 8-shard run's in memory.
  @Test func aSpilledReduceOfTwoThousandShardsRunsUnderALowDescriptorLimit() throws {
    let shape = ["--rows", "100000", "--keys", "3000", "--no-status"]
    let reference = try shuffleDemo(shape + ["--shards", "8"])
    let wide = try shuffleDemo(shape + ["--shards", "2000", "--memory-limit", "1"], descriptors: 256)
    for key in ["rows", "groups", "sum", "keysum"] {
      #expect(wide[key] != nil && wide[key] == reference[key], "\(key): \(wide) against \(reference)")
    }
    #expect((wide["spilled"] ?? 0) > 0, "nothing spilled under a 1-byte limit")
  }

  /// A file that cannot be opened because the process is out of descriptors (or the disk is
  /// full) is an error that says so; a file that vanished is a lost input, computed again.
  @Test func runningOutOfDescriptorsIsAnErrorNotALostInput() {
    let task = ShardTask(chain: [], shard: 0)
    let upstream = ShardTask(chain: [], shard: 1)
    for code in [EMFILE, ENFILE, ENOSPC] {
      let error = inputError(
        SliceIOError.io(path: "/x", operation: "open", errno: code), task: task, upstream: upstream)
      #expect(!(error is LostInput), "errno \(code)")
      #expect("\(error)".contains("/x"))
    }
    let vanished = inputError(
      SliceIOError.io(path: "/x", operation: "open", errno: ENOENT), task: task, upstream: upstream)
    #expect((vanished as? LostInput)?.upstream.first === upstream)
  }

  /// A store whose lock is held stays; one whose owner is gone (its lock free) goes; one
  /// just made, not locked yet, stays.
  @Test func onlyTheStoresOfDeadWorkersAreRemoved() throws {
    let parent = FileManager.default.temporaryDirectory.appendingPathComponent("bigslice-locks-\(UUID())").path
    defer { try? FileManager.default.removeItem(atPath: parent) }
    for name in ["live", "dead", "young"] {
      try FileManager.default.createDirectory(
        atPath: "\(parent)/bigslice-store-\(name)", withIntermediateDirectories: true)
    }
    let live = try StoreLock(directory: "\(parent)/bigslice-store-live")
    FileManager.default.createFile(atPath: "\(parent)/bigslice-store-dead/.lock", contents: nil)
    FileManager.default.createFile(atPath: "\(parent)/bigslice-store-dead/output-1", contents: Data([1, 2]))
    let removed = StoreLock.removeAbandoned(in: parent)
    #expect(removed == ["\(parent)/bigslice-store-dead"])
    let left = try FileManager.default.contentsOfDirectory(atPath: parent).sorted()
    #expect(left == ["bigslice-store-live", "bigslice-store-young"])
    withExtendedLifetime(live) {}
  }

  /// A task computed again on the same machine replaces its output there; the first
  /// attempt's discard, arriving late, leaves the second attempt's output alone, and a read
  /// naming the first attempt finds nothing rather than the second's bytes.
  @Test func aLateDiscardOfAnEarlierAttemptLeavesTheNewOutput() {
    let worker = WorkerState()
    let task = TaskRef(invocation: 1, index: 3)
    func output() -> TaskOutput {
      TaskOutput(.memory(HeldFrames([Frame](), bytes: 0, budget: nil)), partitions: 1, rows: 0, bytes: 0)
    }
    let first = OutputRef(task: task, attempt: 7)
    let second = OutputRef(task: task, attempt: 9)
    let made = output()
    worker.keep(output(), as: first)
    worker.keep(made, as: second)
    worker.discard([first])
    #expect(worker.output(second) === made)
    #expect(worker.output(first) == nil)
    worker.discard([second])
    #expect(worker.output(second) == nil)
  }

  /// A read that would resume before a partition's start or past its end is a `BadRequest`
  /// service error naming the offset and the size, not a trap and not an empty stream that
  /// looks whole.
  @Test func aReadOutsideItsPartitionIsABadRequest() throws {
    let ref = OutputRef(task: TaskRef(invocation: 1, index: 3), attempt: 2)
    for offset in [-1, Int.min, 101, Int.max] {
      do {
        try WorkerState.check(ReadRequest(output: ref, partition: 0, offset: offset), size: 100)
        Issue.record("offset \(offset) of 100 bytes was accepted")
      } catch let error as ServiceError {
        #expect(error.kind == "BadRequest")
        #expect(error.message.contains("offset \(offset)") && error.message.contains("100 bytes"))
      }
    }
    for offset in [0, 50, 100] {
      try WorkerState.check(ReadRequest(output: ref, partition: 0, offset: offset), size: 100)
    }
  }

  /// Partition indexes dense and sparse, of 16-bit and 32-bit entries (frames of up to and
  /// over 65,535 rows; partition ids up to and over 65,535): every partition's rows are the
  /// counting sort's.
  @Test(arguments: [
    (rows: 500, partitions: 64), (500, 4_096), (65_535, 3), (65_536, 3), (100, 70_000), (90_000, 100_000),
  ])
  func partitionIndexesFindEachPartitionsRows(rows: Int, partitions: Int) throws {
    var rng = SplitMix64(seed: UInt64(rows * 31 + partitions))
    let ids = (0..<rows).map { _ in UInt32(Int.random(in: 0..<partitions, using: &rng)) }
    let (_, starts) = try Grouping.order(groupIDs: ids, groups: partitions)
    let index = starts.withUnsafeBufferPointer { PartitionIndex(starts: $0) }
    var wrong = 0
    for p in 0..<partitions {
      let expected = Int(starts[p])..<Int(starts[p + 1])
      let range = index.range(p)
      if expected.isEmpty ? !range.isEmpty : range != expected { wrong += 1 }
    }
    #expect(wrong == 0, "\(wrong) of \(partitions) partitions' rows are wrong")
  }

  /// Many shards of string keys under a limit that keeps some outputs in memory and spills
  /// the rest: a reduce reads held and spilled upstream outputs alike, and regrouping a
  /// reshuffle counts every row once. Checked against a dictionary.
  @Test(arguments: [nil, 400_000, 1])
  func manyShardsOfStringKeysMatchANaiveReduce(limit: Int?) async throws {
    var rng = SplitMix64(seed: 77)
    let keys = (0..<40_000).map { _ in "k\(Int.random(in: 0..<3_000, using: &rng))" }
    let values = (0..<40_000).map { _ in Int.random(in: 0..<100, using: &rng) }
    var expected: [String: Int] = [:]
    for (k, v) in zip(keys, values) { expected[k, default: 0] += v }
    let session = Session(executor: .local(procs: 2), memoryLimit: limit)
    let sums = try await session.run(const(300, keys, values).reduce(.sum).reshuffle())
    var got: [String: Int] = [:]
    for (k, v) in try sums.rows() { got[k, default: 0] += v }
    #expect(got == expected)
    #expect(try sums.count == expected.count)
    if limit == 1 { #expect(session.spilledBytes > 0) }
  }

  /// A sparse shuffle held in memory lists each partition's pieces: in 6 bytes a piece while
  /// every chunk row fits in 16 bits, else in 12. One map task of 70,000 rows over two keys
  /// (its second partition's rows run past row 65,535) beside tasks of a row each: every row
  /// arrives in its key's shard.
  @Test(arguments: [1_000, 70_000])
  func sparsePieceListsOfNarrowAndWideChunksFindEveryRow(bigRows: Int) async throws {
    let shards = 16
    let slice = readerFunc(shards, initial: { _ in 0 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      let rows = shard == 0 ? bigRows : 1
      while next < rows {
        out.emit(shard == 0 ? next % 2 : 100 + shard, next)
        next += 1
      }
      return false
    }.reshard(64)
    let session = Session(executor: .local(procs: 2))
    let result = try await session.run(slice)
    var counts: [Int: Int] = [:]
    var sums: [Int: Int] = [:]
    for (k, v) in try result.rows() {
      counts[k, default: 0] += 1
      sums[k, default: 0] += v
    }
    var expectedCounts = [0: (bigRows + 1) / 2, 1: bigRows / 2]
    var expectedSums = [0: 0, 1: 0]
    for i in 0..<bigRows { expectedSums[i % 2, default: 0] += i }
    for shard in 1..<shards {
      expectedCounts[100 + shard] = 1
      expectedSums[100 + shard] = 0
    }
    #expect(counts == expectedCounts)
    #expect(sums == expectedSums)
  }

  /// A spilled shuffle from 150 upstream tasks (three words of holding bits a partition),
  /// many of them empty or holding a few partitions, into 500 shards: each reading task skips
  /// the outputs holding none of its rows and still gets every row of its own.
  @Test func readersOfASparseSpilledShuffleSkipOnlyOutputsWithoutTheirRows() async throws {
    let shards = 150
    let rowsOf = (0..<shards).map { $0 % 5 == 0 ? 0 : ($0 * 37) % 23 }
    let slice = readerFunc(shards, initial: { _ in 0 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      while next < rowsOf[shard] {
        out.emit((shard * 1_000 + next * 7919) % 4_001, shard)
        next += 1
      }
      return false
    }.reshard(500)
    var expected: [Int: [Int]] = [:]
    for shard in 0..<shards {
      for next in 0..<rowsOf[shard] { expected[(shard * 1_000 + next * 7919) % 4_001, default: []].append(shard) }
    }
    let session = Session(executor: .local(procs: 2), memoryLimit: 1)
    var got: [Int: [Int]] = [:]
    for (k, v) in try (await session.run(slice)).rows() { got[k, default: []].append(v) }
    let wrong = Set(got.keys).union(expected.keys).filter { got[$0]?.sorted() != expected[$0]?.sorted() }
    #expect(wrong.isEmpty, "\(wrong.count) of \(expected.count) keys differ, e.g. \(wrong.sorted().prefix(3))")
    #expect(session.spilledBytes > 0)
  }

  /// Many shards of the keys users bring: a struct key reduced by a closure, and a key of
  /// two columns regrouped, held and all spilled, against a dictionary and the input rows.
  @Test(arguments: [nil, 1])
  func manyShardsOfStructAndTwoColumnKeys(limit: Int?) async throws {
    var rng = SplitMix64(seed: 91)
    let n = 20_000
    let pairs = (0..<n).map { _ in Pair(a: Int.random(in: 0..<400, using: &rng), b: "p\(rng.next() % 3)") }
    let values = (0..<n).map { _ in Int.random(in: 0..<50, using: &rng) }
    var expected: [Pair: Int] = [:]
    for (k, v) in zip(pairs, values) { expected[k, default: 0] += v }
    let session = Session(executor: .local(procs: 2), memoryLimit: limit)
    let sums = try await session.run(const(500, pairs, values).reduce { $0 + $1 })
    #expect(Dictionary(uniqueKeysWithValues: Array(try sums.rows())) == expected)

    let a = pairs.map(\.a)
    let b = pairs.map(\.b)
    let regrouped = try await session.run(const(500, a, b, values).prefixed(2).reshuffle())
    let rows = Array(try regrouped.rows()).map { "\($0.0) \($0.1) \($0.2)" }.sorted()
    #expect(rows == zip(zip(a, b), values).map { "\($0.0.0) \($0.0.1) \($0.1)" }.sorted())
  }

  /// Under a limit that spills every output but leaves room for the section cache, the tasks
  /// reading a shuffle share reads of neighbouring sections (blocks of up to 64 partitions,
  /// the last one partial at 200 shards): the reduce matches a dictionary.
  @Test(arguments: [3, 64, 200])
  func aReduceReadThroughTheSectionCacheMatchesANaiveReduce(shards: Int) async throws {
    var rng = SplitMix64(seed: UInt64(shards))
    let keys = (0..<60_000).map { _ in Int.random(in: 0..<5_000, using: &rng) }
    let values = (0..<60_000).map { _ in Int.random(in: 0..<100, using: &rng) }
    var expected: [Int: Int] = [:]
    for (k, v) in zip(keys, values) { expected[k, default: 0] += v }
    let session = Session(executor: .local(procs: 2), memoryLimit: 8 << 20)
    let sums = try await session.run(const(shards, keys, values).reduce(.sum))
    #expect(Dictionary(uniqueKeysWithValues: Array(try sums.rows())) == expected)
    #expect(session.spilledBytes > 0)
  }

  /// Output files deleted once the first reading task has started, with the section cache in
  /// use (200 shards: blocks of at most 64 partitions, so later tasks read files the cache
  /// never held): the reads that find them gone are lost inputs, the upstream tasks are
  /// computed again, and the answer is right.
  @Test func filesDeletedWhileTheSectionCacheIsInUseAreComputedAgain() async throws {
    let session = Session(executor: .local(procs: 2), memoryLimit: 8 << 20)
    let removed = Counter()
    let left = Mutex(1)
    let n = 40_000
    let computed = Counter()
    let slice = const(200, Array(0..<n), Array(repeating: 1, count: n))
      .map { (k: Int, v: Int) -> (Int, Int) in
        computed.add(1)
        return (k, v)
      }
      .reshuffle()
      .map { (k: Int, v: Int) -> (Int, Int) in
        let delete = left.withLock { left -> Bool in
          defer { left = 0 }
          return left > 0
        }
        if delete { removed.add(removePartitionFiles(session)) }
        return (k % 100, v)
      }
      .reduce(.sum)
    let sums = Dictionary(uniqueKeysWithValues: Array(try (await session.run(slice)).rows()))
    #expect(removed.value > 0)
    // The upstream tasks whose files were gone ran again.
    #expect(computed.value > n, "\(computed.value) rows computed upstream")
    #expect(sums == Dictionary(uniqueKeysWithValues: (0..<100).map { ($0, n / 100) }))
  }

  /// The section cache gives each partition of each upstream file the frames of its section,
  /// read in the order tasks run (both ends of a block at once, as two procs do), a skewed
  /// partition's included, keeps no more than its limit, and holds nothing once every
  /// partition is taken.
  @Test(arguments: [1_000, 20_000, 1 << 20], [0, 100])
  func theSectionCacheGivesEachSectionOnceAndKeepsToItsLimit(limit: Int, packBytes: Int) throws {
    let dir = try SpillDirectory()
    let partitions = 50
    var rng = SplitMix64(seed: UInt64(limit))
    // Partition 7 is skewed: its section alone outweighs a block's share of the cache.
    let files = try writeShuffleFiles(6, partitions: partitions, packBytes: packBytes, in: dir, rng: &rng) {
      p, rng in p == 7 ? 20_000 : Int.random(in: 0..<4, using: &rng)
    }
    let cache = SectionCache(limit: limit, upstreams: files.count)
    for pair in stride(from: 0, to: partitions, by: 2) {
      for (u, (file, written)) in files.enumerated() {
        for p in [pair, pair + 1] where !file.isEmpty(p) {
          let pieces = try cache.pieces(file, at: file.place(p), upstream: u, partition: p)
          let got = pieces.flatMap { piece in
            piece.frame.slice(piece.rows).columns[0].scalars(Int64.self).map { Int($0) }
          }
          #expect(got == written[p], "upstream \(u) partition \(p)")
          #expect(cache.bytes <= limit)
        }
      }
    }
    #expect(cache.bytes == 0)
    if packBytes > 0 { #expect((0..<partitions).contains { files[0].0.place($0).isShared }, "nothing packed") }

    // In a random order (tasks of other shuffles and retries do not keep to shard order): a
    // section first read without room is never kept later, so nothing stays once every
    // partition is taken.
    let shuffled = SectionCache(limit: limit, upstreams: files.count)
    var order = files.indices.flatMap { u in (0..<partitions).map { (u, $0) } }
    order.shuffle(using: &rng)
    for (u, p) in order where !files[u].0.isEmpty(p) {
      let (file, written) = files[u]
      let pieces = try shuffled.pieces(file, at: file.place(p), upstream: u, partition: p)
      #expect(pieces.flatMap { $0.frame.slice($0.rows).columns[0].scalars(Int64.self).map { Int($0) } } == written[p])
      #expect(shuffled.bytes <= limit)
    }
    #expect(shuffled.bytes == 0, "kept after every partition was taken")
  }
}

/// A result larger than the memory limit spills like any output (it was held whatever the
/// limit), reads back whole, and its files go with it.
@Suite(.engine) struct ResultSpillTests {
  @Test func aResultOverTheLimitSpillsAndReadsBackWhole() async throws {
    let (k, v) = randomPairs(50_000, keys: 20_000, seed: 31)
    var sums: [Int: Int] = [:]
    for (key, value) in zip(k, v) { sums[key, default: 0] += value }
    let session = Session(executor: .local(procs: 2), memoryLimit: 64 << 10)
    var result: SliceResult<Int, Int>? = try await session.run(const(4, k, v).reduce(.sum))
    #expect(result!.tasks.contains { $0.output?.isOnDisk == true }, "no shard of the result spilled")
    #expect(Dictionary(uniqueKeysWithValues: Array(try result!.rows())) == sums)
    #expect(try result!.count == sums.count)
    result = nil
    #expect(
      directoryEntries(session.spillPath ?? "").isEmpty, "files left: \(directoryEntries(session.spillPath ?? ""))")
  }
}

/// `count` shuffle files of one Int64 column with `partitions` partitions, packing those under
/// `packBytes`: partition p of each holds `rows(p)` random values below 1000. Each file with
/// the values written to each of its partitions.
func writeShuffleFiles(
  _ count: Int, partitions: Int, packBytes: Int, in dir: SpillDirectory, rng: inout SplitMix64,
  rows: (Int, inout SplitMix64) -> Int
) throws -> [(ShuffleFile, [[Int]])] {
  try (0..<count).map { _ in
    let writer = try ShuffleFileWriter(
      directory: dir, schema: Schema([.scalar(.int64)]), partitions: partitions, packBytes: packBytes)
    var written: [[Int]] = []
    for p in 0..<partitions {
      let values = (0..<rows(p, &rng)).map { _ in Int.random(in: 0..<1000, using: &rng) }
      written.append(values)
      if !values.isEmpty { try writer.write(try Frame([Column(values.map { Int64($0) })]), to: p) }
    }
    return (try writer.finish(), written)
  }
}
