import Bigmachine
import Dispatch
import Frame
import NIOCore
import SliceIO
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Runs the Swift tasks of the machine executor on threads of its own, never on Swift's
/// cooperative pool: the threads that wait for those tasks (a session's caller, a task thread
/// reading a peer's partition) may themselves be pool threads, and the pool has only as many
/// threads as cores.
enum BridgeExecutor {
  static let shared = ThreadPoolTaskExecutor(threads: 4)
}

/// Waits on this thread for `body`, run as a Swift task on the bridge executor's threads.
func blockingAwait<T>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
  let box = Mutex<Swift.Result<UncheckedBox<T>, Error>?>(nil)
  let done = DispatchSemaphore(value: 0)
  _Concurrency.Task(executorPreference: BridgeExecutor.shared) {
    do {
      let value = try await body()
      box.withLock { $0 = .success(UncheckedBox(value)) }
    } catch {
      box.withLock { $0 = .failure(error) }
    }
    done.signal()
  }
  done.wait()
  return try box.withLock { $0! }.get().value
}

/// A stream's iterator, shared by the tasks that take its chunks one at a time.
private final class ChunkIterator: @unchecked Sendable {
  var iterator: ByteStream.AsyncIterator
  init(_ stream: ByteStream) { iterator = stream.makeAsyncIterator() }
  func next() async throws -> ByteBuffer? { try await iterator.next() }
}

/// The bytes of a stored partition on another machine, read through a byte stream from a
/// byte offset on. After a transient error (the connection dropped, the peer is busy) it asks
/// again from the first byte it has not handed out, up to `attempts` times with a growing
/// wait: the reader above sees one unbroken stream, and checks its blocks as always. Anything
/// else (the partition is gone, the machine stopped) is thrown.
final class RemoteSource: ByteSource {
  let name: String
  private let open: @Sendable (_ offset: Int) async throws -> ByteStream
  private var chunks: ChunkIterator?
  private var chunk: ByteBuffer?
  /// Bytes handed out so far: where a resumed stream starts.
  private(set) var offset = 0
  /// Streams opened again after a transient error.
  private(set) var resumes = 0
  private let attempts: Int
  private let firstWait: Duration

  init(
    name: String, attempts: Int = 5, firstWait: Duration = .milliseconds(100),
    open: @escaping @Sendable (_ offset: Int) async throws -> ByteStream
  ) {
    self.name = name
    self.open = open
    self.attempts = attempts
    self.firstWait = firstWait
  }

  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    var failures = 0
    var wait = firstWait
    while true {
      if var c = chunk, c.readableBytes > 0 {
        let n = min(count, c.readableBytes)
        c.withUnsafeReadableBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        c.moveReaderIndex(forwardBy: n)
        chunk = c
        offset += n
        return n
      }
      do {
        if chunks == nil {
          let open = self.open
          let from = offset
          chunks = ChunkIterator(try blockingAwait { try await open(from) })
        }
        let source = chunks!
        guard let next = try blockingAwait({ try await source.next() }) else { return 0 }
        chunk = next
        failures = 0
      } catch let error as BigmachineError where error.isTemporary && failures + 1 < attempts {
        failures += 1
        chunks = nil
        resumes += 1
        nanosleep(milliseconds: Int(wait / .milliseconds(1)))
        wait = wait * 2
      }
    }
  }
}

/// A machine that holds task outputs, as the driver sees it.
protocol OutputHolder: AnyObject, Sendable {
  /// The machine's address.
  var address: String { get }
  /// False once the machine stopped: its outputs are lost.
  var isAlive: Bool { get }
  /// Streams partition `partition` of `task`'s output from byte `offset` on.
  func read(_ task: TaskRef, partition: Int, offset: Int) async throws -> ByteStream
  /// Deletes the outputs of `tasks` (nothing is waited for).
  func discard(_ tasks: [TaskRef])
}

/// One task's output in a machine's store. Deleted there when the driver lets it go.
final class RemoteOutput: @unchecked Sendable {
  let worker: any OutputHolder
  let task: TaskRef

  init(worker: any OutputHolder, task: TaskRef) {
    self.worker = worker
    self.task = task
  }

  deinit { worker.discard([task]) }
}

/// One partition of a task's output in a machine's store.
struct RemotePartition: @unchecked Sendable {
  let output: RemoteOutput
  let partition: Int
  let schema: Schema
  let rows: Int
  let bytes: Int

  /// Streams the partition's blocks from the machine, checking each.
  func reader() -> any Reader {
    let output = self.output
    let partition = self.partition
    let source = RemoteSource(name: "\(output.task) partition \(partition) on \(output.worker.address)") { offset in
      try await output.worker.read(output.task, partition: partition, offset: offset)
    }
    return BlockFileReader(source: source, schema: schema, owner: output)
  }
}

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

/// Frames as a block stream with its end marker (what a stored partition file holds).
func encodeBlocks(_ frames: [Frame]) throws -> [UInt8] {
  let encoder = FrameEncoder()
  let out = ByteWriter()
  var rows = 0
  var blocks = 0
  for frame in frames where frame.count > 0 {
    try encoder.encodeBlocks(frame, into: out) { n in
      rows += n
      blocks += 1
    }
  }
  try encoder.encodeEnd(rows: rows, blocks: blocks, into: out)
  return Array(out.bytes)
}

/// The frames of a block stream made by `encodeBlocks`, checked.
func decodeBlocks(_ bytes: [UInt8], schema: Schema?, name: String) throws -> Frame? {
  let reader = BlockFileReader(source: BytesSource(bytes, name: name), schema: schema)
  var frames: [Frame] = []
  while let f = try reader.read() { frames.append(f) }
  return frames.isEmpty ? nil : (frames.count == 1 ? frames[0] : try Frame.concat(frames))
}

/// Bytes in memory as a byte source.
final class BytesSource: ByteSource {
  let name: String
  private let bytes: [UInt8]
  private var at = 0

  init(_ bytes: [UInt8], name: String) {
    self.bytes = bytes
    self.name = name
  }

  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    let n = min(count, bytes.count - at)
    guard n > 0 else { return 0 }
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
    at += n
    return n
  }
}
