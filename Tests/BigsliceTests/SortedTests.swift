import Bigslice
import Frame
import Testing

@Suite(.engine) struct SortedTests {
  @Test(arguments: shardCounts, memoryLimits)
  func sortedOrdersEveryRowGloballyByKey(shards: Int, limit: Int) async throws {
    let (k, v) = randomPairs(5000, keys: 1_000_000, seed: 21)
    let result = try await session(limit).run(const(shards, k, v).sorted(shards: max(1, shards / 2 + 1)))
    let rows = Array(try result.rows())
    #expect(rows.map(\.0) == k.sorted())
    #expect(try multiset(result) == multiset(zip(k, v).map { [AnyHashable($0), AnyHashable($1)] }))
    // Ranges are roughly even: no shard holds more than twice its share.
    let shares = try (0..<result.shards).map { try result.frames(shard: $0).reduce(0) { $0 + $1.count } }
    let most = shares.max() ?? 0
    #expect(most <= 2 * 5000 / result.shards + 64, "\(shares)")
  }

  @Test(arguments: [1, 7], memoryLimits)
  func stringKeysAndDuplicatesSortAndStayInOneShard(shards: Int, limit: Int) async throws {
    let (k, v) = randomPairs(3000, keys: 40, seed: 22)
    let words = k.map { "w\($0 * 37 % 41)" }
    let result = try await session(limit).run(const(shards, words, v).sorted(shards: 5))
    #expect(Array(try result.rows()).map(\.0) == words.sorted())
    var owner: [String: Int] = [:]
    for s in 0..<result.shards {
      for frame in try result.frames(shard: s) {
        for row in frame.anyRows {
          let w = row[0] as! String
          #expect(owner[w, default: s] == s, "key \(w) in two shards")
          owner[w] = s
        }
      }
    }
  }

  @Test func sortedByATwoColumnKey() async throws {
    let (a, b) = randomPairs(2000, keys: 5, seed: 23)
    let result = try await Session().run(const(3, a, b, Array(0..<2000)).prefixed(2).sorted(shards: 4))
    let rows: [[Int]] = Array(try result.rows()).map { [$0.0, $0.1] }
    let pairs: [[Int]] = zip(a, b).map { [$0, $1] }
    let expected = pairs.sorted { (x: [Int], y: [Int]) -> Bool in x[0] != y[0] ? x[0] < y[0] : x[1] < y[1] }
    #expect(rows == expected)
  }

  @Test func sortingAnEmptySliceGivesNoRows() async throws {
    let result = try await Session().run(const(3, [Int]()).sorted())
    #expect(try result.count == 0)
  }
}
