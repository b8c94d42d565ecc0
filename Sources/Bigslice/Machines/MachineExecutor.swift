import Bigmachine
import Logging
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

/// Runs tasks on machines that Bigmachine starts, each with the `SliceWorker` service:
///
/// - Placement: a machine offers `procs` slots; a task takes as many as its pragma asks (an
///   exclusive one takes all) on the running machine with the most free slots. A machine
///   that failed a call for another reason than its death is on probation for a while: it
///   gets tasks only when no other machine can take them.
/// - A task's output stays in the store of the machine that computed it; the tasks reading it
///   are told where it is and open it there (local) or stream it from that machine (remote).
/// - A machine that stops loses every output it held: the evaluation finds them unavailable
///   and computes them again on the machines left, and a replacement is started for a machine
///   that died after it ran.
final class MachineExecutor: ExecutorBackend, @unchecked Sendable {
  let procs: Int
  private let count: Int
  private let service: SliceWorker
  private let logger: Logger
  /// Machines started in all, replacements included, at most.
  private let maxMachines: Int
  /// How long a machine that failed a call gets tasks only as a last resort.
  static let probation: Duration = .seconds(30)
  /// How long an evaluation waits for a machine to start running.
  static let startTimeout: Duration = .seconds(120)

  private struct State {
    var bigmachine: Bigmachine?
    var startError: Error?
    var workers: [WorkerHandle] = []
    var started = 0
    /// Machines asked for and not yet handed out (or failed).
    var starting = 0
    var invocations: [Int: Invocation] = [:]
    var shutDown = false
  }
  private let state = Mutex(State())
  private let ready = Mutex(false)
  /// The latest memory, disk and load of each running machine (see `pollStats`).
  private let latestStats = Mutex<[String: DebugTasks.Machine]>([:])
  /// Runs made so far: each run's output is named by its attempt number.
  private let attempts = Atomic<Int>(0)

  /// Counts what the machines' tasks spilled, into the session's figures.
  let spilled: @Sendable (SpillCounts) -> Void

  init(
    system: MachineSystem, count: Int, procs: Int, memoryLimit: Int?, storeParent: String?, logger: Logger,
    spilled: @escaping @Sendable (SpillCounts) -> Void = { _ in }
  ) {
    self.spilled = spilled
    self.count = max(1, count)
    self.procs = max(1, procs)
    self.logger = logger
    maxMachines = max(1, count) * 4 + 4
    service = SliceWorker(
      funcs: FuncRegistry.fingerprint, memoryLimit: memoryLimit, procs: self.procs, storeParent: storeParent)
    let system = MachineExecutor.bigmachineSystem(system, procs: self.procs)
    let machines = self.count
    Task(executorPreference: ThreadPool.shared) { [self] in
      do {
        let b = try await Bigmachine.start(system: system, services: [SliceWorker.self])
        state.withLock {
          $0.bigmachine = b
          $0.started += machines
          $0.starting += machines
        }
        try await startMachines(machines)
      } catch {
        state.withLock { $0.startError = error }
      }
      ready.withLock { $0 = true }
    }
  }

  static func bigmachineSystem(_ system: MachineSystem, procs: Int) -> any System {
    switch system {
    case .local: return LocalSystem(maxprocs: procs)
    case .inProcess: return InProcessSystem(maxprocs: procs)
    case .system(let s): return s
    }
  }

  /// Starts `n` machines; the caller counted them in `started` and `starting`.
  private func startMachines(_ n: Int) async throws {
    guard let b = state.withLock({ $0.bigmachine }) else {
      state.withLock { $0.starting -= n }
      return
    }
    do {
      let machines = try await b.start(count: n, services: [service])
      let handles = machines.map { WorkerHandle(machine: $0) }
      state.withLock {
        $0.workers += handles
        $0.starting -= n
      }
    } catch {
      state.withLock { $0.starting -= n }
      throw error
    }
  }

  /// The machines of the session that have not stopped.
  var machines: [Machine] { state.withLock { $0.workers.map(\.machine) }.filter { $0.state != .stopped } }
  /// The running machines' memory, disk and load, as last polled, by address.
  var stats: [DebugTasks.Machine] { latestStats.withLock { $0.values.sorted { $0.name < $1.name } } }

