import Bigmachine
import CSupport
import Dispatch
import Frame
import Logging
import SliceIO
import Synchronization

/// Where a session runs its tasks.
public enum Executor: Sendable {
  /// In this process, on `procs` threads.
  case local(procs: Int)
  /// On `count` machines of `system`, each running `procs` tasks at once. Each machine holds
  /// the outputs of the tasks it ran in a store of its own, and the session's `memoryLimit`
  /// applies to each machine. Only funcs run on machines (`run(_:_:)` with a `Func`): each
  /// machine compiles the func's slice from its key and arguments, so every argument must be
  /// `Codable` and every process must register the same funcs before its session starts.
  case machines(system: MachineSystem, count: Int, procs: Int)
}

/// Runs funcs. A session holds the executor; `run` compiles a func's slice into tasks,
/// evaluates them and returns the result.
public final class Session: @unchecked Sendable {
  public let executor: Executor
  /// Whether the status of a running job is shown on stderr (see `init`).
  public let status: Bool
  /// Where the Chrome trace of the session's jobs is written (see `init`); nil for none.
  public let tracePath: String?
  /// Records the trace, when there is a `tracePath`.
  let tracer: Tracer?
  /// Bytes of data the session holds in memory before it spills (see `init`); nil for no limit.
  public let memoryLimit: Int?
  private let local: LocalExecutor
  let remote: MachineExecutor?
  private let invocations = Atomic<Int>(0)
  private let store: OutputStore
  private let running = Mutex(())
  private let history = JobHistory()
  /// Where the session logs, with the metadata `machine` naming the machine (`local`).
  public let logger: Logger
  private let debugServer: DebugServer?

  /// A session on `executor` (default: in this process, on 2 threads). With `status`, the
  /// tasks of a running job per operation (waiting, running, done, lost and failed, with a
  /// progress bar and rows/s) show on stderr: redrawn in place on a terminal, a plain line
  /// every 5 s and at the end otherwise.
  ///
  /// With `memoryLimit`, the job holds about that many bytes of data: half for task outputs
  /// (beyond it they go to compressed spill files under `spillDirectory`, default `$TMPDIR`,
  /// in a private directory removed with the session), half split between the running tasks'
  /// combiners and sorts (which spill beyond their share). Results are kept in memory for
  /// reading and counted against the limit, so the rest spills sooner.
  ///
  /// With `tracePath`, a Chrome trace of every task run (see `Tracer`) is written there at the
  /// end of each job, holding all the session's jobs so far; a trace that cannot be written
  /// is reported on stderr and does not fail the job. `bigslice trace summarize` reads it.
  ///
  /// With `debugAddress` (`HOST:PORT`, or `:PORT` for loopback; port 0 for any free one), the
  /// session serves debug pages over HTTP there until it goes (see `debugURL`):
  /// `/debug/status` (a self-refreshing page of jobs, operations, tasks and machines),
  /// `/debug/tasks` (the same as JSON) and `/debug/trace` (the trace so far). If it cannot
  /// listen there, it logs an error and serves nothing.
  ///
  /// The session logs to `logger` (default: swift-log's `bigslice` logger), with the machine
  /// as the metadata `machine`: jobs starting and ending (debug), task outputs lost and
  /// computed again (notice), and a trace or debug server that failed (error).
  ///
  /// On `.machines`, the session starts its machines at once, in the background; a run waits
  /// until one is running. In a worker process (this binary re-run by the system), the
  /// initializer never returns: the process serves the driver until it is shut down. So every
  /// func must be registered before the session is made.
  public init(
    executor: Executor = .local(procs: 2), memoryLimit: Int? = nil, spillDirectory: String? = nil,
    status: Bool = false, tracePath: String? = nil, debugAddress: String? = nil,
    logger: Logger = Logger(label: "bigslice")
  ) {
    if case .machines(let system, _, let procs) = executor, Bigmachine.isWorker {
      let system = MachineExecutor.bigmachineSystem(system, procs: procs)
      _ = try? blockingAwait { try await Bigmachine.start(system: system, services: [SliceWorker.self]) }
      fatalError("a worker's Bigmachine.start returned")
    }
    Allocator.limitPool(toFit: memoryLimit)
    var logger = logger
    logger[metadataKey: "machine"] = "local"
    self.logger = logger
    self.executor = executor
    self.status = status
    self.tracePath = tracePath
    let tracer = tracePath == nil && debugAddress == nil ? nil : Tracer()
    self.tracer = tracer
    self.memoryLimit = memoryLimit
    let procs: Int
    switch executor {
    case .local(let n): procs = n
    case .machines(_, _, let n): procs = n
    }
    store = OutputStore(memoryLimit: memoryLimit, spillParent: spillDirectory, procs: procs)
    local = LocalExecutor(procs: procs, store: store)
    switch executor {
    case .local: remote = nil
    case .machines(let system, let count, let procs):
      remote = MachineExecutor(
        system: system, count: count, procs: procs, memoryLimit: memoryLimit, storeParent: spillDirectory,
        logger: logger)
    }
    if let debugAddress {
      do {
        let pages = DebugPages(jobs: history, tracer: tracer, machines: remote)
        let server = try DebugServer(address: debugAddress, pages: pages)
        logger.debug("debug pages at http://\(server.host):\(server.port)/debug/status")
        debugServer = server
        remote?.pollStats(every: .seconds(2))
      } catch {
        logger.error("cannot serve debug pages on \(debugAddress): \(error)")
        debugServer = nil
      }
    } else {
      debugServer = nil
    }
  }

