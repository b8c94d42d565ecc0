import Bigmachine
import Frame
import NIOCore
import SliceIO
import Synchronization

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// The service a session installs on each of its machines: it compiles the session's
/// invocations the way the driver did, runs their tasks, keeps their outputs in a store of
/// block files, and serves those files to the other machines and to the driver.
struct SliceWorker: Service {
  static let name = "Bigslice"

  /// The driver's func registry (`FuncRegistry.fingerprint`) when the session started: a func
  /// registered in both must have the same signature in both.
  var funcs: [String]
  /// The memory limit of each machine, as the session's `memoryLimit` is for one process.
  var memoryLimit: Int?
  /// Tasks run at once on the machine.
  var procs: Int
  /// Where the machine's store directory is made (default `$TMPDIR`).
  var storeParent: String?
  /// The worker's state, made fresh with each decoded service (each machine).
  let state = WorkerState()

  enum CodingKeys: String, CodingKey { case funcs, memoryLimit, procs, storeParent }

  func setUp(_ worker: WorkerContext) async throws {
    let mismatch = RegistryMismatch(driver: funcs, worker: FuncRegistry.fingerprint)
    if !mismatch.differing.isEmpty { throw mismatch }
    state.configure(self, peers: worker.peers)
  }

  static let methods: [String: ServiceMethod<SliceWorker>] = [
    "compile": .unary { (worker, invocation: Invocation, _) in
      try worker.state.compile(invocation)
      return true
    },
    "run": .unary { (worker, request: RunRequest, _) in try await worker.state.run(request) },
    "read": .streaming { (worker, request: ReadRequest, _, writer) in try await worker.state.read(request, to: writer)
    },
    "discard": .unary { (worker, tasks: [TaskRef], _) in
      worker.state.discard(tasks)
      return true
    },
    "close": .unary { (worker, _: Bool, _) in
      worker.state.close()
      return true
    },
    "storePath": .unary { (worker, _: Bool, _) in worker.state.storePath ?? "" },
  ]
}

/// The func registries of the driver and a worker, compared.
///
/// Funcs are Swift globals, registered when first touched, so two processes of one binary may
/// have registered different sets by the time they compare. A func registered in both under
/// one key with different signatures is an error at machine start: the worker would build
/// another job. A func the worker lacks fails when it is invoked, naming the func; one only
/// the worker has is harmless.
struct RegistryMismatch: Error, CustomStringConvertible {
  /// Keys registered in both with different signatures, with the driver's and the worker's.
  let differing: [(key: String, driver: String, worker: String)]
  /// Keys registered only in the driver.
  let onlyInDriver: [String]

  init(driver: [String], worker: [String]) {
    func table(_ lines: [String]) -> [String: String] {
      var t: [String: String] = [:]
      for line in lines {
        let key = line.components(separatedBy: ": ").first ?? line
        t[key] = line
      }
      return t
    }
    let d = table(driver)
    let w = table(worker)
    differing = d.keys.sorted().compactMap { key in
      guard let mine = w[key], mine != d[key] else { return nil }
      return (key, d[key]!, mine)
    }
    onlyInDriver = d.keys.filter { w[$0] == nil }.sorted()
  }

  var description: String {
    "the worker's func registry differs from the driver's: funcs with other signatures: "
      + differing.map { "\($0.driver) in the driver, \($0.worker) in the worker" }.joined(separator: "; ")
      + " (the driver and its workers must run the same build)"
  }
}

/// The tasks of one invocation as compiled in this process, by their place in the compile.
struct TaskGraph {
  let tasks: [TaskRef: Task]
  /// The tasks of the invocation's slice, by shard.
  let roots: [Task]
  /// One line per task of the invocation: what the driver and a worker compare.
  let digest: [String]

