import SliceIO

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An error that may not happen again if the task runs again: a flaky read of a remote file,
/// a service that was busy for a moment. A task that fails with one is run again after a
/// backoff, up to the session's `retries` times; once they are spent, the job fails with
/// `BigsliceError.failedAfterRetries`, which lists every attempt's error.
///
/// Conform an error type to it, or wrap any error in `Temporary`. The task runs again from its
/// inputs, so it must give the same rows each time (see "Determinism" in the README).
public protocol TemporaryError: Error {
  /// Whether trying again may succeed (default true): an error type whose cases differ says
  /// which are temporary.
  var isTemporary: Bool { get }
}

extension TemporaryError {
  public var isTemporary: Bool { true }
}

/// `cause`, marked temporary: `throw Temporary(error)` from user code to have the task retried.
public struct Temporary: TemporaryError, CustomStringConvertible {
  public let cause: Error

  public init(_ cause: Error) { self.cause = cause }

  public var description: String { "temporary: \(cause)" }
}

/// Whether running the task again may succeed: a `TemporaryError` that says so, or an I/O
/// error of the library's own readers whose errno is transient (`EAGAIN`, `ECONNRESET`,
/// `ETIMEDOUT` and their kind), looking through a `BigsliceError.taskFailed` to its cause.
func isTemporary(_ error: Error) -> Bool {
  switch error {
  case let error as TemporaryError: return error.isTemporary
  case BigsliceError.taskFailed(_, _, let cause): return isTemporary(cause)
  case SliceIOError.io(_, _, let code): return transientErrnos.contains(code)
  default: return false
  }
}

/// System errors that say "not now" rather than "never".
private let transientErrnos: Set<Int32> = [
  EAGAIN, EWOULDBLOCK, EINTR, ECONNRESET, ECONNABORTED, ECONNREFUSED, ETIMEDOUT, ENETDOWN, ENETUNREACH,
  EHOSTUNREACH, EPIPE,
]

/// How long a task waits before its `attempt`th retry (1 for the first): 100 ms, doubling, at
/// most 5 s.
func retryBackoff(_ attempt: Int) -> Duration {
  .milliseconds(min(100 << min(max(attempt - 1, 0), 16), 5_000))
}

/// Retries a session allows a task failing with a temporary error, by default.
let defaultRetries = 3
