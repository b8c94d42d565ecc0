import Bigmachine
import SliceIO

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
  /// The driver's `Compiler.storedDecisions`: which shards of each slice with stored shards
  /// read them.
  var stored: [[Bool]] = []
  /// The driver's `Compiler.expansions`: the files of each file reader.
  var inputs: [[String]] = []
}

/// Where a task's input is: which machine holds the output of `task`.
struct InputLocation: Codable, Sendable, Equatable {
  var task: TaskRef
  var attempt: Int
  var machine: String
}

/// The sample of an upstream task's output for a sampled shuffle (encoded frame blocks).
struct OutputSample: Codable, Sendable {
  var task: TaskRef
  var blocks: [UInt8]
}

/// One attempt's output of a task: a task computed again on the same machine makes another
/// output, and a late discard or read of the first attempt's never touches it.
struct OutputRef: Hashable, Codable, Sendable, CustomStringConvertible {
  var task: TaskRef
  var attempt: Int
  var description: String { "\(task) attempt \(attempt)" }
}

struct RunRequest: Codable, Sendable {
  var task: TaskRef
  /// Names this run's output: unique among the session's runs.
  var attempt: Int
  /// The address of the machine that runs it (its own name in `inputs`).
  var machine: String
  /// Where the task's upstream outputs are, less those the machine was told already: a
  /// machine keeps what it is told, so a shuffle of n tasks into n sends each location to
  /// each machine once, not n times.
  var inputs: [InputLocation]
  /// A bit per upstream task, in the order of the task's dependencies: set when the
  /// partition the task reads of that output holds no rows (the machine does not ask for it).
  var empty: [UInt8]
  /// The samples of a sampled shuffle's upstream outputs the machine does not hold yet.
  var samples: [OutputSample]
}

struct RunReply: Codable, Sendable {
  /// The rows and bytes of the whole output, and the partitions holding rows.
  var rows: Int
  var bytes: Int
  var holding: PartitionBits
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
  /// What the task spilled on the machine.
  var spills: SpillCounts
  /// How the task read the partitions other machines hold.
  var remoteReads: RemoteReadCounts
}

/// How a task read the partitions other machines hold: batched reads made, the parts they
/// brought, and the parts streamed one to a stream (too large for a batch).
struct RemoteReadCounts: Codable, Sendable {
  var fetches = 0
  var batchedParts = 0
  var streamedParts = 0
}

struct ReadRequest: Codable, Sendable {
  var output: OutputRef
  var partition: Int
  var offset: Int
}

/// Why a worker's call failed, as it travels to the driver: the typed detail of the remote
/// error (`ServiceError.detail`), so the driver tells a lost input from a failure without
/// reading the message.
enum WorkerFailure: Codable, Error, Equatable, CustomStringConvertible {
  /// The task could not read its inputs: the outputs of `upstream` are lost, and are computed
  /// again with the task. Not the task's fault.
  case lostInput(upstream: [TaskRef], cause: String)
  /// The task failed for good in operation `op` of shard `shard` (user code or the data).
  case taskFailed(op: String, shard: Int, message: String)
  /// The task failed in operation `op` of shard `shard` with a temporary error: running it
  /// again may succeed.
  case temporary(op: String, shard: Int, message: String)
  /// The invocation cannot be compiled on the worker (an unknown func, another task graph).
  case compile(String)
  /// The task or output asked for is not on this worker.
  case missing(String)

  /// The kind of the remote error that carries it.
  static let kind = "bigslice.worker"

  var description: String {
    switch self {
    case .lostInput(let upstream, let cause):
      return "lost the outputs of \(upstream.map(\.description).joined(separator: " ")): \(cause)"
    case .taskFailed(let op, let shard, let message): return "\(op) shard \(shard) failed: \(message)"
    case .temporary(let op, let shard, let message): return "\(op) shard \(shard) failed for now: \(message)"
    case .compile(let message): return message
    case .missing(let message): return message
    }
  }

  /// The error a service method throws to send it, its texts bounded.
  var serviceError: ServiceError {
    let bounded = self.bounded
    // A WorkerFailure always encodes; the message is for people and logs.
    return (try? ServiceError(kind: WorkerFailure.kind, message: bounded.description, detail: bounded))
      ?? ServiceError(kind: WorkerFailure.kind, message: bounded.description)
  }

  /// The same failure with every text bounded and cleaned as any text from a peer is
  /// (`BigmachineError.boundedText`): what a worker sends, and what the driver keeps of what
  /// it received.
  var bounded: WorkerFailure {
    func text(_ s: String) -> String { BigmachineError.boundedText(s) }
    switch self {
    case .lostInput(let upstream, let cause): return .lostInput(upstream: upstream, cause: text(cause))
    case .taskFailed(let op, let shard, let message):
      return .taskFailed(op: text(op), shard: shard, message: text(message))
    case .temporary(let op, let shard, let message):
      return .temporary(op: text(op), shard: shard, message: text(message))
    case .compile(let message): return .compile(text(message))
    case .missing(let message): return .missing(text(message))
    }
  }
}

/// A task failure on a machine, as the driver reports it: the operation and shard that failed,
/// the worker's message, and the machine.
struct RemoteFailure: TemporaryError, CustomStringConvertible {
  var op: String
  var shard: Int
  var message: String
  var machine: String
  /// The worker found the error temporary.
  var isTemporary = false
  var description: String { "\(message) (on machine \(machine))" }
}
