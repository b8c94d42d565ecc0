import Dispatch
import Synchronization

/// How a task run ended.
enum TaskOutcome: @unchecked Sendable {
  /// Computed: the task's output.
  case done(TaskOutput)
  /// Not computed, and not the task's fault: an input was lost (the upstream tasks in it are
  /// computed again), or the machine running it was.
  case lost(LostInput)
  /// Failed for good: user code or the data; fails the job.
  case failed(Error)
}

/// Where an evaluation runs its tasks: in this process (`LocalExecutor`) or on machines
/// (`MachineExecutor`).
protocol ExecutorBackend: AnyObject {
  /// Starts `task` if there is room for it now, and returns whether it did. `finish` is then
  /// called once, from any thread, when the task ends. With `idle` (nothing else runs), a
  /// dispatcher must start the task, waiting for room if it has none; it throws when there
  /// can never be room (no machine left).
  ///
  /// The dispatcher reports the task running, done and failed to `observer`.
  func start(
    _ task: ShardTask, idle: Bool, counters: Counters, observer: (any TaskObserver)?, cancel: Cancellation?,
    finish: @escaping @Sendable (consuming TaskOutcome) -> Void
  ) throws -> Bool
}

/// Runs every task that `roots` need, each after its dependencies, through `dispatcher`.
///
/// A task whose input turns out lost (a spill file vanished or was corrupted, a machine
/// holding it died) goes back to waiting, together with the upstream tasks that made the
/// input, and both are computed again. Outputs of interior tasks are released as soon as every
/// task reading them is done; they are computed again if a later loss needs them.
///
/// `observer` hears of every task planned (waiting) and lost, and the dispatcher reports the
/// rest.
/// A task that fails with a temporary error (`isTemporary`) waits `retryBackoff` and runs
/// again, up to `retries` times; the attempts' errors are kept until it succeeds.
/// - Throws: the first task failure, as `BigsliceError.taskFailed`, or `.failedAfterRetries`
///   for a task that was retried; `.tooManyTries` when one task was lost `maxConsecutiveLost`
///   times in a row.
func evaluate(
  _ roots: [ShardTask], on dispatcher: any ExecutorBackend, counters: Counters, cancel: Cancellation? = nil,
  observer: (any TaskObserver)? = nil, maxConsecutiveLost: Int = defaultMaxConsecutiveLost,
  retries: Int = defaultRetries, claims: TaskClaims? = nil
) throws {
  for root in roots { root.pinned = true }
  var losses: [ObjectIdentifier: Int] = [:]
  var attempts = Attempts(retries: retries)
  let holder = claims?.newHolder() ?? 0
  while true {
    let plan = Plan(roots)
    if plan.remaining == 0 { break }
    // Another run computes some of these tasks: wait until it lets go, then plan again. Claims
    // are held only while a plan runs, so no two runs wait for each other.
    if let claims, let wait = claims.claim(plan.tasks.values, for: holder) {
      let stop = cancel?.add { wait.signal() }
      wait.wait()
      if let stop { cancel?.remove(stop) }
      if cancel?.isCancelled == true { throw CancellationError() }
      continue
    }
    defer { claims?.release(holder) }
    // Outputs found gone while planning (a machine holding them died).
    for task in plan.vanished {
      task.output = nil
      observer?.record(task, .lost)
    }
    // Upstream tasks first: the compiler numbers a slice's tasks before its inputs'.
    if let observer {
      for task in plan.tasks.values.sorted(by: { $0.id > $1.id }) { observer.record(task, .waiting) }
    }
    let outcome = try execute(
      plan, on: dispatcher, counters: counters, cancel: cancel, observer: observer, attempts: &attempts
    ) { task in
      losses[ObjectIdentifier(task)] = nil
    }
    guard let lost = outcome else { break }
    // Start over from the roots: the lost outputs (and whatever was released that they
    // need) are planned again. Outputs beside the lost one whose files are gone too are
    // recomputed in the same round rather than found one loss at a time.
    for upstream in lost.upstream {
      upstream.output = nil
      observer?.record(upstream, .lost)
    }
    for dep in lost.task.deps {
      for upstream in dep.tasks where upstream.output?.isStillThere == false {
        upstream.output = nil
        observer?.record(upstream, .lost)
      }
    }
    let id = ObjectIdentifier(lost.task)
    losses[id, default: 0] += 1
    if losses[id]! >= maxConsecutiveLost {
      throw BigsliceError.tooManyTries(
        op: lost.task.op, shard: lost.task.shard, tries: losses[id]!, cause: lost.cause)
    }
  }
}

/// Tasks lost in a row before a job fails with `tooManyTries`.
let defaultMaxConsecutiveLost = 5

/// The failed attempts of each task still to succeed, and how many retries a task gets.
struct Attempts {
  let retries: Int
  private var failed: [ObjectIdentifier: [Error]] = [:]

