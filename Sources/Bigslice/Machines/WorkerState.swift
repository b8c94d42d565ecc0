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

/// A worker's compiled invocations, task outputs, and the threads that run its tasks.
final class WorkerState: @unchecked Sendable {
  private struct State {
    var graphs: [Int: TaskGraph] = [:]
    /// Where each upstream output is, as the driver said (it says each once).
    var locations: [TaskRef: InputLocation] = [:]
    /// Each task's latest output, with the attempt that made it.
    var outputs: [TaskRef: (attempt: Int, output: TaskOutput)] = [:]
    /// The cancellation of each task running here, by attempt.
    var running: [Int: Cancellation] = [:]
    /// Attempts cancelled before they started here (the stop overtook the run request), or
    /// just after they ended.
    var cancelledEarly: Set<Int> = []
  }
  private let state = Mutex(State())
  private var executor: LocalExecutor!
  private var store: OutputStore!
  private var packed: PackedSections!
  private var peers: Peers?
  private var lock: StoreLock?

  /// Sets the machine up: removes the stores of dead workers beside its own, then makes and
  /// locks its own.
  /// - Throws: `SliceIOError.io` or `BigsliceError.invalidArgument` when the store cannot be
  ///   made.
  func configure(_ service: SliceWorker, peers: Peers?) throws {
    Allocator.limitPool(toFit: service.memoryLimit)
    let parent = service.storeParent ?? (getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp")
    _ = StoreLock.removeAbandoned(in: parent)
    store = OutputStore(
      memoryLimit: service.memoryLimit, spillParent: parent, procs: service.procs, outputsOnDisk: true,
      codec: .fast, prefix: StoreLock.prefix)
    lock = try StoreLock(directory: try store.spillDirectory().path)
    executor = LocalExecutor(procs: service.procs, store: store)
    packed = PackedSections(limit: store.sectionCacheBytes)
    self.peers = peers
  }

  var storePath: String? { store?.spillPath }

  /// Compiles `invocation` unless it is compiled already.
  /// - Throws: `WorkerFailure.compile` naming the problem.
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
      var compiler = Compiler(invocation: invocation.index, stored: invocation.stored, inputs: invocation.inputs)
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
      throw WorkerFailure.compile("\(error)").serviceError
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

  private func task(_ ref: TaskRef) -> ShardTask? {
    var found: ShardTask?
    state.withLock { s in
      if let graph = s.graphs[ref.invocation] { found = graph.tasks[ref] }
    }
    return found
  }

  /// Stops the tasks running here as `attempts` between their frames: the driver's run was
  /// cancelled. Attempts not running (done, or not started yet) are ignored.
  func cancel(_ attempts: [Int]) {
    let cancels = state.withLock { s in
      attempts.compactMap { attempt -> Cancellation? in
        guard let cancel = s.running[attempt] else {
          s.cancelledEarly.insert(attempt)
          return nil
        }
        return cancel
      }
    }
    for cancel in cancels { cancel.cancel() }
  }

  /// Runs a task and keeps its output.
  func run(_ request: RunRequest) async throws -> RunReply {
    guard let task = task(request.task) else {
      throw WorkerFailure.missing("task \(request.task) is not compiled on this machine").serviceError
    }
    for sample in request.samples {
      guard let upstream = self.task(sample.task) else { continue }
      let frame = try decodeBlocks(sample.blocks, schema: nil, name: "the output sample of \(sample.task)")
      // The driver's sample wins over one this machine computed: every machine then cuts
      // the same key ranges, even when the task was computed again with other rows.
      state.withLock { _ in upstream.sample = frame }
    }
    let locations = state.withLock { s in
      for input in request.inputs { s.locations[input.task] = input }
      return s.locations
    }
    let me = request.machine
    let peers = self.peers
    // The upstream outputs whose partition this task reads hold no rows; the others on other
    // machines are read in batches, in the order the task reads them.
    var empty: Set<TaskRef> = []
    let batched = BatchedReads(budget: store.readBatchBytes, partLimit: store.readBatchBytes / 4) { machine, request in
      try await gatherReply(try await peers!.stream(machine, "Bigslice.readMany", request), to: request, from: machine)
    }
    var bit = 0
    for dep in task.deps {
      for upstream in dep.tasks {
        if bit / 8 < request.empty.count, request.empty[bit / 8] & (1 << (bit % 8)) != 0 {
          empty.insert(upstream.ref)
        } else if let location = locations[upstream.ref], location.machine != me {
          let part = PartRef(
            output: OutputRef(task: upstream.ref, attempt: location.attempt), partition: dep.shuffle ? task.shard : 0)
          batched.add(part, on: location.machine)
        }
        bit += 1
      }
    }
    let open: PartitionOpener = { [self] upstream, partition in
      guard let location = locations[upstream.ref] else {
        throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
      }
      if empty.contains(upstream.ref) { return nil }
      let at = location.machine
      let ref = OutputRef(task: upstream.ref, attempt: location.attempt)
      if at == me {
        guard let output = self.output(ref), partition < output.partitions else {
          throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
        }
        if case .file(let file) = output.storage, file.place(partition).isShared {
          let frames = try packed.frames(file, of: ref, partition: partition)
          return frames.isEmpty ? nil : FrameReader(frames)
        }
        return output.reader(partition)
      }
      switch try batched.take(PartRef(output: ref, partition: partition)) {
      case .bytes(let bytes)?:
        return BlockFileReader(
          source: BufferSource(bytes, name: "\(ref.task) partition \(partition) from \(at)"),
          schema: upstream.chain[0].schema)
      case .missing(let why)?:
        throw RemoteFailure(op: upstream.op, shard: upstream.shard, message: why, machine: at)
      case .large?, nil: batched.streamed()
      }
      let source = RemoteSource(name: "\(ref.task) partition \(partition) on \(at)") { offset in
        try await peers!.stream(at, "Bigslice.read", ReadRequest(output: ref, partition: partition, offset: offset))
      }
      return BlockFileReader(source: source, schema: upstream.chain[0].schema)
    }
    let counters = Counters()
    let io = TaskIOMeter()
    let executor = self.executor!
    let job = TaskJob(task: task, open: open)
    let started = ContinuousClock.now
    let output: TaskOutput
    let cancel = Cancellation()
    if state.withLock({ s -> Bool in
      s.running[request.attempt] = cancel
      return s.cancelledEarly.remove(request.attempt) != nil
    }) {
      cancel.cancel()
    }
    defer { _ = state.withLock { $0.running.removeValue(forKey: request.attempt) } }
    do {
      output = try await withCheckedThrowingContinuation {
        (continuation: CheckedContinuation<UncheckedBox<TaskOutput>, Error>) in
        executor.submit {
          do {
            continuation.resume(
              returning: UncheckedBox(
                try executor.runner.run(job.task, counters: counters, io: io, open: job.open, cancel: cancel)))
          } catch {
            continuation.resume(throwing: error)
          }
        }
      }.value
    } catch let lost as LostInput {
      throw WorkerFailure.lostInput(upstream: lost.upstream.map(\.ref), cause: "\(lost.cause)").serviceError
    } catch {
      var (op, shard, cause) = (task.op, task.shard, error)
      if case .taskFailed(let failedOp, let failedShard, let inner) = error as? BigsliceError {
        (op, shard, cause) = (failedOp, failedShard, inner)
      }
      if isTemporary(error) {
        throw WorkerFailure.temporary(op: op, shard: shard, message: "\(cause)").serviceError
      }
      throw WorkerFailure.taskFailed(op: op, shard: shard, message: "\(cause)").serviceError
    }
    keep(output, as: OutputRef(task: task.ref, attempt: request.attempt))
    return RunReply(
      rows: output.rows, bytes: output.bytes, holding: output.holding, counters: counters.snapshot,
      sample: try task.sample.map { try encodeBlocks([$0]) }, readRows: io.io.readRows, readBytes: io.io.readBytes,
      writeRows: io.io.writeRows, writeBytes: io.io.writeBytes, readSeconds: seconds(io.io.readTime),
      writeSeconds: seconds(io.io.writeTime), firstReadAfter: io.io.firstRead.map { seconds($0 - started) },
      spills: io.spills, remoteReads: batched.counts)
  }

  /// Streams a stored partition from byte `offset` on.
  func read(_ request: ReadRequest, to writer: StreamWriter) async throws {
    guard let output = output(request.output), request.partition >= 0, request.partition < output.partitions else {
      throw WorkerFailure.missing("no output of \(request.output) partition \(request.partition) here").serviceError
    }
    switch output.storage {
    case .file(let file) where file.place(request.partition).isShared:
      // A partition of a packed section goes as its own rows.
      let frames = try packed.frames(file, of: request.output, partition: request.partition)
      try await send(try encodeBlocks(frames, using: FrameEncoder(options: .fast)), for: request, to: writer)
    case .file(let file):
      let section = file.range(request.partition)
      let fd = open(file.path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        throw WorkerFailure.missing("cannot open \(file.path): errno \(errno)").serviceError
      }
      defer { Glibc.close(fd) }
      try Self.check(request, size: section.count)
      var at = section.lowerBound + request.offset
      if section.isEmpty {
        // Said as a stream of no blocks, so the reader can tell it from a cut one.
        return try await writer.write(try encodeBlocks([]))
      }
      while at < section.upperBound {
        let want = min(WorkerState.readChunk, section.upperBound - at)
        var buffer = ByteBufferAllocator().buffer(capacity: want)
        let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { raw in
          max(0, pread(fd, raw.baseAddress!, want, off_t(at)))
        }
        if n == 0 { break }
        at += n
        try await writer.write(buffer)
      }
      withExtendedLifetime(file) {}
    case .memory:
      try await send(try encodeBlocks(output.frames(request.partition)), for: request, to: writer)
    case .remote:
      throw WorkerFailure.missing("\(request.output) is not stored here").serviceError
    }
  }

  /// Sends whole partitions, one entry each (`ReadManyRequest`), until the budget is spent.
  func readMany(_ request: ReadManyRequest, to writer: StreamWriter) async throws {
    guard request.parts.count <= ReadManyRequest.maxParts, (1...ReadManyRequest.maxBudget).contains(request.budget),
      (1...ReadManyRequest.maxBudget).contains(request.partLimit)
    else {
      throw ServiceError(
        kind: "BadRequest",
        message:
          "a batched read of \(request.parts.count) parts (at most \(ReadManyRequest.maxParts)), budget \(request.budget) (at most \(ReadManyRequest.maxBudget)), part limit \(request.partLimit)"
      )
    }
    // One encoder for the request's parts, with the store's codec: most are a few rows, which
    // runs code well and zstd, with a context made per part, would cost more than they do.
    let encoder = FrameEncoder(options: .fast)
    try await request.reply(chunk: WorkerState.readChunk, { batched($0, limit: request.partLimit, encoder) }) {
      try await writer.write($0)
    }
  }

  /// Partition `part` whole, for a batched read: its blocks, or `large` when they are over
  /// `limit` bytes, or why it is not here.
  private func batched(_ part: PartRef, limit: Int, _ encoder: FrameEncoder) -> BatchedPart {
    guard let output = output(part.output), part.partition >= 0, part.partition < output.partitions else {
      return .missing("no output of \(part.output) partition \(part.partition) here")
    }
    func encoded(_ frames: [Frame]) throws -> BatchedPart {
      guard frames.reduce(0, { $0 + $1.byteCount }) <= limit else { return .large }
      let bytes = try encodeBlocks(frames, using: encoder)
      return bytes.count <= limit ? .bytes(ByteBuffer(bytes: bytes)) : .large
    }
    do {
      switch output.storage {
      case .file(let file) where file.place(part.partition).isShared:
        return try encoded(try packed.frames(file, of: part.output, partition: part.partition))
      case .file(let file):
        let section = file.range(part.partition)
        if section.isEmpty { return .bytes(ByteBuffer(bytes: try encodeBlocks([], using: encoder))) }
        guard section.count <= limit else { return .large }
        return .bytes(try Self.readWhole(file.path, section))
      case .memory:
        return try encoded(output.frames(part.partition))
      case .remote:
        return .missing("\(part.output) is not stored here")
      }
    } catch {
      return .missing("\(part): \(error)")
    }
  }

  /// The bytes `range` of the file at `path`.
  private static func readWhole(_ path: String, _ range: Range<Int>) throws -> ByteBuffer {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SliceIOError.io(path: path, operation: "open", errno: errno) }
    defer { Glibc.close(fd) }
    var bytes = ByteBufferAllocator().buffer(capacity: range.count)
    while bytes.readableBytes < range.count {
      let done = bytes.readableBytes
      var failed: Int32 = 0
      let n = bytes.writeWithUnsafeMutableBytes(minimumWritableBytes: range.count - done) { raw in
        let got = pread(fd, raw.baseAddress!, range.count - done, off_t(range.lowerBound + done))
        if got < 0 { failed = errno }
        return max(got, 0)
      }
      if failed == EINTR { continue }
      // A file shorter than its index says is as bad as one that cannot be read.
      guard n > 0 else { throw SliceIOError.io(path: path, operation: "read", errno: failed == 0 ? EIO : failed) }
    }
    return bytes
  }

