import Bigmachine
import Frame
import Logging
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
  /// Times a task failing with a temporary error runs again (see `init`).
  public let retries: Int
  private let local: LocalExecutor
  let remote: MachineExecutor?
  private let invocations = Atomic<Int>(0)
  private let store: OutputStore
  /// The tasks each running evaluation computes (runs evaluate at the same time).
  private let claims = TaskClaims()
  /// One trace written at a time.
  private let tracing = Mutex(())
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
  /// combiners and sorts (which spill beyond their share). A result's shards count against
  /// the limit like any output, and spill like any output beyond it. The process's peak
  /// resident set then stays under `memoryLimit + Session.memoryOverhead(procs:)`, on the
  /// driver and on every machine, with one exception: a cogroup holds each group whole, so one
  /// key with more rows than a task's share is held in memory however large
  /// (`groupsHeldOverLimit` counts those). Values of boxed types (neither scalars, strings,
  /// records nor lists of scalars) count at their inline size only.
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
  /// A task that fails with a temporary error (`TemporaryError`, or an I/O error such as
  /// `ECONNRESET` from the library's own readers) runs again after a backoff of 100 ms,
  /// doubling up to 5 s, at most `retries` times (default 3); the job fails with every
  /// attempt's error once they are spent. Other errors fail the job at once.
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
    status: Bool = false, tracePath: String? = nil, debugAddress: String? = nil, retries: Int = 3,
    logger: Logger = Logger(label: "bigslice")
  ) {
    if case .machines(let system, _, let procs) = executor, Bigmachine.isWorker {
      let system = MachineExecutor.bigmachineSystem(system, procs: procs)
      _ = try? ThreadPool.shared.blockingAwait {
        try await Bigmachine.start(system: system, services: [SliceWorker.self])
      }
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
    self.retries = max(retries, 0)
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
        logger: logger, spilled: { [store] in store.spilled($0) })
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

  /// Each of `machines`' largest resident set so far (`VmHWM`), asked of it now: what to check
  /// against `memoryLimit + Session.memoryOverhead(procs:)`. nil for a machine that did not
  /// answer; empty in one process.
  public func machinePeakResidentBytes() -> [Int?] {
    machines.map { machine in
      try? ThreadPool.shared.blockingAwait { try await machine.memoryInfo().processPeakResidentBytes }
    }
  }

  /// Stops the session's machines, removing their stores, and gives the big buffers kept for
  /// reuse back to the system. The session runs nothing after it.
  /// Letting the session go does the same.
  public func shutdown() {
    remote?.shutdown()
    Memory.emptyPool()
  }

  /// What a process holds beyond its session's memory limit at most: the binary and the Swift
  /// runtime (the `bigslice` binary starts at 23–25 MB of RSS), and for each of `procs` task
  /// threads its stack, its smallest buffers (a frame in flight, a combiner's first table, a
  /// spill writer's buffers, compression contexts) and the freed memory the C library keeps
  /// until the task ends: 24 MiB, plus 26 MiB a thread.
  public static func memoryOverhead(procs: Int) -> Int { (24 << 20) + (26 << 20) * max(procs, 1) }

  /// Bytes written to spill files so far (task outputs, runs and sort runs), by this process
  /// and, on machines, by the machines' tasks (reported with each task's result).
  public var spilledBytes: Int { store.spills.withLock { $0.bytes } }

  /// Times a reduce-side combiner (into hash buckets) or a sort (a sorted run) spilled what it
  /// held, having outgrown its share of the memory limit: in this process and on machines.
  public var spilledRuns: Int { store.spills.withLock { $0.runs } }
  /// Map-side combiners that gave up because their rows barely reduced, so far, in this
  /// process and on machines.
  public var combinerBypasses: Int { store.spills.withLock { $0.bypasses } }
  /// Times a cogroup held one key's rows in memory beyond its task's share of the memory
  /// limit, in this process and on machines: a cogroup row holds every value of its key, so
  /// such a group cannot be split or spilled. It is the one way a job goes past the limit.
  public var groupsHeldOverLimit: Int { store.spills.withLock { $0.heldOverLimit } }

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
    Memory.emptyPool()
  }

  /// Runs `f` with `args` and returns its result.
  /// - Throws: `BigsliceError.unregisteredFunc`, `.wrongArguments`, `.unsupportedType`,
  ///   `.invalidArgument` before anything runs; `.taskFailed` naming the operation and shard
  ///   when user code or the data fails.
  public func run<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) throws -> SliceResult<repeat each C>
  {
    let (slice, tasks) = try compile(f, repeat each args)
    let counters = Counters()
    try evaluate(tasks, name: slice.name, counters: counters)
    return SliceResult(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Runs `slice` and returns its result. Not on machines, which run only funcs.
  public func run<each C>(_ slice: Slice<repeat each C>) throws -> SliceResult<repeat each C> {
    let tasks = try compile(slice)
    let counters = Counters()
    try evaluate(tasks, name: slice.name, counters: counters)
    return SliceResult(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  private func compile<each C>(_ slice: Slice<repeat each C>) throws -> [ShardTask] {
    if let problem = slice.node.problem { throw problem }
    guard remote == nil else {
      throw BigsliceError.invalidArgument(
        "a session on machines runs funcs (run(_:_:) with a registered Func), not slices: its machines build the slices themselves"
      )
    }
    var compiler = Compiler()
    let tasks = compiler.compile(slice.node)
    if let problem = compiler.inputProblem { throw problem }
    return tasks
  }

  /// The slice of `f` for `args` and its tasks; on machines, the invocation their workers
  /// compile is registered too.
  private func compile<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) throws -> (
    Slice<repeat each C>, [ShardTask]
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
    if let problem = compiler.inputProblem { throw problem }
    remote.register(
      Invocation(
        index: index, funcKey: f.key, signature: FuncRegistry.signature(f.key) ?? "", arguments: arguments,
        results: results, digest: TaskGraph(roots: tasks, invocation: index).digest,
        stored: compiler.storedDecisions, inputs: compiler.expansions))
    return (slice, tasks)
  }

  /// Runs `f` with `args` and returns its result, from async code: the job is driven from a
  /// thread of its own, so no thread of Swift's cooperative pool waits for it. Cancelling the
  /// calling task cancels the job: no new task starts, and the call throws `CancellationError`
  /// once the running ones finish.
  /// - Throws: as the synchronous `run`, and `CancellationError`.
  public func run<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) async throws
    -> SliceResult<repeat each C>
  {
    let (slice, tasks) = try compile(f, repeat each args)
    let counters = Counters()
    try await evaluate(tasks, name: slice.name, counters: counters)
    return SliceResult(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Runs `slice` from async code (see `run(_:_:)`).
  public func run<each C>(_ slice: Slice<repeat each C>) async throws -> SliceResult<repeat each C> {
    let tasks = try compile(slice)
    let counters = Counters()
    try await evaluate(tasks, name: slice.name, counters: counters)
    return SliceResult(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Computes whatever `tasks` still need. Runs of one session evaluate at the same time,
  /// sharing the executor's procs; a task two runs need (a result passed to both) is computed
  /// by one of them while the other waits for it (`TaskClaims`).
  func evaluate(_ tasks: [ShardTask], name: String, counters: Counters, cancel: Cancellation? = nil) throws {
    let job = JobStatus(name: name)
    history.add(job)
    let display = status ? StatusDisplay(job: job) : nil
    display?.start()
    let observer = TaskObservers(observers: [job, TaskLog(logger: logger)] + (tracer.map { [$0] } ?? []))
    defer { writeTrace() }
    logger.debug("job \(name) started")
    do {
      if let remote {
        try Bigslice.evaluate(
          tasks, on: remote, counters: counters, cancel: cancel, observer: observer, retries: retries, claims: claims)
      } else {
        try local.evaluate(
          tasks, counters: counters, cancel: cancel, observer: observer, retries: retries, claims: claims)
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

  private func writeTrace() {
    guard let tracer, let tracePath else { return }
    tracing.withLock { _ in writeTrace(tracer, to: tracePath) }
  }

  private func writeTrace(_ tracer: Tracer, to tracePath: String) {
    do {
      try tracer.write(to: tracePath)
    } catch {
      logger.error("\(error)")
    }
  }

  /// `evaluate` on a thread of its own, cancelled with the calling task.
  func evaluate(_ tasks: [ShardTask], name: String, counters: Counters) async throws {
    let cancel = Cancellation()
    let job = Handoff((tasks, counters))
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
        ThreadPool.detach {
          // The tasks are let go before the caller resumes: one that drops its result at once
          // finds nothing on this thread still holding the result's files.
          let outcome = Result { () throws -> Void in
            let (tasks, counters) = job.take()
            try self.evaluate(tasks, name: name, counters: counters, cancel: cancel)
          }
          continuation.resume(with: outcome)
        }
      }
    } onCancel: {
      cancel.cancel()
    }
  }
}
