import Testing

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
    do {
      try await function()
    } catch {
      await EngineSlots.shared.release()
      throw error
    }
    await EngineSlots.shared.release()
  }
}

extension Trait where Self == EngineSlot {
  /// Each test case waits for one of `EngineSlots.width` slots.
  static var engine: Self { EngineSlot() }
}