  /// The Bigmachine services a session installs on its machines. A program whose own
  /// `Bigmachine.start` comes first (it serves other services too) lists these beside its
  /// own, so that its worker processes can serve a session as well.
  public static var machineServices: [any Service.Type] { [SliceWorker.self] }

  /// The session's machines that have not stopped (none on the local executor).
  public var machines: [Machine] { remote?.machines ?? [] }

  /// Stops the session's machines, removing their stores, and gives the big buffers kept for
  /// reuse back to the system. The session runs nothing after it.
  /// Letting the session go does the same.
  public func shutdown() {
    remote?.shutdown()
    bs_pool_empty(nil)
  }

  /// Bytes of task output written to spill files so far.
  public var spilledBytes: Int { store.spilledBytes.withLock { $0 } }

  /// Times a reduce-side combiner (into hash buckets) or a sort (a sorted run) spilled what it
  /// held, having outgrown its share of the memory limit.
  public var spilledRuns: Int { store.spilledRuns.withLock { $0 } }
  /// Map-side combiners that gave up because their rows barely reduced, so far.
  public var combinerBypasses: Int { store.combinerBypasses.withLock { $0 } }

  /// The session's spill directory, once something spilled; removed with the session.
  public var spillPath: String? { store.spillPath }

  /// The status of the session's latest jobs (up to 16), oldest first; the last is the job
  /// running now, if one is. Each run, and each reload of a discarded result, is a job.
  public var jobs: [JobStatus] { history.all }

  /// The address of the debug status page (`http://HOST:PORT/debug/status`), when the session
  /// serves one.
  public var debugURL: String? { debugServer.map { "http://\($0.host):\($0.port)/debug/status" } }

  deinit {
    debugServer?.stop()
    remote?.shutdown()
    bs_pool_empty(nil)
  }