  /// Throws a `ServiceError` (kind `BadRequest`) unless the read's offset lies within the
  /// `size` bytes of its partition: a reader resumes at most at the end, never before the start.
  static func check(_ request: ReadRequest, size: Int) throws {
    guard (0...size).contains(request.offset) else {
      throw ServiceError(
        kind: "BadRequest",
        message:
          "read of \(request.output) partition \(request.partition) at offset \(request.offset): the partition has \(size) bytes"
      )
    }
  }

  /// The most bytes a read sends in one message.
  static let readChunk = 1 << 20

  /// Streams `bytes` from `offset` on, a chunk at a time.
  private func send(_ bytes: [UInt8], for request: ReadRequest, to writer: StreamWriter) async throws {
    try Self.check(request, size: bytes.count)
    var at = request.offset
    while at < bytes.count {
      let end = min(at + WorkerState.readChunk, bytes.count)
      try await writer.write(Array(bytes[at..<end]))
      at = end
    }
  }

  /// Keeps `output` as `ref`'s, in place of an earlier attempt's.
  func keep(_ output: TaskOutput, as ref: OutputRef) {
    let replaced = state.withLock { s in
      defer { s.outputs[ref.task] = (ref.attempt, output) }
      return s.outputs[ref.task]
    }
    if let replaced { packed?.drop([OutputRef(task: ref.task, attempt: replaced.attempt)]) }
    _ = replaced  // Its files go outside the lock, when the last reader lets them go.
  }

  /// The output `ref` names, if it is the one kept.
  func output(_ ref: OutputRef) -> TaskOutput? {
    state.withLock { s in s.outputs[ref.task].flatMap { $0.attempt == ref.attempt ? $0.output : nil } }
  }

  /// Drops `outputs`; an output of another attempt of the same task stays.
  func discard(_ outputs: [OutputRef]) {
    // The files go when the last reader lets them go, outside the lock.
    let dropped = state.withLock { s in
      outputs.compactMap { ref -> TaskOutput? in
        guard let kept = s.outputs[ref.task], kept.attempt == ref.attempt else { return nil }
        s.outputs[ref.task] = nil
        return kept.output
      }
    }
    packed?.drop(outputs)
    _ = dropped
  }

  /// Drops every output and compiled invocation and removes the store.
  func close() {
    // The outputs go (their files unlinked) outside the lock, before the directory.
    var dropped = State()
    state.withLock { swap(&$0, &dropped) }
    packed?.drop(dropped.outputs.map { OutputRef(task: $0.key, attempt: $0.value.attempt) })
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
  let task: ShardTask
  let open: PartitionOpener
  init(task: ShardTask, open: @escaping PartitionOpener) {
    self.task = task
    self.open = open
  }
}
