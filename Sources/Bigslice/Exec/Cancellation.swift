import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The cancellation of one evaluation: set from any thread; it wakes the evaluating thread,
/// which then starts no new task.
final class Cancellation: Sendable {
  private let state = Mutex<(cancelled: Bool, wake: (@Sendable () -> Void)?)>((false, nil))

  func cancel() {
    let wake = state.withLock { s -> (@Sendable () -> Void)? in
      s.cancelled = true
      return s.wake
    }
    wake?()
  }

  var isCancelled: Bool { state.withLock { $0.cancelled } }

  /// Calls `wake` on cancellation (at once if already cancelled) until `detach()`.
  func attach(_ wake: @escaping @Sendable () -> Void) {
    let now = state.withLock { s -> Bool in
      s.wake = wake
      return s.cancelled
    }
    if now { wake() }
  }

  func detach() { state.withLock { $0.wake = nil } }
}
