/// Errors of the slice layer. Lost work (retry it) is kept apart from fatal errors.
public enum BigsliceError: Error, CustomStringConvertible, @unchecked Sendable {
  /// A func that was never registered was run.
  case unregisteredFunc(String)
  /// Two funcs were registered under one key.
  case duplicateFunc(String)
  /// A func was run with arguments of other types than it takes.
  case wrongArguments(func: String, expected: [String], found: [String])
  /// A slice holds a column type that cannot be stored.
  case unsupportedType(String)
  /// A combinator was given an argument out of its range (shards < 1, …).
  case invalidArgument(String)
  /// User code or the data failed a task: fatal for the job. Names the operation and shard.
  case taskFailed(op: String, shard: Int, cause: Error)
  /// A task lost its input `tries` times in a row; `cause` is the last loss.
  case tooManyTries(op: String, shard: Int, tries: Int, cause: Error)
  /// A task failed with a temporary error (`TemporaryError`) on every attempt the session
  /// allows, or with another error after retries: every attempt's error, the last one last.
  case failedAfterRetries(op: String, shard: Int, attempts: [Error])
  /// A shard of a result gave other rows when it was computed again while being read: its
  /// slices are not deterministic (they must give the same rows every time).
  case nondeterministic(op: String, shard: Int, detail: String)
  /// An upstream output that a task needed was gone (released or never computed).
  case outputMissing(op: String, shard: Int)
  /// A trace file could not be written, read or understood.
  case traceFile(path: String, reason: String)
  /// A session on machines has none to run its tasks on (they could not start, or every one
  /// stopped); says why.
  case machinesUnavailable(String)

  public var description: String {
    switch self {
    case .unregisteredFunc(let key): "func \(key) is not registered; create its Func before the session starts"
    case .duplicateFunc(let key): "two funcs are registered under the key \(key)"
    case .wrongArguments(let f, let expected, let found):
      "func \(f) takes (\(expected.joined(separator: ", "))), but was run with (\(found.joined(separator: ", ")))"
    case .unsupportedType(let what): "unsupported column type: \(what)"
    case .invalidArgument(let what): "invalid argument: \(what)"
    case .taskFailed(let op, let shard, let cause): "\(op) shard \(shard) failed: \(cause)"
    case .tooManyTries(let op, let shard, let tries, let cause):
      "\(op) shard \(shard): too many tries (\(tries) in a row lost its input or its machine; last: \(cause))"
    case .failedAfterRetries(let op, let shard, let attempts):
      "\(op) shard \(shard) failed after \(attempts.count) attempts: "
        + attempts.enumerated().map { "attempt \($0 + 1): \($1)" }.joined(separator: "; ")
    case .nondeterministic(let op, let shard, let detail):
      "\(op) shard \(shard) gave other rows when it was computed again (\(detail)); the slices of a func must give "
        + "the same rows every time they are computed"
    case .outputMissing(let op, let shard): "the output of \(op) shard \(shard) is gone"
    case .traceFile(let path, let reason): "trace file \(path): \(reason)"
    case .machinesUnavailable(let why): "no machines: \(why)"
    }
  }
}
