import Synchronization

/// A result passed to a func that runs on machines. The driver sends it as a reference to the
/// invocation that made it; each machine compiles that invocation first and hands the func a
/// result over its tasks, whose outputs stay where they are (on the machines that hold them).
protocol ResultArgument {
  /// The tasks that computed it.
  var resultTasks: [ShardTask] { get }
  /// Whether it belongs to `session`.
  func belongs(to session: Session) -> Bool
  /// A result over `roots`, a compiled invocation's tasks.
  /// - Throws: `invalidArgument` when their columns are not this result's.
  static func onMachine(_ roots: [ShardTask], use: ResultOnMachine) throws -> Any
}

/// How a result argument travels to the machines: `{"result": invocation}`.
struct ResultReference: Codable {
  var result: Int
}

/// Notes whether a func body on a machine read the rows of a result argument: they are not
/// there (only on the driver), so the machine's compile fails, naming the problem.
final class ResultOnMachine: Sendable {
  let readRows = Atomic<Bool>(false)
  static let message =
    "a func that runs on machines may use a result argument only as a slice (result.slice): its rows are read on the driver, not in the func"
}