  init(retries: Int) { self.retries = max(retries, 0) }

  /// Records that `task` failed with `error`. Returns how long to wait before running it again,
  /// or nil when it must not run again: the error is not temporary, or its retries are spent.
  /// Then `error` is the job's error: as it is, or listing every attempt when there were
  /// retries.
  mutating func failed(_ task: ShardTask, _ error: inout Error) -> Duration? {
    let id = ObjectIdentifier(task)
    var cause = error
    if case BigsliceError.taskFailed(_, _, let inner) = error { cause = inner }
    failed[id, default: []].append(cause)
    let tried = failed[id]!
    if isTemporary(error), tried.count <= retries { return retryBackoff(tried.count) }
    if tried.count > 1 {
      var op = task.op
      var shard = task.shard
      if case BigsliceError.taskFailed(let failedOp, let failedShard, _) = error {
        (op, shard) = (failedOp, failedShard)
      }
      error = BigsliceError.failedAfterRetries(op: op, shard: shard, attempts: tried)
    }
    return nil
  }

  /// `task` succeeded: its failed attempts are forgotten.
  mutating func succeeded(_ task: ShardTask) { failed[ObjectIdentifier(task)] = nil }
}

extension ShardTask {
  /// Whether the task's output is there to read: computed, and not released or lost since.
  /// Known in memory: a file that vanished is found when it is read.
  var isComputed: Bool { output?.isAvailable ?? false }
}

/// The tasks that still need computing, and how they wait for each other.
///
/// Tasks wait on dependencies, not on each upstream task: every task reading one shuffle
/// shares its `TaskDependency`, so a shuffle of `n` tasks into `n` costs `O(n)` here, not
/// `O(n²)`. A dependency is done when its last planned task is; a task is ready when its last
/// pending dependency is done.
private struct Plan {
  /// Per planned task: its dependencies still pending.
  var waiting: [ObjectIdentifier: Int] = [:]
  /// Per planned dependency: its planned tasks not yet done, and the planned tasks reading it
  /// not yet done.
  var pending: [ObjectIdentifier: Int] = [:]
  var readersLeft: [ObjectIdentifier: Int] = [:]
  /// Per planned dependency: the planned tasks that read it.
  var readers: [ObjectIdentifier: [ShardTask]] = [:]
  /// Per planned task: the planned dependencies it is in, and how many of them are still read.
  var memberOf: [ObjectIdentifier: [TaskDependency]] = [:]
  var stillRead: [ObjectIdentifier: Int] = [:]
  /// Every planned task by identity.
  var tasks: [ObjectIdentifier: ShardTask] = [:]
  var ready: [ShardTask] = []
  /// Planned tasks that had an output that is no longer available.
  var vanished: [ShardTask] = []
  var remaining: Int { waiting.count }

  /// Walks down from `roots`, stopping at tasks whose output is present; each dependency is
  /// walked once, however many tasks read it.
  init(_ roots: [ShardTask]) {
    var stack = roots.filter { !$0.isComputed }
    var walked: Set<ObjectIdentifier> = []
    var planned: [TaskDependency] = []
    while let task = stack.popLast() {
      guard tasks[ObjectIdentifier(task)] == nil else { continue }
      tasks[ObjectIdentifier(task)] = task
      if task.output != nil { vanished.append(task) }
      for dep in task.deps where walked.insert(ObjectIdentifier(dep)).inserted {
        dep.dropShared()
        let missing = dep.tasks.filter { !$0.isComputed }
        if missing.isEmpty { continue }
        planned.append(dep)
        stack.append(contentsOf: missing)
      }
    }
    for dep in planned {
      let id = ObjectIdentifier(dep)
      var count = 0
      var seen: Set<ObjectIdentifier> = []
      for upstream in dep.tasks where tasks[ObjectIdentifier(upstream)] != nil {
        guard seen.insert(ObjectIdentifier(upstream)).inserted else { continue }
        count += 1
        memberOf[ObjectIdentifier(upstream), default: []].append(dep)
        stillRead[ObjectIdentifier(upstream), default: 0] += 1
      }
      pending[id] = count
    }
    for task in tasks.values {
      var count = 0
      for dep in task.deps where pending[ObjectIdentifier(dep)] != nil {
        count += 1
        readers[ObjectIdentifier(dep), default: []].append(task)
        readersLeft[ObjectIdentifier(dep), default: 0] += 1
      }
      waiting[ObjectIdentifier(task)] = count
      if count == 0 { ready.append(task) }
    }
  }