  init(roots: [Task], invocation: Int) {
    self.roots = roots
    var all: [TaskRef: Task] = [:]
    var stack = roots
    while let task = stack.popLast() {
      guard all[task.ref] == nil else { continue }
      all[task.ref] = task
      for dep in task.deps { stack.append(contentsOf: dep.tasks) }
      if case .split(let split) = task.partitioner { stack.append(contentsOf: split.upstream) }
    }
    tasks = all
    digest = all.values.filter { $0.ref.invocation == invocation }.sorted { $0.ref.index < $1.ref.index }.map {
      "\($0.ref.index) \($0.name) partitions \($0.partitions)"
    }
  }
}

/// A worker's compiled invocations, task outputs, and the threads that run its tasks.
final class WorkerState: @unchecked Sendable {
  private struct State {
    var graphs: [Int: TaskGraph] = [:]
    var outputs: [TaskRef: [StoredPartition]] = [:]
  }
  private let state = Mutex(State())
  private var executor: LocalExecutor!
  private var store: OutputStore!
  private var peers: Peers?

  func configure(_ service: SliceWorker, peers: Peers?) {
    Allocator.limitPool(toFit: service.memoryLimit)
    store = OutputStore(
      memoryLimit: service.memoryLimit, spillParent: service.storeParent, procs: service.procs, outputsOnDisk: true,
      codec: .fast, prefix: "bigslice-store")
    executor = LocalExecutor(procs: service.procs, store: store)
    self.peers = peers
  }

  var storePath: String? { store?.spillPath }

  /// Compiles `invocation` unless it is compiled already.
  /// - Throws: a `ServiceError` of kind `RemoteKind.compile` naming the problem.
  func compile(_ invocation: Invocation) throws {
    if state.withLock({ $0.graphs[invocation.index] != nil }) { return }
    do {
      guard let signature = FuncRegistry.signature(invocation.funcKey) else {
        throw BigsliceError.invalidArgument(
          "func \(invocation.funcKey) is registered in the driver but not on this machine: register every func before the session starts (touch its global), in the driver and in the worker alike"
        )
      }
      guard signature == invocation.signature else {
        throw BigsliceError.invalidArgument(
          "func \(invocation.funcKey) is \(invocation.signature) in the driver but \(signature) on this machine")
      }
      let (types, invoke) = try FuncRegistry.lookup(invocation.funcKey)
      guard types.count == invocation.arguments.count else {
        throw BigsliceError.wrongArguments(
          func: invocation.funcKey, expected: types.map { "\($0)" }, found: ["\(invocation.arguments.count) values"])
      }
      var args: [Any] = []
      let resultUse = ResultOnMachine()
      for (i, (type, json)) in zip(types, invocation.arguments).enumerated() {
        if let resultType = type as? any ResultArgument.Type {
          args.append(try resultArgument(resultType, json, index: i, invocation: invocation, use: resultUse))
        } else {
          args.append(try decodeArgument(type, json, index: i, func: invocation.funcKey))
        }
      }
      let node = try invoke(args)
      if resultUse.readRows.load(ordering: .relaxed) {
        throw BigsliceError.invalidArgument("func \(invocation.funcKey): \(ResultOnMachine.message)")
      }
      if let problem = node.problem { throw problem }
      var compiler = Compiler(invocation: invocation.index, caches: invocation.caches)
      let graph = TaskGraph(roots: compiler.compile(node), invocation: invocation.index)
      guard graph.digest == invocation.digest else {
        let first = zip(graph.digest, invocation.digest).first { $0 != $1 }
        throw BigsliceError.invalidArgument(
          "func \(invocation.funcKey) compiled into other tasks on the worker than on the driver (\(graph.digest.count) tasks here, \(invocation.digest.count) there"
            + (first.map { "; first difference: \($0.0) here, \($0.1) there" } ?? "")
            + "): a func must build the same slices from the same arguments in every process")
      }
      state.withLock { $0.graphs[invocation.index] = graph }
    } catch {
      throw ServiceError(kind: RemoteKind.compile, message: String("\(error)".prefix(1000)))
    }
  }

