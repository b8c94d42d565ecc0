import Bigslice
import Foundation
import Synchronization
import Testing

/// Counts how many user closures run at once, and the most seen.
final class Concurrency: Sendable {
  private let state = Mutex((now: 0, most: 0))
  func enter() {
    state.withLock {
      $0.now += 1
      $0.most = max($0.most, $0.now)
    }
  }
  func leave() { state.withLock { $0.now -= 1 } }
  var most: Int { state.withLock { $0.most } }
}

/// Removes every task output file of a session's spill directory.
func removePartitionFiles(_ session: Session) -> Int {
  guard let dir = session.spillPath, let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
    return 0
  }
  var removed = 0
  for name in names where name.hasPrefix("output") {
    if unlink("\(dir)/\(name)") == 0 { removed += 1 }
  }
  return removed
}

@Suite(.engine) struct EvaluationTests {
  /// A slice whose every row sleeps a little inside a tracked closure, over `shards` shards.
  func tracked(_ shards: Int, _ tracker: Concurrency) -> Slice<Int> {
    const(shards, Array(0..<(shards * 4))).map { (v: Int) -> Int in
      tracker.enter()
      defer { tracker.leave() }
      usleep(2_000)
      return v
    }
  }

  @Test func tasksRunInParallelUpToProcs() async throws {
    let tracker = Concurrency()
    let result = try await Session(executor: .local(procs: 3)).run(tracked(6, tracker))
    #expect(try result.count == 24)
    #expect(tracker.most == 3)
  }

  @Test func anExclusiveTaskRunsAlone() async throws {
    let tracker = Concurrency()
    let result = try await Session(executor: .local(procs: 3)).run(tracked(6, tracker).pragma(.exclusive))
    #expect(try result.count == 24)
    #expect(tracker.most == 1)
  }

  @Test func aProcsPragmaReservesThreads() async throws {
    let tracker = Concurrency()
    let result = try await Session(executor: .local(procs: 4)).run(tracked(6, tracker).pragma(.procs(2)))
    #expect(try result.count == 24)
    #expect(tracker.most == 2)
  }

  @Test func materializeStillGivesTheSameRows() async throws {
    let slice = const(3, Array(0..<100)).map { (v: Int) in v * 2 }.pragma(.materialize).map { (v: Int) in v + 1 }
    let rows = Array(try (await Session().run(slice)).rows()).sorted()
    #expect(rows == (0..<100).map { $0 * 2 + 1 })
  }

  /// Two shuffles; the middle stage deletes the first stage's spilled partitions the first
  /// `times` times it runs (all of them: every call when `times` is nil).
  func losingJob(_ session: Session, times: Int?, removed: Counter, computed: Counter = Counter()) -> Slice<Int, Int> {
    let left = Mutex(times ?? Int.max)
    return const(4, Array(0..<2000), Array(repeating: 1, count: 2000))
      .map { (k: Int, v: Int) -> (Int, Int) in
        computed.add(1)
        return (k, v)
      }
      .reshuffle()
      .map { (k: Int, v: Int) -> (Int, Int) in
        let delete = left.withLock {
          guard $0 > 0 else { return false }
          $0 -= 1
          return true
        }
        if delete {
          let n = removePartitionFiles(session)
          removed.add(n)
        }
        return (k % 100, v)
      }
      .reduce(.sum)
  }

  @Test func lostShufflePartitionsAreRecomputed() async throws {
    let session = Session(executor: .local(procs: 2), memoryLimit: 1)
    let removed = Counter()
    let computed = Counter()
    let result = try await session.run(losingJob(session, times: 1, removed: removed, computed: computed))
    let sums = Dictionary(uniqueKeysWithValues: Array(try result.rows()))
    #expect(removed.value > 0)
    // The upstream tasks whose files were removed ran again: more rows than the input's.
    #expect(computed.value > 2000, "\(computed.value) rows computed upstream")
    #expect(sums == Dictionary(uniqueKeysWithValues: (0..<100).map { ($0, 20) }))
  }

  @Test func anInputLostFiveTimesInARowFailsWithTooManyTries() async {
    let session = Session(executor: .local(procs: 2), memoryLimit: 1)
    let error = await #expect(throws: BigsliceError.self) {
      try await session.run(losingJob(session, times: nil, removed: Counter()))
    }
    let text = error?.description ?? ""
    #expect(text.contains("too many tries") && text.contains("5 in a row"), "\(text)")
  }
}

let doubleResult = Func("tests.doubleResult") { (r: SliceResult<Int, Int>) in
  r.slice.map { (k: Int, v: Int) in (k, v * 2) }
}
let sumResult = Func("tests.sumResult") { (r: SliceResult<Int, Int>, shards: Int) in
  r.slice.map { (k: Int, v: Int) in (k % 7, v) }.reshard(shards).reduce(.sum)
}

@Suite(.engine) struct ResultTests {
  /// A job that counts how often its source shards are computed.
  func counted(_ runs: Counter) -> Slice<Int, Int> {
    const(3, Array(0..<300), Array(repeating: 1, count: 300)).map { (k: Int, v: Int) -> (Int, Int) in
      if k % 100 == 0 { runs.add(1) }  // once per shard
      return (k, v)
    }
  }

  @Test func aResultIsAFuncArgumentAndIsNotComputedAgain() async throws {
    let session = Session()
    let runs = Counter()
    let first = try await session.run(counted(runs))
    let doubled = try await session.run(doubleResult, first)
    #expect(Array(try doubled.rows()).map(\.1) == Array(repeating: 2, count: 300))
    let sums = Dictionary(uniqueKeysWithValues: Array(try (await session.run(sumResult, first, 5)).rows()))
    var expected: [Int: Int] = [:]
    for k in 0..<300 { expected[k % 7, default: 0] += 1 }
    #expect(sums == expected)
    // Reading the result twice more kept its rows.
    #expect(try first.count == 300)
    #expect(runs.value == 3)
  }

  @Test func aDiscardedResultIsComputedAgainWhenRead() async throws {
    let session = Session(memoryLimit: 1)
    let runs = Counter()
    let result = try await session.run(counted(runs).reshuffle())
    #expect(runs.value == 3)
    result.discard()
    #expect(Array(try result.rows()).count == 300)
    #expect(runs.value == 6)
    result.discard()
    var iterator = result.makeAsyncIterator()
    var n = 0
    while try await iterator.next() != nil { n += 1 }
    #expect(n == 300)
    #expect(runs.value == 9)
    result.discard()
    let doubled = try await session.run(doubleResult, result)
    #expect(try doubled.count == 300)
    #expect(runs.value == 12)
  }
}