  /// Marks `task` done: returns the tasks it made ready, and releases the outputs no planned
  /// task reads any more (those not pinned as a result's).
  mutating func done(_ task: ShardTask) {
    let id = ObjectIdentifier(task)
    waiting[id] = nil
    for dep in memberOf[id] ?? [] {
      let depID = ObjectIdentifier(dep)
      pending[depID]! -= 1
      guard pending[depID] == 0 else { continue }
      var made = readers[depID] ?? []
      if dep.shuffle, dep.tasks.contains(where: { $0.output?.isOnDisk == true }) {
        // Ready tasks are taken from the end: in descending shard order here, they run in
        // ascending order, so they read neighbouring sections of each upstream file close
        // together in time (`SectionCache`). Only then: in memory, the plan's order measured
        // faster than shard order.
        made.sort { $0.shard > $1.shard }
      }
      for reader in made {
        let readerID = ObjectIdentifier(reader)
        waiting[readerID]! -= 1
        if waiting[readerID] == 0 { ready.append(reader) }
      }
    }
    for dep in task.deps {
      let depID = ObjectIdentifier(dep)
      guard let left = readersLeft[depID] else { continue }
      readersLeft[depID] = left - 1
      guard left == 1 else { continue }
      dep.dropShared()
      var seen: Set<ObjectIdentifier> = []
      for upstream in dep.tasks where seen.insert(ObjectIdentifier(upstream)).inserted {
        let upstreamID = ObjectIdentifier(upstream)
        guard let reads = stillRead[upstreamID] else { continue }
        stillRead[upstreamID] = reads - 1
        if reads == 1, !upstream.pinned { upstream.output = nil }
      }
    }
  }
}

/// What the tasks that ended while the evaluator waited did, and the tasks due to run again.
private struct Ended {
  var done: [ShardTask] = []
  var failures: [(task: ShardTask, error: Error)] = []
  var lost: LostInput?
  var retry: [ShardTask] = []
}

/// Runs a plan to its end. Returns nil when every task is done, or the first lost input
/// (after the tasks already running have finished). A task failing with a temporary error is
/// started again after its backoff (`attempts`).
private func execute(
  _ plan: Plan, on dispatcher: any ExecutorBackend, counters: Counters, cancel: Cancellation?,
  observer: (any TaskObserver)?, attempts: inout Attempts, finished taskDone: (ShardTask) -> Void
) throws -> LostInput? {
  var plan = plan
  let state = Mutex(Ended())
  let finished = DispatchSemaphore(value: 0)
  // A cancellation wakes the wait below (an extra signal only makes one wait return early).
  cancel?.attach { finished.signal() }
  defer { cancel?.detach() }
  var running = 0
  /// Tasks waiting out a backoff before they run again.
  var backingOff = 0
  var stop = false
  var failure: Error?
  var lost: LostInput?
  while plan.remaining > 0 {
    if cancel?.isCancelled == true {
      failure = failure ?? CancellationError()
      stop = true
    }
    while !stop, let task = plan.ready.last {
      let started: Bool
      do {
        started = try dispatcher.start(
          task, idle: running == 0, counters: counters, observer: observer, cancel: cancel
        ) { [unowned task] outcome in
          // The outcome moves into the state, and the task is held there, before the wake-up:
          // what the running thread still holds afterwards keeps neither alive.
          var outcome = Optional(consume outcome)
          state.withLock { s in
            s.done.append(task)
            switch outcome.take()! {
            case .done(let output): task.output = output
            case .lost(let error): if s.lost == nil { s.lost = error }
            case .failed(let error): s.failures.append((task, error))
            }
          }
          finished.signal()
        }
      } catch {
        failure = failure ?? error
        stop = true
        break
      }
      guard started else { break }
      plan.ready.removeLast()
      running += 1
    }
    if running == 0, stop || backingOff == 0 { break }
    finished.wait()
    let ended = state.withLock { s -> Ended in
      defer { s = Ended(lost: s.lost) }
      return s
    }
    for (task, error) in ended.failures {
      var error = error
      if !stop, let wait = attempts.failed(task, &error) {
        observer?.record(task, .waiting)
        backingOff += 1
        let (seconds, attoseconds) = wait.components
        let nanoseconds = Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)
        DispatchQueue.global().asyncAfter(deadline: .now() + .nanoseconds(nanoseconds)) {
          state.withLock { $0.retry.append(task) }
          finished.signal()
        }
      } else {
        failure = failure ?? error
      }
    }
    backingOff -= ended.retry.count
    if !stop { plan.ready += ended.retry }
    lost = lost ?? ended.lost
    stop = stop || failure != nil || lost != nil
    for task in ended.done {
      running -= 1
      guard task.output != nil else { continue }
      attempts.succeeded(task)
      taskDone(task)
      plan.done(task)
    }
  }
  if let failure {
    // A task stopped by the cancellation fails with it; the run is cancelled all the same.
    if cancel?.isCancelled == true { throw CancellationError() }
    throw failure
  }
  return lost
}
