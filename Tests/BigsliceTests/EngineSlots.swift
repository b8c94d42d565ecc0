import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// At most `EngineSlots.width` engine test cases run at once.
///
/// The engine tests are `async` and await their jobs, so none of them holds a thread of the
/// cooperative pool while its job runs; Swift Testing would then start every test at once,
/// and on two cores a hundred concurrent jobs, worker processes and keepalives time each
/// other out. Every suite here takes `.engine`, which makes each test case wait for a slot.
actor EngineSlots {
  static let shared = EngineSlots()
  /// Test cases that run at once.
  static let width = 3
  private var free = EngineSlots.width
  private var waiting: [CheckedContinuation<Void, Never>] = []

  func acquire() async {
    if free > 0 {
      free -= 1
      return
    }
    await withCheckedContinuation { waiting.append($0) }
  }

  func release() {
    if waiting.isEmpty {
      free += 1
    } else {
      waiting.removeFirst().resume()
    }
  }
}

/// The trait that runs each test case of a suite in an engine slot.
struct EngineSlot: SuiteTrait, TestTrait, TestScoping {
  var isRecursive: Bool { true }

  func scopeProvider(for test: Test, testCase: Test.Case?) -> EngineSlot? { testCase == nil ? nil : self }

  func provideScope(
    for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void
  ) async throws {
    await EngineSlots.shared.acquire()
    let running = Watchdog.shared.started(
      "\(test.name) (\(test.sourceLocation.fileName):\(test.sourceLocation.line))")
    defer { Watchdog.shared.ended(running) }
    do {
      try await function()
    } catch {
      await EngineSlots.shared.release()
      throw error
    }
    await EngineSlots.shared.release()
  }
}

/// Ends the test process, naming the test, when an engine test case runs longer than
/// `Watchdog.limit`: a hung test then fails the run in minutes, where it would otherwise
/// hold it until CI's own limit with nothing printed (the runner's output is buffered when
/// it goes to a pipe).
final class Watchdog: Sendable {
  static let shared = Watchdog()
  static let limit: Duration = .seconds(600)
  private let running = Mutex<(next: Int, cases: [Int: (name: String, started: ContinuousClock.Instant)])>((0, [:]))

  private init() {
    Thread.detachNewThread { [self] in
      while true {
        sleep(5)
        let now = ContinuousClock.now
        let late = running.withLock { $0.cases.values.filter { now - $0.started > Self.limit } }
        guard let first = late.first else { continue }
        let message =
          "\nthe test \(first.name) has run for over \(Self.limit); ending the test run. Running: "
          + running.withLock { $0.cases.values.map(\.name).sorted().joined(separator: "; ") } + "\n"
        fflush(nil)
        _ = message.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
        _exit(70)
      }
    }
  }

  /// Notes that a test case named `name` started; the token to end it with.
  func started(_ name: String) -> Int {
    running.withLock {
      $0.next += 1
      $0.cases[$0.next] = (name, .now)
      return $0.next
    }
  }

  func ended(_ token: Int) { _ = running.withLock { $0.cases.removeValue(forKey: token) } }
}

extension Trait where Self == EngineSlot {
  /// Each test case waits for one of `EngineSlots.width` slots.
  static var engine: Self { EngineSlot() }
}