  /// Argument `index`, a result of an earlier invocation compiled here (the driver compiles
  /// the invocations in `results` on a machine first), as a result over its tasks.
  private func resultArgument(
    _ type: any ResultArgument.Type, _ json: String, index: Int, invocation: Invocation, use: ResultOnMachine
  ) throws -> Any {
    let reference: ResultReference
    do {
      reference = try JSONDecoder().decode(ResultReference.self, from: Data(json.utf8))
    } catch {
      throw BigsliceError.invalidArgument(
        "argument \(index + 1) of func \(invocation.funcKey) is a result, but the driver sent \(json.prefix(100))")
    }
    guard invocation.results.contains(reference.result),
      let roots = state.withLock({ $0.graphs[reference.result]?.roots }), !roots.isEmpty
    else {
      throw BigsliceError.invalidArgument(
        "argument \(index + 1) of func \(invocation.funcKey) is the result of invocation \(reference.result), which is not compiled on this machine"
      )
    }
    return try type.onMachine(roots, use: use)
  }

  private func task(_ ref: TaskRef) -> Task? {
    var found: Task?
    state.withLock { s in
      if let graph = s.graphs[ref.invocation] { found = graph.tasks[ref] }
    }
    return found
  }

  /// Runs a task and keeps its output.
  func run(_ request: RunRequest) async throws -> RunReply {
    guard let task = task(request.task) else {
      throw ServiceError(kind: RemoteKind.missing, message: "task \(request.task) is not compiled on this machine")
    }
    for sample in request.samples {
      guard let upstream = self.task(sample.task) else { continue }
      let frame = try decodeBlocks(sample.blocks, schema: nil, name: "the key sample of \(sample.task)")
      state.withLock { _ in if upstream.sample == nil { upstream.sample = frame } }
    }
    var locations: [TaskRef: String] = [:]
    for input in request.inputs { locations[input.task] = input.machine }
    let me = request.machine
    let peers = self.peers
    let open: (Task, Int) throws -> any Reader = { [self] upstream, partition in
      guard let at = locations[upstream.ref] else {
        throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
      }
      if at == me {
        guard let output = state.withLock({ $0.outputs[upstream.ref] }), partition < output.count else {
          throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
        }
        return try output[partition].reader()
      }
      let ref = upstream.ref
      let source = RemoteSource(name: "\(ref) partition \(partition) on \(at)") { offset in
        try await peers!.stream(at, "Bigslice.read", ReadRequest(task: ref, partition: partition, offset: offset))
      }
      return BlockFileReader(source: source, schema: upstream.chain[0].schema)
    }
    let counters = Counters()
    let io = TaskIOMeter()
    let executor = self.executor!
    let job = TaskJob(task: task, open: open)
    let started = ContinuousClock.now
    let output: [StoredPartition]
    do {
      output = try await withCheckedThrowingContinuation {
        (continuation: CheckedContinuation<UncheckedBox<[StoredPartition]>, Error>) in
        executor.submit {
          do {
            continuation.resume(
              returning: UncheckedBox(try executor.run(job.task, counters: counters, io: io, open: job.open)))
          } catch {
            continuation.resume(throwing: error)
          }
        }
      }.value
    } catch let lost as LostInput {
      let refs = lost.upstream.map { "\($0.ref)" }.joined(separator: " ")
      throw ServiceError(kind: RemoteKind.lostInput, message: String("\(refs): \(lost.cause)".prefix(1000)))
    } catch {
      var failure = RemoteFailure(op: task.op, shard: task.shard, message: "\(error)")
      if case .taskFailed(let op, let shard, let cause) = error as? BigsliceError {
        failure = RemoteFailure(op: op, shard: shard, message: "\(cause)")
      }
      failure.message = String(failure.message.prefix(600))
      let json = String(decoding: try JSONEncoder().encode(failure), as: UTF8.self)
      throw ServiceError(kind: RemoteKind.taskFailed, message: json)
    }
    state.withLock { $0.outputs[task.ref] = output }
    return RunReply(
      rows: output.map(\.rows), bytes: output.map(\.byteCount), counters: counters.snapshot,
      sample: try task.sample.map { try encodeBlocks([$0]) }, readRows: io.io.readRows, readBytes: io.io.readBytes,
      writeRows: io.io.writeRows, writeBytes: io.io.writeBytes, readSeconds: seconds(io.io.readTime),
      writeSeconds: seconds(io.io.writeTime), firstReadAfter: io.io.firstRead.map { seconds($0 - started) })
  }

