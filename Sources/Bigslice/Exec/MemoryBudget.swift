import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The bytes of task output a session may hold in memory; beyond it, outputs spill to disk.
final class MemoryBudget: Sendable {
  /// The limit in bytes; `Int.max` for none.
  let limit: Int
  private let used = Mutex(0)

  init(limit: Int) { self.limit = limit }

  /// Charges `bytes` if they fit under the limit; false (and nothing charged) if not.
  func charge(_ bytes: Int) -> Bool {
    used.withLock {
      guard $0 <= limit - bytes else { return false }
      $0 += bytes
      return true
    }
  }

  func release(_ bytes: Int) { used.withLock { $0 -= bytes } }

  var charged: Int { used.withLock { $0 } }
}
