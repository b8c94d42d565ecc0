import Synchronization

/// The cancellation of one evaluation: set from any thread; it wakes the evaluating thread,
/// which then starts no new task.
final class Cancellation: Sendable {
  /// The waker, in an object: a closure kept in a `Mutex` is reabstracted on every access.
  private final class Wake: Sendable {
    let call: @Sendable () -> Void
    init(_ call: @escaping @Sendable () -> Void) { self.call = call }
  }
  private let state = Mutex<(cancelled: Bool, wake: Wake?)>((false, nil))

  func cancel() {
    let wake = state.withLock { s -> Wake? in
      s.cancelled = true
      return s.wake
    }
    wake?.call()
  }

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
