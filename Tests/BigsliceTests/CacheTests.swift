import Foundation
import Frame
import SliceIO
import Synchronization
import Testing

@testable import Bigslice

/// A fresh directory for one test's cache files, removed at the end.
final class TemporaryDirectory {
  let path: String
  init() {
    path = NSTemporaryDirectory() + "/bigslice-cache-test-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }
  deinit { try? FileManager.default.removeItem(atPath: path) }
  var files: [String] { ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted() }
}

@Suite(.engine) struct CacheTests {
  /// Keys and values, computed by a map.
  func source(_ shards: Int) -> Slice<Int, String> {
    let (k, _) = randomPairs(700, keys: 90, seed: 11)
    return const(shards, k).map { (key: Int) -> (Int, String) in
      return (key, "v\(key)")
    }
  }

  @Test(arguments: shardCounts)
  func aCacheIsWrittenThenReadInsteadOfComputing(shards: Int) async throws {
    let dir = TemporaryDirectory()
    let prefix = "\(dir.path)/pairs"
    let first = try await Session().run(source(shards).cache(prefix))
    let expected = try multiset(first)
    #expect(dir.files.count == shards)
    #expect(dir.files.first == "pairs-0000-of-\(String(format: "%04d", shards))")
    let computed = Counter()
    let again = try await Session().run(
      source(shards).map { (k: Int, v: String) -> (Int, String) in
        computed.add(1)
        return (k, v)
      }.cache(prefix))
    #expect(try multiset(again) == expected)
    #expect(computed.value == 0, "a complete cache computes nothing upstream")
    let read = try await Session().run(readCache(Int.self, String.self, shards: shards, prefix: prefix))
    #expect(try multiset(read) == expected)
  }

  @Test func aPartialCacheComputesOnlyTheMissingShards() async throws {
    let dir = TemporaryDirectory()
    let prefix = "\(dir.path)/part"
    _ = try await Session().run(source(4).cachePartial(prefix))
    #expect(unlink("\(prefix)-0002-of-0004") == 0)
    let shardsComputed = Mutex<Set<Int>>([])
    let slice = source(4).map { (k: Int, v: String) -> (Int, String) in
      shardsComputed.withLock { _ = $0.insert(TaskContext.current!.shard) }
      return (k, v)
    }
    let again = try await Session().run(slice.cachePartial(prefix))
    #expect(shardsComputed.withLock { $0 } == [2])
    #expect(try again.count == 700)
    #expect(dir.files.count == 4)
    // `cache` (not partial) with a shard missing computes every shard.
    #expect(unlink("\(prefix)-0001-of-0004") == 0)
    shardsComputed.withLock { $0 = [] }
    #expect(try await Session().run(slice.cache(prefix)).count == 700)
    #expect(shardsComputed.withLock { $0 } == [0, 1, 2, 3])
  }

  @Test func aCorruptCacheFileFailsNamingTheFileAndBlock() async throws {
    let dir = TemporaryDirectory()
    let prefix = "\(dir.path)/bad"
    _ = try await Session().run(source(2).cache(prefix))
    let path = "\(prefix)-0001-of-0002"
    var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    bytes[bytes.count / 2] ^= 0x40
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let error = await #expect(throws: BigsliceError.self) {
      try await Session().run(readCache(Int.self, String.self, shards: 2, prefix: prefix))
    }
    let text = error?.description ?? ""
    #expect(text.contains("readCache@") && text.contains("shard 1") && text.contains(path), "\(text)")
    #expect(text.contains("block"), "\(text)")
  }

  @Test func readCacheWithAMissingFileOrOtherTypesIsAClearError() async throws {
    let dir = TemporaryDirectory()
    let prefix = "\(dir.path)/typed"
    _ = try await Session().run(source(2).cache(prefix))
    let missing = await #expect(throws: BigsliceError.self) {
      try await Session().run(readCache(Int.self, String.self, shards: 3, prefix: prefix))
    }
    #expect(
      missing?.description.contains("-of-0003: open") == true && missing?.description.contains("No such file") == true,
      "\(missing?.description ?? "")")
    let wrong = await #expect(throws: BigsliceError.self) {
      try await Session().run(readCache(Int.self, Double.self, shards: 2, prefix: prefix))
    }
    #expect(wrong?.description.contains("string") == true, "\(wrong?.description ?? "")")
  }

  @Test func aFailedTaskLeavesNoCacheFile() async throws {
    let dir = TemporaryDirectory()
    let slice = const(2, Array(0..<100)).map { (v: Int) throws -> Int in
      if v == 90 { throw Boom() }
      return v
    }.cache("\(dir.path)/failed")
    await #expect(throws: BigsliceError.self) { try await Session().run(slice) }
    #expect(!dir.files.contains("failed-0001-of-0002"))
    #expect(dir.files.allSatisfy { !$0.contains(".tmp-") }, "\(dir.files)")
  }
}

