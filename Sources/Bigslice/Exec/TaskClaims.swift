import Dispatch
import Synchronization

/// Which running evaluation computes each task, so that runs of one session evaluate at the
/// same time without two of them computing, releasing or losing the same task at once. An
/// evaluation claims every task its plan computes before it starts them; a plan with a task
/// another evaluation holds waits until that one lets go, then plans again (the task may be
/// computed by then). Runs whose tasks are apart (most jobs of a pipeline, and jobs that only
/// read the same computed result) never wait for each other.
final class TaskClaims: @unchecked Sendable {
  private struct State {
    /// The holder of each claimed task.
    var holders: [ObjectIdentifier: Int] = [:]
    /// Evaluations waiting for a claim to go.
    var waiting: [DispatchSemaphore] = []
  }
  private let state = Mutex(State())
  private let owners = Atomic<Int>(0)

  /// A new holder's number, for one evaluation.
  func newHolder() -> Int { owners.add(1, ordering: .relaxed).newValue }

  /// Claims every one of `tasks` for `holder` and returns nil; when another holder has one of
  /// them, claims none and returns a semaphore signalled when some claim goes.
  func claim(_ tasks: some Sequence<ShardTask>, for holder: Int) -> DispatchSemaphore? {
    state.withLock { s -> DispatchSemaphore? in
      let ids = tasks.map(ObjectIdentifier.init)
      if ids.contains(where: { s.holders[$0].map { $0 != holder } ?? false }) {
        let wait = DispatchSemaphore(value: 0)
        s.waiting.append(wait)
        return wait
      }
      for id in ids { s.holders[id] = holder }
      return nil
    }
  }

  /// Lets go of every task `holder` claimed, and wakes the evaluations waiting.
  func release(_ holder: Int) {
    let waiting = state.withLock { s -> [DispatchSemaphore] in
      s.holders = s.holders.filter { $0.value != holder }
      defer { s.waiting = [] }
      return s.waiting
    }
    for wait in waiting { wait.signal() }
  }
}