  /// Streams a stored partition from byte `offset` on.
  func read(_ request: ReadRequest, to writer: StreamWriter) async throws {
    guard let output = state.withLock({ $0.outputs[request.task] }), request.partition >= 0,
      request.partition < output.count
    else {
      throw ServiceError(
        kind: RemoteKind.missing, message: "no output of \(request.task) partition \(request.partition) here")
    }
    let chunk = 1 << 20
    switch output[request.partition] {
    case .spilled(let file):
      let fd = open(file.path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        throw ServiceError(kind: RemoteKind.missing, message: "cannot open \(file.path): errno \(errno)")
      }
      defer { Glibc.close(fd) }
      var at = off_t(request.offset)
      while true {
        var buffer = ByteBufferAllocator().buffer(capacity: chunk)
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: chunk) { raw in
          max(0, pread(fd, raw.baseAddress!, chunk, at))
        }
        if n == 0 { break }
        at += off_t(n)
        try await writer.write(buffer)
      }
      withExtendedLifetime(file) {}
    case .memory(let held):
      let bytes = try encodeBlocks(held.frames)
      var at = min(request.offset, bytes.count)
      while at < bytes.count {
        let end = min(at + chunk, bytes.count)
        try await writer.write(Array(bytes[at..<end]))
        at = end
      }
    case .remote:
      throw ServiceError(kind: RemoteKind.missing, message: "\(request.task) is not stored here")
    }
  }

  func discard(_ tasks: [TaskRef]) {
    // The files go when the last reader lets them go.
    let dropped = state.withLock { s in tasks.compactMap { s.outputs.removeValue(forKey: $0) } }
    _ = dropped
  }

  /// Drops every output and compiled invocation and removes the store.
  func close() {
    // The outputs go (their files unlinked) outside the lock, before the directory.
    var dropped = State()
    state.withLock { swap(&$0, &dropped) }
    dropped = State()
    store?.removeDirectory()
  }
}

/// A task and the opener of its inputs, handed to a task thread.
///
/// A class, not an `UncheckedBox` of a tuple: Swift 6.3.1 miscompiles `let (a, f) = box.value`
/// when the tuple in a generic box holds a closure. SILGen destroys the guaranteed `a` it
/// destructured, so every run released the task once too often, and a worker's compiled tasks
/// were freed while its graph still held them. (An assertions build of the compiler reports
/// "Have operand with incompatible ownership" in SILGenCleanup.)
private final class TaskJob: @unchecked Sendable {
  let task: Task
  let open: (Task, Int) throws -> any Reader
  init(task: Task, open: @escaping (Task, Int) throws -> any Reader) {
    self.task = task
    self.open = open
  }
}

/// Decodes argument `index` of a func from its JSON, as the func's parameter type.
private func decodeArgument(_ type: Any.Type, _ json: String, index: Int, func key: String) throws -> Any {
  guard let decodable = type as? any Decodable.Type else {
    throw BigsliceError.invalidArgument("argument \(index + 1) of func \(key) (\(type)) is not Decodable")
  }
  do {
    return try JSONDecoder().decode(decodable, from: Data(json.utf8))
  } catch {
    throw BigsliceError.invalidArgument("argument \(index + 1) of func \(key) does not decode as \(type): \(error)")
  }
}

/// The JSON of argument `index` of a func, for its workers.
func encodeArgument(_ value: Any, index: Int, func key: String) throws -> String {
  guard let encodable = value as? any Encodable else {
    throw BigsliceError.invalidArgument(
      "argument \(index + 1) of func \(key) (\(type(of: value))) is not Codable, so it cannot be sent to machines")
  }
  do {
    return String(decoding: try JSONEncoder().encode(encodable), as: UTF8.self)
  } catch {
    throw BigsliceError.invalidArgument("argument \(index + 1) of func \(key) does not encode: \(error)")
  }
}
