import Synchronization

/// The cancellation of one evaluation: set from any thread; it wakes the evaluating thread,
/// which then starts no new task.
final class Cancellation: Sendable {
  /// The waker, in an object: a closure kept in a `Mutex` is reabstracted on every access.
  private final class Wake: Sendable {
    let call: @Sendable () -> Void
    init(_ call: @escaping @Sendable () -> Void) { self.call = call }
  }
  private struct State {
    var cancelled = false
    var wake: Wake?
    /// Called on cancellation besides `wake`, by token (a running remote task's stop).
    var handlers: [Int: Wake] = [:]
    var nextToken = 0
  }
  private let state = Mutex(State())

  func cancel() {
    let calls = state.withLock { s -> [Wake] in
      guard !s.cancelled else { return [] }
      s.cancelled = true
      return (s.wake.map { [$0] } ?? []) + Array(s.handlers.values)
    }
    for wake in calls { wake.call() }
  }

  /// Calls `handler` on cancellation (at once if already cancelled) unless `remove`d first
  /// with the token returned.
  func add(_ handler: @escaping @Sendable () -> Void) -> Int {
    let (token, now) = state.withLock { s -> (Int, Bool) in
      s.nextToken += 1
      if !s.cancelled { s.handlers[s.nextToken] = Wake(handler) }
      return (s.nextToken, s.cancelled)
    }
    if now { handler() }
    return token
  }

  func remove(_ token: Int) { _ = state.withLock { $0.handlers.removeValue(forKey: token) } }

  var isCancelled: Bool { state.withLock { $0.cancelled } }

  /// Calls `wake` on cancellation (at once if already cancelled) until `detach()`.
  func attach(_ wake: @escaping @Sendable () -> Void) {
    let now = state.withLock { s -> Bool in
      s.wake = Wake(wake)
      return s.cancelled
    }
    if now { wake() }
  }

  func detach() { state.withLock { $0.wake = nil } }
}
