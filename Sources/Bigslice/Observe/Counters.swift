import Synchronization

/// Named counters, incremented by user code through `TaskContext` and merged across tasks.
final class Counters: Sendable {
  private let values = Mutex<[String: Int]>([:])

  func add(_ name: String, _ n: Int) { values.withLock { $0[name, default: 0] += n } }

  func merge(_ other: Counters) {
    let theirs = other.snapshot
    values.withLock { for (k, v) in theirs { $0[k, default: 0] += v } }
  }

  var snapshot: [String: Int] { values.withLock { $0 } }
}
