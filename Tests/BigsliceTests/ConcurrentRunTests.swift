import Bigmachine
import BigsliceTestFuncs
import Foundation
import Frame
import Testing

@testable import Bigslice

/// Runs of one session evaluate at the same time, in this process and on worker processes:
/// each gives its serial answer, runs that need the same result's tasks compute them once,
/// and cancelling one leaves the others running.
@Suite(.engine) struct ConcurrentRunTests {
  enum Where: String, CaseIterable, Sendable { case local, processes }

  func session(_ place: Where) throws -> Session {
    TestFuncs.register()
    switch place {
    case .local: return Session(executor: .local(procs: 2))
    case .processes:
      let system = LocalSystem(executable: try testWorkerBinary(), maxprocs: 2)
      return Session(executor: .machines(system: .system(system), count: 2, procs: 2))
    }
  }

  func file() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("bigslice-meet-\(UUID())").path
  }

  /// Two runs whose tasks each wait for the other's: they finish only side by side.
  @Test(arguments: Where.allCases)
  func twoRunsProceedSideBySide(in place: Where) async throws {
    let session = try session(place)
    defer { session.shutdown() }
    let (a, b) = (file(), file())
    defer { for path in [a, b] { try? FileManager.default.removeItem(atPath: path) } }
    async let first = session.run(TestFuncs.rendezvous, a, b)
    async let second = session.run(TestFuncs.rendezvous, b, a)
    #expect(Array(try await first.rows()) == [1])
    #expect(Array(try await second.rows()) == [1])
  }

  /// Eight runs of reduces over different data at once, each checked against its own sums.
  @Test(arguments: Where.allCases)
  func eightRunsAtOnceGiveTheirSerialAnswers(in place: Where) async throws {
    let session = try session(place)
    defer { session.shutdown() }
    try await withThrowingTaskGroup(of: Bool.self) { group in
      for run in 0..<8 {
        group.addTask {
          let (k, v) = randomPairs(5_000, keys: 300, seed: UInt64(100 + run))
          var sums: [Int: Int] = [:]
          for (key, value) in zip(k, v) { sums[key, default: 0] += value }
          let result = try await session.run(TestFuncs.reduceSum, 3 + run % 4, k, v)
          return Dictionary(uniqueKeysWithValues: Array(try result.rows())) == sums
        }
      }
      var right = 0
      for try await ok in group where ok { right += 1 }
      #expect(right == 8)
    }
  }

  /// A discarded result read by four runs at once: its tasks are computed again once (the
  /// runs that find another computing them wait for it), and every run is right.
  @Test(arguments: Where.allCases)
  func runsFedByOneDiscardedResultComputeItOnce(in place: Where) async throws {
    let session = try session(place)
    defer { session.shutdown() }
    let (k, v) = randomPairs(20_000, keys: 500, seed: 21)
    let sums = zip(k, v).reduce(into: [Int: Int]()) { $0[$1.0, default: 0] += $1.1 }
    let result = try await session.run(TestFuncs.reduceSum, 4, k, v)
    result.discard()
    let jobs = session.jobs.count
    try await withThrowingTaskGroup(of: Bool.self) { group in
      for run in 0..<4 {
        group.addTask {
          let (modulus, factor) = (7 + run, run + 1)
          var model: [Int: Int] = [:]
          for (key, sum) in sums { model[key % modulus, default: 0] += sum * factor }
          let regrouped = try await session.run(TestFuncs.resultRegrouped, result, modulus, factor)
          return Dictionary(uniqueKeysWithValues: Array(try regrouped.rows())) == model
        }
      }
      var right = 0
      for try await ok in group where ok { right += 1 }
      #expect(right == 4)
    }
    #expect(session.jobs.count == jobs + 4)
    // No task ran to its end in two of the jobs.
    let done = session.jobs.suffix(4).flatMap { $0.tasks().filter { $0.state == .done }.map(\.id) }
    #expect(Set(done).count == done.count, "tasks computed twice: \(done.count - Set(done).count)")
    #expect(Dictionary(uniqueKeysWithValues: Array(try result.rows())) == sums)
  }

  /// Cancelling one of two runs: it throws `CancellationError`, and the other finishes with
  /// its answer.
  @Test(arguments: Where.allCases)
  func cancellingOneRunLeavesTheOtherRunning(in place: Where) async throws {
    let session = try session(place)
    defer { session.shutdown() }
    let long = Task { try await session.run(TestFuncs.slow, 2, 1_000, 10_000) }
    let short = Task { try await session.run(TestFuncs.slow, 2, 50, 2_000) }
    try await Task.sleep(for: .milliseconds(200))
    long.cancel()
    await #expect(throws: CancellationError.self) { _ = try await long.value }
    let sums = Dictionary(uniqueKeysWithValues: Array(try await short.value.rows()))
    #expect(sums == [0: 1_225, 1: 1_225])
  }
}
