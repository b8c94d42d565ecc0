import Bigmachine
import Dispatch
import Frame
import NIOCore
import SliceIO
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

// MARK: Messages between the driver and the workers


/// A func run, as a worker needs it to compile the same tasks: the func's key, its arguments
/// in JSON, and what the driver's compile made of it.
struct Invocation: Codable, Sendable {
  var index: Int
  var funcKey: String
  /// The func's signature in the driver: the worker's must be the same.
  var signature: String
  var arguments: [String]
  /// Earlier invocations whose results are arguments of this one (compiled first).
  var results: [Int]
  /// The tasks the driver compiled, as `TaskGraph.digest` lines.
  var digest: [String]
  /// The driver's `Compiler.cacheDecisions`: which shards of each cached slice read their file.
  var caches: [[Bool]] = []
}

/// Where a task's input is: which machine holds the output of `task`.
struct InputLocation: Codable, Sendable {
  var task: TaskRef
  var machine: String
}

/// The key sample of an upstream task of a range shuffle (encoded frame blocks).
struct KeySample: Codable, Sendable {
  var task: TaskRef
  var blocks: [UInt8]
}

struct RunRequest: Codable, Sendable {
  var task: TaskRef
  /// The address of the machine that runs it (its own name in `inputs`).
  var machine: String
  var inputs: [InputLocation]
  var samples: [KeySample]
}

struct RunReply: Codable, Sendable {
  var rows: [Int]
  var bytes: [Int]
  var counters: [String: Int]
  var sample: [UInt8]?
  var readRows: Int
  var readBytes: Int
  var writeRows: Int
  var writeBytes: Int
  /// Time spent reading and writing, in seconds, and when the first read began, in seconds
  /// after the worker began the task (offsets: the machines' clocks are not the driver's).
  var readSeconds: Double
  var writeSeconds: Double
  var firstReadAfter: Double?
}

struct ReadRequest: Codable, Sendable {
  var task: TaskRef
  var partition: Int
  var offset: Int
}

/// Error kinds a worker's `run` raises, so the driver tells a lost input from a failure.
enum RemoteKind {
  /// The message lists the lost upstream tasks (`inv0.3 inv0.7`), then `: ` and the cause.
  static let lostInput = "bigslice.lostInput"
  /// The message is a `RemoteFailure` in JSON.
  static let taskFailed = "bigslice.taskFailed"
  /// The invocation cannot be compiled on the worker (an unknown func, another graph).
  static let compile = "bigslice.compile"
  /// The task or output asked for is not on this worker.
  static let missing = "bigslice.missing"
}

/// A task failure on a worker, as it travels to the driver.
struct RemoteFailure: Codable, Error, CustomStringConvertible {
  var op: String
  var shard: Int
  var message: String
  var machine: String = ""
  var description: String { machine.isEmpty ? message : "\(message) (on machine \(machine))" }
}