  /// Runs `f` with `args` and returns its result.
  /// - Throws: `BigsliceError.unregisteredFunc`, `.wrongArguments`, `.unsupportedType`,
  ///   `.invalidArgument` before anything runs; `.taskFailed` naming the operation and shard
  ///   when user code or the data fails.
  public func run<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) throws -> Result<repeat each C> {
    let (slice, tasks) = try compile(f, repeat each args)
    let counters = Counters()
    try evaluate(tasks, name: slice.name, counters: counters)
    return Result(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Runs `slice` and returns its result. Not on machines, which run only funcs.
  public func run<each C>(_ slice: Slice<repeat each C>) throws -> Result<repeat each C> {
    let tasks = try compile(slice)
    let counters = Counters()
    try evaluate(tasks, name: slice.name, counters: counters)
    return Result(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  private func compile<each C>(_ slice: Slice<repeat each C>) throws -> [Task] {
    if let problem = slice.node.problem { throw problem }
    guard remote == nil else {
      throw BigsliceError.invalidArgument(
        "a session on machines runs funcs (run(_:_:) with a registered Func), not slices: its machines build the slices themselves"
      )
    }
    var compiler = Compiler()
    return compiler.compile(slice.node)
  }

  /// The slice of `f` for `args` and its tasks; on machines, the invocation their workers
  /// compile is registered too.
  private func compile<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) throws -> (
    Slice<repeat each C>, [Task]
  ) {
    let values = try f.check(repeat each args)
    let slice = try f.body(values)
    guard let remote else { return (slice, try compile(slice)) }
    if let problem = slice.node.problem { throw problem }
    let index = invocations.add(1, ordering: .relaxed).newValue
    var results: [Int] = []
    let arguments = try values.enumerated().map { i, value in
      guard let result = value as? any ResultArgument else { return try encodeArgument(value, index: i, func: f.key) }
      guard result.belongs(to: self), let made = result.resultTasks.first?.ref.invocation, made > 0 else {
        throw BigsliceError.invalidArgument(
          "argument \(i + 1) of func \(f.key) is a result of another session: a func on machines takes results of its own session's runs"
        )
      }
      results.append(made)
      return try encodeArgument(ResultReference(result: made), index: i, func: f.key)
    }
    var compiler = Compiler(invocation: index)
    let tasks = compiler.compile(slice.node)
    remote.register(
      Invocation(
        index: index, funcKey: f.key, signature: FuncRegistry.signature(f.key) ?? "", arguments: arguments,
        results: results, digest: TaskGraph(roots: tasks, invocation: index).digest,
        caches: compiler.cacheDecisions))
    return (slice, tasks)
  }

  /// Runs `f` with `args` and returns its result, from async code: the job is driven from a
  /// thread of its own, so no thread of Swift's cooperative pool waits for it. Cancelling the
  /// calling task cancels the job: no new task starts, and the call throws `CancellationError`
  /// once the running ones finish.
  /// - Throws: as the synchronous `run`, and `CancellationError`.
  public func run<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) async throws
    -> Result<repeat each C>
  {
    let (slice, tasks) = try compile(f, repeat each args)
    let counters = Counters()
    try await evaluate(tasks, name: slice.name, counters: counters)
    return Result(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Runs `slice` from async code (see `run(_:_:)`).
  public func run<each C>(_ slice: Slice<repeat each C>) async throws -> Result<repeat each C> {
    let tasks = try compile(slice)
    let counters = Counters()
    try await evaluate(tasks, name: slice.name, counters: counters)
    return Result(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Computes whatever `tasks` still need. Runs of one session take turns: a task shared by
  /// two runs (a result passed to both) is computed once.
  func evaluate(_ tasks: [Task], name: String, counters: Counters, cancel: Cancellation? = nil) throws {
    try running.withLock { _ in
      let job = JobStatus(name: name)
      history.add(job)
      let display = status ? StatusDisplay(job: job) : nil
      display?.start()
      let observer = TaskObservers(observers: [job, TaskLog(logger: logger)] + (tracer.map { [$0] } ?? []))
      defer { writeTrace() }
      logger.debug("job \(name) started")
      do {
        if let remote {
          try Bigslice.evaluate(tasks, on: remote, counters: counters, cancel: cancel, observer: observer)
        } else {
          try local.evaluate(tasks, counters: counters, cancel: cancel, observer: observer)
        }
        job.finish()
        display?.finish()
        logger.debug("job \(name) done in \(StatusDisplay.format(seconds: job.elapsed()))")
      } catch {
        job.finish(error: error)
        display?.finish()
        logger.debug("job \(name) failed after \(StatusDisplay.format(seconds: job.elapsed())): \(error)")
        throw error
      }
    }
  }

  private func writeTrace() {
    guard let tracer, let tracePath else { return }
    do {
      try tracer.write(to: tracePath)
    } catch {
      logger.error("\(error)")
    }
  }

  /// `evaluate` on a thread of its own, cancelled with the calling task.
  func evaluate(_ tasks: [Task], name: String, counters: Counters) async throws {
    let cancel = Cancellation()
    let job = UncheckedBox((tasks, counters))
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
        detachThread {
          do {
            try self.evaluate(job.value.0, name: name, counters: job.value.1, cancel: cancel)
            continuation.resume()
          } catch {
            continuation.resume(throwing: error)
          }
        }
      }
    } onCancel: {
      cancel.cancel()
    }
  }
}

/// Logs the task events worth a line: an output lost (it is computed again). A failure is not
/// logged here: it fails the job, and the caller gets it.
struct TaskLog: TaskObserver {
  let logger: Logger

  func record(_ event: TaskEvent) {
    guard event.state == .lost else { return }
    var logger = logger
    logger[metadataKey: "machine"] = "\(event.machine)"
    logger.notice("the output of \(event.task.operation) shard \(event.task.shard) was lost; computing it again")
  }
}

/// A value handed to another thread whose type the compiler cannot prove `Sendable` (tasks,
/// slices); the sender no longer touches it.
struct UncheckedBox<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}

/// The rows of a computed slice, shard by shard, held in memory.
///
/// A result is also a slice (`slice`) that other jobs read without computing it again, and
/// can be passed as an argument to a func. `discard()` releases its rows; reading it after
/// that computes them again.
public struct Result<each C>: Sequence, @unchecked Sendable {
  let tasks: [Task]
  /// The session that ran it; nil on a machine, where a func received it as an argument.
  private let session: Session?
  /// On a machine: notes a func body that reads the rows (see `ResultOnMachine`).
  private let onMachine: ResultOnMachine?
  /// The column types and key prefix.
  public let schema: Schema
  /// The user counters of every task, summed.
  public let metrics: [String: Int]
  /// The computed slice: reading it reads the stored rows, shard for shard.
  public let slice: Slice<repeat each C>

  init(tasks: [Task], slice: Slice<repeat each C>, session: Session, counters: [String: Int]) {
    self.tasks = tasks
    self.session = session
    onMachine = nil
    schema = slice.schema
    metrics = counters
    let node = SliceNode(
      op: "result", location: slice.node.location, schema: slice.schema, shards: tasks.count,
      deps: [Dependency(node: slice.node, shuffle: false, partitioner: .hash)]
    ) { _, deps, _ in deps[0] }
    node.resultTasks = tasks
    self.slice = Slice(node)
  }

  /// The result of invocation `roots[0].ref.invocation` as a machine compiled it, for a func
  /// that takes it as an argument: there it is only a slice over those tasks.
  init(onMachine roots: [Task], use: ResultOnMachine) {
    tasks = roots
    session = nil
    onMachine = use
    let top = Slice<repeat each C>(roots[0].chain[0])
    schema = top.schema
    metrics = [:]
    let node = SliceNode(
      op: "result", location: top.node.location, schema: top.schema, shards: roots.count,
      deps: [Dependency(node: top.node, shuffle: false, partitioner: .hash)]
    ) { _, deps, _ in deps[0] }
    node.resultTasks = roots
    slice = Slice(node)
  }

  var logger: Logger { session?.logger ?? Logger(label: "bigslice") }

  /// The session, or nil after noting that a func body on a machine reads the rows.
  private func driverSession() -> Session? {
    if let session { return session }
    onMachine?.readRows.store(true, ordering: .relaxed)
    return nil
  }

  /// Computes the rows again if they were discarded (or lost).
  /// - Throws: what computing them throws.
  public func reload() throws {
    guard let session = driverSession() else { throw BigsliceError.invalidArgument(ResultOnMachine.message) }
    guard tasks.contains(where: { !$0.isComputed }) else { return }
    try session.evaluate(tasks, name: slice.name, counters: Counters())
  }

  /// Computes the rows again if they were discarded (or lost), from async code.
  /// - Throws: what computing them throws; `CancellationError`.
  public func reload() async throws {
    guard let session = driverSession() else { throw BigsliceError.invalidArgument(ResultOnMachine.message) }
    guard tasks.contains(where: { !$0.isComputed }) else { return }
    try await session.evaluate(tasks, name: slice.name, counters: Counters())
  }

  /// Releases the rows. The result stays usable: reading it or a slice made from it
  /// computes them again.
  public func discard() {
    guard driverSession() != nil else { return }
    for task in tasks { task.output = nil }
  }

  /// The frames of every shard, in shard order, read into memory (from the machines that hold
  /// them, on machines).
  public var frames: [Frame] { (0..<shards).flatMap(frames(shard:)) }

  /// The number of shards.
  public var shards: Int { tasks.count }

  /// The frames of shard `shard`, read into memory.
  public func frames(shard: Int) -> [Frame] {
    guard driverSession() != nil else { return [] }
    let feed = ResultFeed(tasks: [tasks[shard]], result: reload, logger: logger)
    var out: [Frame] = []
    while let frame = feed.nextOrStop() { out.append(frame) }
    return out
  }

  /// The number of rows.
  public var count: Int {
    guard driverSession() != nil else { return 0 }
    if tasks.contains(where: { !$0.isComputed }) {
      do { try reload() } catch { preconditionFailure("cannot compute the result again: \(error)") }
    }
    return tasks.reduce(0) { $0 + ($1.output?.first?.rows ?? 0) }
  }

  /// Iterates the rows, shard by shard, reading each shard's frames as it goes: on machines,
  /// streaming them from the machine that holds them, so the result is never all in memory.
  /// A discarded result, or a shard whose machine is lost while it is read, is computed again
  /// (and the rows already seen are skipped); if that fails the process stops, so call
  /// `reload()` first, or iterate asynchronously, to handle the error.
  public func makeIterator() -> RowIterator<repeat each C> {
    RowIterator(ResultFeed(tasks: driverSession() == nil ? [] : tasks, result: reload, logger: logger))
  }
}

/// A result passed to a func that runs on machines. The driver sends it as a reference to the
/// invocation that made it; each machine compiles that invocation first and hands the func a
/// result over its tasks, whose outputs stay where they are (on the machines that hold them).
protocol ResultArgument {
  /// The tasks that computed it.
  var resultTasks: [Task] { get }
  /// Whether it belongs to `session`.
  func belongs(to session: Session) -> Bool
  /// A result over `roots`, a compiled invocation's tasks.
  /// - Throws: `invalidArgument` when their columns are not this result's.
  static func onMachine(_ roots: [Task], use: ResultOnMachine) throws -> Any
}

extension Result: ResultArgument {
  var resultTasks: [Task] { tasks }
  func belongs(to session: Session) -> Bool { self.session === session }
  static func onMachine(_ roots: [Task], use: ResultOnMachine) throws -> Any {
    let expected = columnTypes(repeat (each C).self).0
    let found = roots[0].chain[0].schema.types
    guard found == expected else {
      throw BigsliceError.invalidArgument(
        "a result argument of columns \(expected) refers to a run whose slice has columns \(found)")
    }
    return Result(onMachine: roots, use: use)
  }
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

/// A result's frames, in shard order, read ahead of the caller: the next `window` shards are
/// each read up to `FrameAhead.depth` frames ahead on a thread of their own. On machines,
/// frames are streamed from their machines, decompressed and decoded on those threads (two
/// shards at once) while the caller iterates. So at most a few frames per open shard wait, and
/// the result is never all in memory.
@usableFromInline
final class ResultFeed {
  private let tasks: [Task]
  private let recompute: () throws -> Void
  private let logger: Logger
  /// The shards being read, in order, and the next shard to open.
  private var open: [OpenShard] = []
  private var nextShard = 0
  /// The frames handed out by the last two calls, with the shard that read them.
  private var previous: (Frame, OpenShard)?
  private var current: (Frame, OpenShard)?
  /// Shared by the open shards' readers (see `ShardFrames.outputs`).
  private let outputs = DispatchSemaphore(value: 1)
  static let window = 2

  /// A shard's frames and the thread reading them ahead, until it hands over the end or an
  /// error and stops; after that the feed reads the shard on its own thread.
  private final class OpenShard {
    let frames: ShardFrames
    let ahead: FrameAhead
    var finished = false
    init(_ frames: ShardFrames) {
      self.frames = frames
      ahead = FrameAhead(frames)
    }
    deinit { ahead.close() }

    func next() throws -> Frame? {
      if finished { return try frames.next() }
      let result = ahead.take()
      if case .success(.some) = result {} else { finished = true }
      return try result.get()
    }
  }

  init(tasks: [Task], result recompute: @escaping () throws -> Void, logger: Logger) {
    self.tasks = tasks
    self.recompute = recompute
    self.logger = logger
  }

  /// The next frame (never empty), or nil at the end.
  /// - Throws: what computing a shard again throws, or a read error that persists.
  @usableFromInline
  func next() throws -> Frame? {
    // The caller has let go of the frame before the one it holds: its reader frees it.
    if let (frame, shard) = previous { shard.ahead.release(frame) }
    previous = current
    current = nil
    while true {
      while open.count < ResultFeed.window && nextShard < tasks.count {
        open.append(
          OpenShard(ShardFrames(task: tasks[nextShard], result: recompute, logger: logger, outputs: outputs)))
        nextShard += 1
      }
      guard let shard = open.first else { return nil }
      if let frame = try shard.next() {
        if !shard.finished { current = (frame, shard) }
        return frame
      }
      open.removeFirst()
    }
  }

  /// `next`, stopping the process on an error (for the synchronous iterator).
  @usableFromInline
  func nextOrStop() -> Frame? {
    do { return try next() } catch { preconditionFailure("cannot read the result: \(error)") }
  }
}

/// The thread that reads a shard's frames ahead for a `ResultFeed`. It stops after handing
/// over the end or an error (so the feed may then read on its own thread), or when the feed
/// closes it.
private final class FrameAhead: @unchecked Sendable {
  private struct State {
    /// Frames read and not yet taken, oldest first (the end or an error comes last).
    var frames: [Swift.Result<Frame?, Error>] = []
    var closed = false
    /// Frames the caller is done with, freed by this thread before it reads the next.
    var spent: [Frame] = []
  }
  private let state = Mutex(State())
  private let ready = DispatchSemaphore(value: 0)
  /// Room for frames read ahead beyond the one being read.
  private let room = DispatchSemaphore(value: FrameAhead.depth - 1)
  /// Frames a shard's thread reads ahead of the caller: enough that the next shard's thread
  /// keeps decoding while the caller reads the current shard.
  static let depth = 4

  init(_ frames: ShardFrames) {
    detachThread { [self] in
      while true {
        let result = Swift.Result { try frames.next() }
        state.withLock { $0.frames.append(result) }
        ready.signal()
        guard case .success(.some) = result else { return }
        room.wait()
        let (closed, spent) = state.withLock { s in
          defer { s.spent = [] }
          return (s.closed, s.spent)
        }
        withExtendedLifetime(spent) {}
        if closed { return }
      }
    }
  }

  /// Hands back a frame the caller is done with: the thread that decoded it frees it (its
  /// lists were allocated there), not the caller's thread, which would contend for the
  /// allocator's lock of another thread's arena for every list.
  func release(_ frame: Frame) { state.withLock { $0.spent.append(frame) } }

  /// The frame read ahead, once it is there; the thread starts on the next.
  func take() -> Swift.Result<Frame?, Error> {
    ready.wait()
    let result = state.withLock { $0.frames.removeFirst() }
    if case .success(.some) = result { room.signal() }
    return result
  }

  /// Stops the thread once its current read is done.
  func close() {
    state.withLock { $0.closed = true }
    room.signal()
  }
}

/// Reads the frames of one shard of a result, computing it again when its output was
/// discarded or is lost while it is read (tasks are deterministic: the rows already read are
/// skipped).
final class ShardFrames: @unchecked Sendable {
  private let task: Task
  private let recompute: () throws -> Void
  private let logger: Logger
  /// Held while a feed's thread reads or clears a task's output and computes it again: the
  /// threads of one feed (one per open shard) then never touch outputs at the same time as
  /// each other, or as the evaluation that one of them started.
  private let outputs: DispatchSemaphore
  private var reader: (any Reader)?
  private var done = false
  /// Rows handed out, and rows to skip after reopening the shard.
  private var delivered = 0
  private var skip = 0
  private var failures = 0
  /// Times the shard may fail to read before the error is thrown.
  static let attempts = 5

  init(task: Task, result recompute: @escaping () throws -> Void, logger: Logger, outputs: DispatchSemaphore) {
    self.task = task
    self.recompute = recompute
    self.logger = logger
    self.outputs = outputs
  }

  private func guarded<T>(_ body: () throws -> T) rethrows -> T {
    outputs.wait()
    defer { outputs.signal() }
    return try body()
  }

  /// The next frame (never empty), or nil at the end.
  /// - Throws: what computing the shard again throws, or a read error that persists.
  func next() throws -> Frame? {
    while !done {
      do {
        if reader == nil {
          let output = try guarded {
            if !task.isComputed { try recompute() }
            guard let output = task.output else {
              throw BigsliceError.outputMissing(op: task.op, shard: task.shard)
            }
            return output
          }
          reader = try output[0].reader()
          skip = delivered
        }
        guard var frame = try reader!.read() else {
          done = true
          reader = nil
          return nil
        }
        if skip > 0 {
          if frame.count <= skip {
            skip -= frame.count
            continue
          }
          frame = frame.slice(skip..<frame.count)
          skip = 0
        }
        guard frame.count > 0 else { continue }
        delivered += frame.count
        return frame
      } catch let error as BigsliceError {
        // A failure to compute is final.
        throw error
      } catch {
        failures += 1
        reader = nil
        if failures >= ShardFrames.attempts { throw error }
        // The stored shard is damaged or its machine is gone: compute it again.
        logger.notice(
          "cannot read shard \(task.shard) of the result (\(error)); computing it again and skipping the \(delivered) rows read"
        )
        guarded { task.output = nil }
      }
    }
    return nil
  }
}

/// Iterates the rows of a result as typed tuples.
///
/// `next` is inlinable, so the caller's compiler specialises it for the concrete column
/// types: the per-row path then reads each column directly, with no generic metadata lookup.
public struct RowIterator<each C>: IteratorProtocol {
  @usableFromInline let feed: ResultFeed
  /// The frame being read: the getters point into it.
  @usableFromInline var frame: Frame?
  @usableFromInline var row = 0
  @usableFromInline var rows = 0
  @usableFromInline var current: Getters<repeat each C>?

  init(_ feed: ResultFeed) { self.feed = feed }

  @inlinable
  public mutating func next() -> (repeat each C)? {
    if current == nil {
      guard let next = feed.nextOrStop() else { return nil }
      frame = next
      current = Getters<repeat each C>(next)
      rows = next.count
    }
    let g = current.unsafelyUnwrapped.getters
    let value = (repeat (each g).get(row))
    row &+= 1
    if row == rows {
      row = 0
      current = nil
      frame = nil
    }
    return value
  }
}

/// The typed getters of one frame, boxed so an iterator can hold them optionally.
@usableFromInline
final class Getters<each C> {
  @usableFromInline let getters: (repeat ColumnGetter<each C>)
  @usableFromInline init(_ frame: Frame) { getters = Bigslice.getters(frame, repeat (each C).self) }
}

extension Result: AsyncSequence {
  /// Iterates the rows from async code with `makeAsyncIterator()` and `await next()`
  /// (`for await` over a pack-typed element does not compile on Swift 6.3). Errors in
  /// computing a discarded or lost shard again are thrown.
  public struct AsyncIterator: AsyncIteratorProtocol {
    var result: Result<repeat each C>
    var feed: ResultFeed?
    var frame: Frame?
    var getters: Getters<repeat each C>?
    var row = 0

    /// The next row; the first call computes a discarded result again.
    /// - Throws: what computing it throws.
    public mutating func next() async throws -> (repeat each C)? {
      if feed == nil {
        try await result.reload()
        feed = ResultFeed(tasks: result.tasks, result: result.reload, logger: result.logger)
      }
      if frame == nil || row == frame!.count {
        let feed = UncheckedBox(self.feed!)
        frame = try await withCheckedThrowingContinuation { continuation in
          detachThread {
            do {
              continuation.resume(returning: UncheckedBox(try feed.value.next()))
            } catch {
              continuation.resume(throwing: error)
            }
          }
        }.value
        row = 0
        guard let frame else { return nil }
        getters = Getters<repeat each C>(frame)
      }
      let g = getters!.getters
      let value = (repeat (each g).get(row))
      row += 1
      return value
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(result: self) }
}
