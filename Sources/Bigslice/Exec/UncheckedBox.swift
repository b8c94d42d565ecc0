/// A value handed to another thread whose type the compiler cannot prove `Sendable` (tasks,
/// slices); the sender no longer touches it.
struct UncheckedBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}

/// A value handed to another thread once: `take()` moves it out, so the closure that keeps
/// the box until it returns no longer holds the value. A task's run takes its task this way,
/// so that nothing on the running thread keeps the task's output (and its files) alive once
/// the evaluator has been told the task ended.
final class Handoff<T>: @unchecked Sendable {
  private var value: T?
  init(_ value: T) { self.value = value }
  /// The value, once.
  func take() -> T { value.take()! }
}