  /// Asks every running machine for its memory, disk and load every `interval` until the
  /// session shuts down (for the debug pages, which answer from the latest figures and never
  /// wait for a machine).
  func pollStats(every interval: Duration) {
    Task(executorPreference: ThreadPool.shared) { [weak self] in
      while let handles = self?.state.withLock({ $0.shutDown ? nil : $0.workers }) {
        var fresh: [String: DebugTasks.Machine] = [:]
        for handle in handles where handle.machine.state == .running {
          let m = handle.machine
          guard let memory = try? await m.memoryInfo(), let disk = try? await m.diskInfo(),
            let load = try? await m.loadInfo()
          else { continue }
          fresh[handle.address] = DebugTasks.Machine(name: handle.address, memory: memory, disk: disk, load: load)
        }
        self?.latestStats.withLock { $0 = fresh }
        try? await Task.sleep(for: interval)
      }
    }
  }

  /// Every machine started, as the executor sees it.
  var handles: [WorkerHandle] { state.withLock { $0.workers } }

  /// Makes `invocation` known, for the machines that run its tasks.
  func register(_ invocation: Invocation) { state.withLock { $0.invocations[invocation.index] = invocation } }

  // MARK: Placement

  func start(
    _ task: ShardTask, idle: Bool, counters: Counters, observer: (any TaskObserver)?, cancel: Cancellation?,
    finish: @escaping @Sendable (consuming TaskOutcome) -> Void
  ) throws -> Bool {
    let need = min(task.procs(of: procs), procs)
    let deadline = ContinuousClock.now + MachineExecutor.startTimeout
    while true {
      if let worker = try place(need) {
        let job = Handoff((task, counters))
        Task(executorPreference: ThreadPool.shared) {
          // As on the local executor: nothing here holds the task once `finish` has it.
          let outcome = await self.run(job.take(), on: worker, observer: observer, cancel: cancel)
          worker.release(need)
          finish(consume outcome)
        }
        return true
      }
      guard idle else { return false }
      // Nothing runs, so nothing frees a slot: wait for a machine to start.
      guard ContinuousClock.now < deadline else {
        throw BigsliceError.machinesUnavailable("no machine was running after \(MachineExecutor.startTimeout)")
      }
      nanosleep(milliseconds: 20)
    }
  }

  /// Reserves `need` slots on the best machine, or returns nil when none has room now.
  /// - Throws: `machinesUnavailable` when no machine is left and none can be started.
  private func place(_ need: Int) throws -> WorkerHandle? {
    guard ready.withLock({ $0 }) else { return nil }
    let (workers, startError) = state.withLock { ($0.workers, $0.startError) }
    if let startError { throw BigsliceError.machinesUnavailable("the machines could not be started: \(startError)") }
    var live: [WorkerHandle] = []
    for worker in workers {
      if worker.machine.state == .stopped {
        retire(worker)
      } else {
        live.append(worker)
      }
    }
    if live.isEmpty {
      let (started, starting) = state.withLock { ($0.started, $0.starting) }
      if starting == 0 {
        let errors = workers.compactMap { $0.machine.error.map { "\($0)" } }
        throw BigsliceError.machinesUnavailable(
          "every machine stopped (\(started) started): " + Set(errors).sorted().joined(separator: "; "))
      }
      return nil
    }
    let now = ContinuousClock.now
    let running = live.filter { $0.machine.state == .running }
    let fresh = running.filter { !$0.onProbation(now) }
    for pool in [fresh, running] {
      let candidates = pool.map { ($0, $0.free(procs)) }.filter { $0.1 >= need }
      if let best = candidates.max(by: { $0.1 < $1.1 }), best.0.reserve(need, of: procs) { return best.0 }
    }
    return nil
  }

  /// Forgets a stopped machine, and starts a replacement for one that had been running.
  private func retire(_ worker: WorkerHandle) {
    let replace = state.withLock { s -> Bool in
      guard let i = s.workers.firstIndex(where: { $0 === worker }) else { return false }
      s.workers.remove(at: i)
      guard worker.everRan && s.started < maxMachines else { return false }
      s.started += 1
      s.starting += 1
      return true
    }
    let why = worker.machine.error.map { "\($0)" } ?? ""
    logger.notice("machine \(worker.machine.address) stopped: \(why)\(replace ? "; starting a replacement" : "")")
    if replace {
      Task(executorPreference: ThreadPool.shared) { try? await self.startMachines(1) }
    }
  }