@Suite(.engine) struct ScanTests {
  @Test(arguments: shardCounts, memoryLimits)
  func scanSeesEveryRowOfEveryShardOnce(shards: Int, limit: Int) async throws {
    let (k, v) = randomPairs(2000, keys: 40, seed: 5)
    let seen = Mutex<[Int: [Int]]>([:])
    let slice = const(shards, k, v).reshuffle().scan { shard, rows in
      var mine: [Int] = []
      while let (key, value) = try rows.next() {
        #expect(key >= 0)
        mine.append(value)
      }
      seen.withLock { $0[shard, default: []] += mine }
    }
    let result = try await session(limit).run(slice)
    #expect(try result.count == 0)
    let all = seen.withLock { $0 }
    #expect(all.values.flatMap { $0 }.sorted() == v.sorted())
    #expect(all.keys.allSatisfy { $0 < shards })
  }

  @Test func scanReadsFramesToo() async throws {
    let total = Counter()
    _ = try await Session().run(
      const(3, Array(0..<1000)).scan { _, rows in
        _ = try rows.next()
        total.add(1)
        while let frame = try rows.nextFrame() { total.add(frame.count) }
      })
    #expect(total.value == 1000)
  }

  @Test func anErrorInScanNamesTheOperation() async {
    let error = await #expect(throws: BigsliceError.self) {
      try await Session().run(const(2, [1, 2, 3]).scan { _, _ in throw Boom() })
    }
    #expect(error?.description.contains("scan@") == true)
  }
}

/// A machine replays the driver's cache decisions instead of looking at the files itself:
/// files written or removed between the two compiles cannot make them build other tasks.
@Suite(.engine) struct CacheDecisionTests {
  @Test func aCompileReplaysTheCacheDecisionsItIsGiven() async throws {
    let dir = TemporaryDirectory()
    let prefix = "\(dir.path)/pairs"
    let slice = const(3, Array(0..<30)).map { (x: Int) -> Int in x * 2 }.cachePartial(prefix)
    // No files: the driver computes every shard.
    var driver = Compiler(invocation: 1)
    let computed = driver.compile(slice.node)
    #expect(driver.storedDecisions == [[false, false, false]])
    #expect(computed.allSatisfy { !$0.readsStored })
    // Shard 1's file appears before the machine compiles: it still computes shard 1.
    try Data().write(to: URL(fileURLWithPath: "\(prefix)-0001-of-0003"))
    var machine = Compiler(invocation: 1, stored: driver.storedDecisions)
    let replayed = machine.compile(slice.node)
    #expect(replayed.map(\.readsStored) == [false, false, false])
    #expect(TaskGraph(roots: replayed, invocation: 1).digest == TaskGraph(roots: computed, invocation: 1).digest)
    // Left to itself, a compile now reads shard 1 from its file.
    var fresh = Compiler(invocation: 1)
    #expect(fresh.compile(slice.node).map(\.readsStored) == [false, true, false])
    // And the decisions given are followed the other way too: shard 2 from a file.
    var told = Compiler(invocation: 1, stored: [[false, false, true]])
    #expect(told.compile(slice.node).map(\.readsStored) == [false, false, true])
  }

  /// Stored shards are a mechanism of their own, not the cache's: any node may say which of
  /// its shards are kept elsewhere, and those are read instead of computed.
  @Test func anyStoredShardsAreReadInsteadOfComputed() async throws {
    struct MemoryShards: StoredShards {
      let rows: [Int: [Int]]
      func available(shards: Int) -> [Bool] { (0..<shards).map { rows[$0] != nil } }
      func reader(shard: Int, of shards: Int, schema: Schema) throws -> any Reader {
        FrameReader([try Frame([Column(rows[shard]!)])])
      }
    }
    let computed = Mutex<Set<Int>>([])
    let slice = const(3, Array(0..<30)).map { (x: Int) -> Int in
      computed.withLock { _ = $0.insert(TaskContext.current!.shard) }
      return x
    }
    slice.node.stored = MemoryShards(rows: [1: [-1, -2]])
    let rows = Array(try (await Session().run(slice)).rows()).sorted()
    #expect(rows == [-2, -1] + Array(0..<10) + Array(20..<30))
    #expect(computed.withLock { $0 } == [0, 2])
  }
}
