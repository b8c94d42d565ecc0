import Frame
import Logging
import SliceIO
import Synchronization

/// Where a session runs its tasks.
public enum Executor: Sendable {
  /// In this process, on `procs` threads.
  case local(procs: Int)
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
  public init(
    executor: Executor = .local(procs: 2), memoryLimit: Int? = nil, spillDirectory: String? = nil,
    status: Bool = false, tracePath: String? = nil, debugAddress: String? = nil,
    logger: Logger = Logger(label: "bigslice")
  ) {
    var logger = logger
    logger[metadataKey: "machine"] = "local"
    self.logger = logger
    self.executor = executor
    self.status = status
    self.tracePath = tracePath
    let tracer = tracePath == nil && debugAddress == nil ? nil : Tracer()
    self.tracer = tracer
    if let debugAddress {
      do {
        let server = try DebugServer(address: debugAddress, pages: DebugPages(jobs: history, tracer: tracer))
        logger.debug("debug pages at http://\(server.host):\(server.port)/debug/status")
        debugServer = server
      } catch {
        logger.error("cannot serve debug pages on \(debugAddress): \(error)")
        debugServer = nil
      }
    } else {
      debugServer = nil
    }
    self.memoryLimit = memoryLimit
    let procs: Int
    switch executor {
    case .local(let n): procs = n
    }
    store = OutputStore(memoryLimit: memoryLimit, spillParent: spillDirectory, procs: procs)
    switch executor {
    case .local(let procs): local = LocalExecutor(procs: procs, store: store)
    }
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

  deinit { debugServer?.stop() }

  /// Runs `f` with `args` and returns its result.
  /// - Throws: `BigsliceError.unregisteredFunc`, `.wrongArguments`, `.unsupportedType`,
  ///   `.invalidArgument` before anything runs; `.taskFailed` naming the operation and shard
  ///   when user code or the data fails.
  public func run<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) throws -> Result<repeat each C> {
    try run(try f.invoke(repeat each args))
  }

  /// Runs `slice` and returns its result.
  public func run<each C>(_ slice: Slice<repeat each C>) throws -> Result<repeat each C> {
    if let problem = slice.node.problem { throw problem }
    var compiler = Compiler()
    let tasks = compiler.compile(slice.node)
    let counters = Counters()
    try evaluate(tasks, name: slice.name, counters: counters)
    return Result(tasks: tasks, slice: slice, session: self, counters: counters.snapshot)
  }

  /// Runs `f` with `args` and returns its result, from async code: the job is driven from a
  /// thread of its own, so no thread of Swift's cooperative pool waits for it. Cancelling the
  /// calling task cancels the job: no new task starts, and the call throws `CancellationError`
  /// once the running ones finish.
  /// - Throws: as the synchronous `run`, and `CancellationError`.
  public func run<each A, each C>(_ f: Func<repeat each C>, _ args: repeat each A) async throws
    -> Result<repeat each C>
  {
    try await run(try f.invoke(repeat each args))
  }

  /// Runs `slice` from async code (see `run(_:_:)`).
  public func run<each C>(_ slice: Slice<repeat each C>) async throws -> Result<repeat each C> {
    if let problem = slice.node.problem { throw problem }
    var compiler = Compiler()
    let tasks = compiler.compile(slice.node)
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
        try local.evaluate(tasks, counters: counters, cancel: cancel, observer: observer)
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
  private let session: Session
  /// The column types and key prefix.
  public let schema: Schema
  /// The user counters of every task, summed.
  public let metrics: [String: Int]
  /// The computed slice: reading it reads the stored rows, shard for shard.
  public let slice: Slice<repeat each C>

  init(tasks: [Task], slice: Slice<repeat each C>, session: Session, counters: [String: Int]) {
    self.tasks = tasks
    self.session = session
    schema = slice.schema
    metrics = counters
    let node = SliceNode(
      op: "result", location: slice.node.location, schema: slice.schema, shards: tasks.count,
      deps: [Dependency(node: slice.node, shuffle: false, partitioner: .hash)]
    ) { _, deps, _ in deps[0] }
    node.resultTasks = tasks
    self.slice = Slice(node)
  }

  /// Computes the rows again if they were discarded (or lost).
  /// - Throws: what computing them throws.
  public func reload() throws {
    guard tasks.contains(where: { $0.output == nil }) else { return }
    try session.evaluate(tasks, name: slice.name, counters: Counters())
  }

  /// Computes the rows again if they were discarded (or lost), from async code.
  /// - Throws: what computing them throws; `CancellationError`.
  public func reload() async throws {
    guard tasks.contains(where: { $0.output == nil }) else { return }
    try await session.evaluate(tasks, name: slice.name, counters: Counters())
  }

  /// Releases the rows. The result stays usable: reading it or a slice made from it
  /// computes them again.
  public func discard() {
    for task in tasks { task.output = nil }
  }

  /// The stored frames of `task`, computed again first if they were discarded.
  private func stored(_ task: Task) -> [Frame] {
    if task.output == nil {
      do { try reload() } catch { preconditionFailure("cannot compute the discarded result again: \(error)") }
    }
    return task.output?.first?.frames ?? []
  }

  /// The frames of every shard, in shard order.
  public var frames: [Frame] { tasks.flatMap(stored) }

  /// The number of shards.
  public var shards: Int { tasks.count }

  /// The frames of shard `shard`.
  public func frames(shard: Int) -> [Frame] { stored(tasks[shard]) }

  /// The number of rows.
  public var count: Int { frames.reduce(0) { $0 + $1.count } }

  /// Iterates the rows. A discarded result is computed again first; if that fails the
  /// process stops, so call `reload()` first to handle the error.
  public func makeIterator() -> RowIterator<repeat each C> { RowIterator(frames) }
}

/// Iterates the rows of a result as typed tuples.
///
/// `next` is inlinable, so the caller's compiler specialises it for the concrete column
/// types: the per-row path then reads each column directly, with no generic metadata lookup.
public struct RowIterator<each C>: IteratorProtocol {
  @usableFromInline let frames: [Frame]
  @usableFromInline var frameIndex = 0
  @usableFromInline var row = 0
  @usableFromInline var rows = 0
  @usableFromInline var current: Getters<repeat each C>?

  init(_ frames: [Frame]) { self.frames = frames.filter { $0.count > 0 } }

  @inlinable
  public mutating func next() -> (repeat each C)? {
    if current == nil {
      guard frameIndex < frames.count else { return nil }
      current = Getters<repeat each C>(frames[frameIndex])
      rows = frames[frameIndex].count
    }
    let g = current.unsafelyUnwrapped.getters
    let value = (repeat (each g).get(row))
    row &+= 1
    if row == rows {
      row = 0
      frameIndex += 1
      current = nil
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
  /// (`for await` over a pack-typed element does not compile on Swift 6.3).
  public struct AsyncIterator: AsyncIteratorProtocol {
    var result: Result<repeat each C>
    var rows: RowIterator<repeat each C>?

    /// The next row; the first call computes a discarded result again.
    /// - Throws: what computing it throws.
    public mutating func next() async throws -> (repeat each C)? {
      if rows == nil {
        try await result.reload()
        rows = result.makeIterator()
      }
      return rows!.next()
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(result: self, rows: nil) }
}
