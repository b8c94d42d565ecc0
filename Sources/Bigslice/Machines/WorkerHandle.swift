import Bigmachine
import Synchronization

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// A machine as the machine executor sees it: its slots, compiled invocations and probation.
final class WorkerHandle: OutputHolder, @unchecked Sendable {
  let machine: Machine
  private struct State {
    var used = 0
    var compiled: [Int: Task<Void, Error>] = [:]
    var probationUntil: ContinuousClock.Instant?
    var ran = false
    /// Outputs to delete, sent in one call (see `discard`).
    var discards: [OutputRef] = []
    /// The upstream locations and samples the machine confirmed it holds (a run that carried
    /// them finished).
    var locations: [TaskRef: InputLocation] = [:]
    var samples: Set<TaskRef> = []
  }
  private let state = Mutex(State())

  init(machine: Machine) { self.machine = machine }

  var address: String { machine.address }
  var isAlive: Bool { machine.state != .stopped }
  /// Whether the machine was ever running and given a task. One that stopped before that is
  /// not replaced: a machine that cannot start would fail again. One that died under its
  /// tasks is, even during its first task (the task is lost, not the machine's fault).
  var everRan: Bool { state.withLock { $0.ran } }

  func free(_ procs: Int) -> Int { procs - state.withLock { $0.used } }

  func reserve(_ need: Int, of procs: Int) -> Bool {
    state.withLock { s in
      guard s.used + need <= procs else { return false }
      s.used += need
      s.ran = true
      return true
    }
  }

  func release(_ need: Int) { state.withLock { $0.used -= need } }

  /// The locations and samples the machine holds.
  var known: (locations: [TaskRef: InputLocation], samples: Set<TaskRef>) {
    state.withLock { ($0.locations, $0.samples) }
  }

  /// Upstream locations sent to the machine in run requests (for tests).
  let sentLocations = Atomic<Int>(0)
  /// Batched reads the machine's tasks made, the parts they brought, and the parts streamed
  /// one to a stream (for tests).
  let batchedFetches = Atomic<Int>(0)
  let batchedParts = Atomic<Int>(0)
  let streamedParts = Atomic<Int>(0)

  /// Records that the machine holds `locations` and `samples` (a run carrying them finished).
  func confirm(_ locations: [InputLocation], samples: [TaskRef]) {
    guard !locations.isEmpty || !samples.isEmpty else { return }
    state.withLock { s in
      for location in locations { s.locations[location.task] = location }
      s.samples.formUnion(samples)
    }
  }

  func onProbation(_ now: ContinuousClock.Instant) -> Bool {
    state.withLock { s in s.probationUntil.map { now < $0 } ?? false }
  }

  func putOnProbation() { state.withLock { $0.probationUntil = .now + MachineExecutor.probation } }

  func compile(_ invocation: Invocation) async throws {
    let task = state.withLock { s -> Task<Void, Error> in
      if let t = s.compiled[invocation.index] { return t }
      let t = Task<Void, Error>(executorPreference: ThreadPool.shared) { [machine] in
        _ = try await machine.call("Bigslice.compile", invocation, returning: Bool.self)
      }
      s.compiled[invocation.index] = t
      return t
    }
    do {
      try await task.value
    } catch {
      // A compile that failed on a live connection is not retried; a lost one is.
      if (error as? BigmachineError)?.isTemporary == true { state.withLock { $0.compiled[invocation.index] = nil } }
      throw error
    }
  }

  func read(_ output: OutputRef, partition: Int, offset: Int) async throws -> ByteStream {
    try await machine.stream("Bigslice.read", ReadRequest(output: output, partition: partition, offset: offset))
  }

  /// Queues `tasks` for deletion. Outputs are let go one at a time (each `RemoteOutput` as it
  /// is freed: a finished job frees thousands at once), so they are sent in batches: the
  /// first of a batch waits `discardDelay` for the others, and one call carries them all.
  func discard(_ outputs: [OutputRef]) {
    guard machine.state == .running, !outputs.isEmpty else { return }
    let first = state.withLock { s in
      defer { s.discards.append(contentsOf: outputs) }
      return s.discards.isEmpty
    }
    guard first else { return }
    let machine = self.machine
    Task(executorPreference: ThreadPool.shared) { [self] in
      try? await Task.sleep(for: WorkerHandle.discardDelay)
      let batch = state.withLock { s in
        defer { s.discards = [] }
        return s.discards
      }
      discardCalls.add(1, ordering: .relaxed)
      _ = try? await machine.call("Bigslice.discard", batch, returning: Bool.self)
    }
  }

  static let discardDelay = Duration.milliseconds(20)
  /// Discard calls made to this machine (for tests).
  let discardCalls = Atomic<Int>(0)
}
