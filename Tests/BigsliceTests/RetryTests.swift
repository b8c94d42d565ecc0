import Bigmachine
import BigsliceTestFuncs
import Foundation
import SliceIO
import Testing

@testable import Bigslice

/// Tasks failing with temporary errors run again with backoff, up to the session's retries,
/// in this process and on worker processes; other errors fail the job at once.
@Suite(.engine) struct RetryTests {
  enum Where: String, CaseIterable, Sendable { case local, processes }

  func session(_ place: Where, retries: Int) throws -> Session {
    TestFuncs.register()
    switch place {
    case .local: return Session(executor: .local(procs: 2), retries: retries)
    case .processes:
      let system = LocalSystem(executable: try testWorkerBinary(), maxprocs: 2)
      return Session(executor: .machines(system: .system(system), count: 2, procs: 2), retries: retries)
    }
  }

  /// A file no attempt has counted in yet.
  func attemptsFile() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("bigslice-attempts-\(UUID())").path
  }

  func attempts(_ path: String) -> Int {
    ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
  }

  /// Runs `TestFuncs.flaky`, whose shard 1 fails its first `failures` attempts, on a session
  /// of `retries` retries, expecting it to throw: the error, and the attempts made.
  func failedRun(_ place: Where, retries: Int, failures: Int, temporary: Bool) async throws -> (
    error: BigsliceError?, attempts: Int
  ) {
    let session = try session(place, retries: retries)
    defer { session.shutdown() }
    let file = attemptsFile()
    defer { try? FileManager.default.removeItem(atPath: file) }
    let error = await #expect(throws: BigsliceError.self) {
      _ = try await session.run(TestFuncs.flaky, 3, failures, temporary, file)
    }
    return (error, attempts(file))
  }

  @Test(arguments: Where.allCases)
  func aTaskFailingTemporarilyTwiceSucceedsOnItsThirdAttempt(in place: Where) async throws {
    let session = try session(place, retries: 3)
    defer { session.shutdown() }
    let file = attemptsFile()
    defer { try? FileManager.default.removeItem(atPath: file) }
    let started = ContinuousClock.now
    let rows = Array(try (await session.run(TestFuncs.flaky, 3, 2, true, file)).rows()).sorted()
    #expect(rows == Array(0..<30))
    #expect(attempts(file) == 3, "two failed attempts, then one that succeeded")
    // Backoffs of 100 and 200 ms came between them.
    #expect(ContinuousClock.now - started >= .milliseconds(300))
  }

  @Test(arguments: Where.allCases)
  func aTaskThatKeepsFailingTemporarilyFailsListingEveryAttempt(in place: Where) async throws {
    let (error, attempts) = try await failedRun(place, retries: 2, failures: 100, temporary: true)
    #expect(attempts == 3, "the first attempt and two retries")
    guard case .failedAfterRetries(_, let shard, let tried)? = error else {
      Issue.record("expected failedAfterRetries, got \(String(describing: error))")
      return
    }
    #expect(shard == 1 && tried.count == 3)
    let text = "\(error!)"
    for n in 1...3 { #expect(text.contains("attempt \(n): ") && text.contains("flaky attempt \(n)"), "\(text)") }
  }

  @Test(arguments: Where.allCases)
  func aTaskFailingForGoodIsNotRetried(in place: Where) async throws {
    let (error, attempts) = try await failedRun(place, retries: 3, failures: 1, temporary: false)
    #expect(attempts == 1)
    guard case .taskFailed(_, let shard, _)? = error else {
      Issue.record("expected taskFailed, got \(String(describing: error))")
      return
    }
    #expect(shard == 1)
    #expect("\(error!)".contains("flaky attempt 1"))
  }

  @Test func retriesCanBeTurnedOff() async throws {
    let (_, attempts) = try await failedRun(.local, retries: 0, failures: 1, temporary: true)
    #expect(attempts == 1)
  }

  @Test func errorsOfTheLibrarysReadersAreTemporaryByTheirErrno() {
    func io(_ code: Int32) -> Error { SliceIOError.io(path: "/data/part-0", operation: "read", errno: code) }
    for code in [EAGAIN, ECONNRESET, ETIMEDOUT] {
      #expect(isTemporary(io(code)))
      #expect(isTemporary(BigsliceError.taskFailed(op: "scan", shard: 0, cause: io(code))))
    }
    for code in [ENOENT, ENOSPC, EACCES] { #expect(!isTemporary(io(code))) }
    #expect(isTemporary(Temporary(FlakyFailure(attempt: 1))))
    #expect(!isTemporary(FlakyFailure(attempt: 1)))
  }
}
