#if canImport(Glibc)
  import Glibc
#endif

/// Hints for scheduling a slice's tasks.
public struct Pragma: Sendable, Hashable {
  /// The task wants a whole machine.
  public var exclusive = false
  /// Procs the task uses (clamped to a machine's).
  public var procs = 1
  /// Break pipelining: materialise this slice's output.
  public var materialize = false

  public init(exclusive: Bool = false, procs: Int = 1, materialize: Bool = false) {
    self.exclusive = exclusive
    self.procs = max(1, procs)
    self.materialize = materialize
  }

  public static let exclusive = Pragma(exclusive: true)
  public static func procs(_ n: Int) -> Pragma { Pragma(procs: n) }
  public static let materialize = Pragma(materialize: true)
}