  // MARK: Running a task

  private func run(
    _ job: (task: ShardTask, counters: Counters), on worker: WorkerHandle, observer: (any TaskObserver)?,
    cancel: Cancellation?
  ) async -> TaskOutcome {
    let (task, counters) = job
    let machine = worker.machine.address
    observer?.record(task, .running, machine: machine)
    do {
      try await compile(task.ref.invocation, on: worker)
      // Where each upstream output is (what the machine does not know yet), and which of the
      // partitions read hold no rows.
      let known = worker.known
      var inputs: [InputLocation] = []
      var sent = Set<TaskRef>()
      var empty: [UInt8] = []
      var bit = 0
      for dep in task.deps {
        let p = dep.shuffle ? task.shard : 0
        for upstream in dep.tasks {
          guard case .remote(let remote)? = upstream.output?.storage else {
            return .lost(
              LostInput(
                task: task, upstream: [upstream],
                cause: BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)))
          }
          let location = InputLocation(task: upstream.ref, attempt: remote.ref.attempt, machine: remote.worker.address)
          if known.locations[upstream.ref] != location, sent.insert(upstream.ref).inserted { inputs.append(location) }
          if bit % 8 == 0 { empty.append(0) }
          if p < remote.holding.count, !remote.holding[p] { empty[bit / 8] |= 1 << (bit % 8) }
          bit += 1
        }
      }
      var samples: [OutputSample] = []
      if case .split(let split) = task.partitioner {
        for upstream in split.upstream where !known.samples.contains(upstream.ref) {
          if let sample = upstream.sample {
            samples.append(OutputSample(task: upstream.ref, blocks: try encodeBlocks([sample])))
          }
        }
      }
      let called = ContinuousClock.now
      let attempt = attempts.add(1, ordering: .relaxed).newValue
      // A cancelled run stops the task on its machine between frames.
      let stop = cancel?.add {
        Task(executorPreference: ThreadPool.shared) {
          _ = try? await worker.machine.call("Bigslice.cancel", [attempt], returning: Bool.self)
        }
      }
      defer { if let stop { cancel?.remove(stop) } }
      let reply = try await worker.machine.call(
        "Bigslice.run",
        RunRequest(
          task: task.ref, attempt: attempt, machine: machine, inputs: inputs, empty: empty, samples: samples),
        returning: RunReply.self)
      worker.sentLocations.add(inputs.count, ordering: .relaxed)
      worker.batchedFetches.add(reply.remoteReads.fetches, ordering: .relaxed)
      worker.batchedParts.add(reply.remoteReads.batchedParts, ordering: .relaxed)
      worker.streamedParts.add(reply.remoteReads.streamedParts, ordering: .relaxed)
      worker.confirm(inputs, samples: samples.map(\.task))
      guard reply.holding.count == task.partitions else {
        return .failed(
          BigsliceError.machinesUnavailable(
            "machine \(machine) returned \(reply.holding.count) partitions of \(task.name), not \(task.partitions)"
          ))
      }
      let remote = RemoteOutput(
        worker: worker, ref: OutputRef(task: task.ref, attempt: attempt), schema: task.chain[0].schema,
        holding: reply.holding)
      let output = TaskOutput(.remote(remote), partitions: task.partitions, rows: reply.rows, bytes: reply.bytes)
      if let sample = reply.sample {
        // The first sample the driver got is the one every machine cuts key ranges by.
        let decoded = try decodeBlocks(sample, schema: nil, name: "the output sample of \(task.ref)")
        if task.sample == nil { task.sample = decoded }
      }
      for (name, n) in reply.counters { counters.add(name, n) }
      spilled(reply.spills)
      var io = TaskIO()
      io.readRows = reply.readRows
      io.readBytes = reply.readBytes
      io.writeRows = reply.writeRows
      io.writeBytes = reply.writeBytes
      io.readTime = .seconds(reply.readSeconds)
      io.writeTime = .seconds(reply.writeSeconds)
      io.firstRead = reply.firstReadAfter.map { called + .seconds($0) }
      observer?.record(task, .done, output: output, io: io, machine: machine)
      return .done(output)
    } catch let error as BigmachineError {
      return outcome(of: error, task, worker, observer)
    } catch {
      let wrapped = (error as? BigsliceError) ?? .taskFailed(op: task.op, shard: task.shard, cause: error)
      observer?.record(task, .failed, error: wrapped, machine: machine)
      return .failed(wrapped)
    }
  }

  /// What a failed call means: a lost input or machine (computed again), or a failure.
  private func outcome(
    of error: BigmachineError, _ task: ShardTask, _ worker: WorkerHandle, _ observer: (any TaskObserver)?
  ) -> TaskOutcome {
    let machine = worker.machine.address
    if case .remote(_, _, WorkerFailure.kind, let message, _, _) = error {
      guard let failure = error.detail(as: WorkerFailure.self)?.bounded else {
        return failed(task, "the worker's failure did not arrive whole: \(message)", machine, observer)
      }
      switch failure {
      case .lostInput(let refs, _):
        let lost = Set(refs)
        var upstream: [ShardTask] = []
        var seen = Set<TaskRef>()
        for dep in task.deps {
          upstream += dep.tasks.filter { lost.contains($0.ref) && seen.insert($0.ref).inserted }
        }
        observer?.record(task, .waiting, machine: machine)
        return .lost(
          LostInput(
            task: task, upstream: upstream,
            cause: RemoteFailure(op: task.op, shard: task.shard, message: "\(failure)", machine: machine)))
      case .taskFailed(let op, let shard, let message), .temporary(let op, let shard, let message):
        var cause = RemoteFailure(op: op, shard: shard, message: message, machine: machine)
        if case .temporary = failure { cause.isTemporary = true }
        let wrapped = BigsliceError.taskFailed(op: op, shard: shard, cause: cause)
        observer?.record(task, .failed, error: wrapped, machine: machine)
        return .failed(wrapped)
      case .compile, .missing:
        return failed(task, "\(failure)", machine, observer)
      }
    }
    if case .remote(_, _, _, let message, _, _) = error {
      // Raised by the machine, but not by the worker's service: a failure all the same (its
      // message is bounded and clean, as Bigmachine keeps any text from a peer).
      return failed(task, message, machine, observer)
    }
    // The machine died or the connection failed: the task is computed again elsewhere.
    if worker.machine.state != .stopped { worker.putOnProbation() }
    observer?.record(task, .waiting, machine: machine)
    return .lost(LostInput(task: task, upstream: [], cause: error))
  }

  /// The task failed on `machine` with `message`: the job fails.
  private func failed(
    _ task: ShardTask, _ message: String, _ machine: String, _ observer: (any TaskObserver)?
  ) -> TaskOutcome {
    let wrapped = BigsliceError.taskFailed(
      op: task.op, shard: task.shard,
      cause: RemoteFailure(op: task.op, shard: task.shard, message: message, machine: machine))
    observer?.record(task, .failed, error: wrapped, machine: machine)
    return .failed(wrapped)
  }

  /// Compiles invocation `index` (and the invocations whose results it reads) on `worker`,
  /// once per machine.
  private func compile(_ index: Int, on worker: WorkerHandle) async throws {
    guard let invocation = state.withLock({ $0.invocations[index] }) else { return }
    for earlier in invocation.results { try await compile(earlier, on: worker) }
    try await worker.compile(invocation)
  }

  /// Removes every machine's store and stops the machines.
  func shutdown() {
    let (b, workers) = state.withLock { s -> (Bigmachine?, [WorkerHandle]) in
      defer {
        s.workers = []
        s.bigmachine = nil
        s.shutDown = true
      }
      return (s.bigmachine, s.workers)
    }
    guard let b else { return }
    _ = try? ThreadPool.shared.blockingAwait {
      await withTaskGroup(of: Void.self) { group in
        for w in workers where w.machine.state == .running {
          group.addTask { _ = try? await w.machine.call("Bigslice.close", true, returning: Bool.self) }
        }
      }
      await b.shutdown()
    }
  }
}

func nanosleep(milliseconds: Int) {
  var ts = timespec(tv_sec: milliseconds / 1000, tv_nsec: (milliseconds % 1000) * 1_000_000)
  nanosleep(&ts, nil)
}
