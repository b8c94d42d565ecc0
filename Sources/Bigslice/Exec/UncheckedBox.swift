/// A value handed to another thread whose type the compiler cannot prove `Sendable` (tasks,
/// slices); the sender no longer touches it.
struct UncheckedBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
