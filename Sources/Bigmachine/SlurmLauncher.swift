import NIOConcurrencyHelpers

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// Starts each worker as a Slurm batch job (`sbatch --wrap`), watches the jobs with `squeue`
/// (a job that leaves the queue, or reaches a final state, has ended), and cancels a worker
/// with `scancel`. The commands are found on `PATH`, and use `SLURM_CONF` and the other
/// Slurm variables of the driver's environment.
public final class SlurmLauncher: WorkerLauncher, Sendable {
  public let name = "slurm"

  /// What each worker's job asks Slurm for.
  public struct Resources: Sendable {
    /// `--partition`; nil for the cluster's default.
    public var partition: String?
    /// `--time` (`minutes`, `hours:minutes:seconds`, `days-hours`); nil for the partition's.
    public var timeLimit: String?
    /// `--cpus-per-task`.
    public var cpusPerWorker: Int
    /// `--mem` (`4G`, `500M`); nil for the partition's default.
    public var memoryPerWorker: String?
    /// Where each job's stdout and stderr go: `<directory>/<launch id>.out`; nil for the
    /// directory `sbatch` runs in (Slurm's default).
    public var outputDirectory: String?
    /// More `sbatch` options, passed as they are (`--account=genomics`, `--qos=low`).
    public var extraOptions: [String]

    public init(
      partition: String? = nil, timeLimit: String? = nil, cpusPerWorker: Int = 1, memoryPerWorker: String? = nil,
      outputDirectory: String? = nil, extraOptions: [String] = []
    ) {
      self.partition = partition
      self.timeLimit = timeLimit
      self.cpusPerWorker = cpusPerWorker
      self.memoryPerWorker = memoryPerWorker
      self.outputDirectory = outputDirectory
      self.extraOptions = extraOptions
    }
  }

  private let resources: Resources
  private let pollInterval: Duration
  /// Each watched job's last state seen, and who waits for its end.
  private struct Watch {
    var state = "PENDING"
    var waiters: [CheckedContinuation<String, Never>] = []
    var ended: String?
  }
  private let jobs = NIOLockedValueBox<[String: Watch]>([:])
  private let poller = NIOLockedValueBox<Task<Void, Never>?>(nil)

  /// A launcher submitting jobs with `resources`, and asking `squeue` about them every
  /// `pollInterval`.
  public init(_ resources: Resources = Resources(), pollInterval: Duration = .seconds(2)) {
    self.resources = resources
    self.pollInterval = pollInterval
  }

  /// The `sbatch` arguments that submit `command`.
  func submission(_ command: WorkerCommand) -> [String] {
    var args = ["sbatch", "--parsable", "--job-name=\(command.id)", "--cpus-per-task=\(resources.cpusPerWorker)"]
    if let p = resources.partition { args.append("--partition=\(p)") }
    if let t = resources.timeLimit { args.append("--time=\(t)") }
    if let m = resources.memoryPerWorker { args.append("--mem=\(m)") }
    if let d = resources.outputDirectory { args.append("--output=\(d)/\(command.id).out") }
    args += resources.extraOptions
    args.append("--wrap=exec \(command.shellCommand)")
    return args
  }

  public func launch(_ command: WorkerCommand) async throws -> any LaunchedWorker {
    let (status, output, errors) = try await ChildProcess.run(submission(command))
    // `--parsable` prints "jobid" or "jobid;cluster".
    let job = output.split(separator: "\n").first.map { String($0.split(separator: ";")[0]) } ?? ""
    guard status == 0, !job.isEmpty, job.allSatisfy(\.isNumber) else {
      throw BigmachineError.fatal(
        address: command.id, kind: .startFailed,
        message: "sbatch failed (\(ChildProcess.describe(status))): \(wireText(errors.isEmpty ? output : errors))")
    }
    jobs.withLockedValue { $0[job] = Watch() }
    startPolling()
    return SlurmWorker(job: job, launcher: self)
  }

  /// Waits until job `job` has ended; returns its last state.
  func ended(_ job: String) async -> String {
    await withCheckedContinuation { continuation in
      let done: String? = jobs.withLockedValue { j in
        if let ended = j[job]?.ended { return ended }
        if j[job] == nil { return "slurm job \(job) is not watched" }
        j[job]!.waiters.append(continuation)
        return nil
      }
      if let done { continuation.resume(returning: done) }
    }
  }

  func cancel(_ job: String) async {
    _ = try? await ChildProcess.run(["scancel", job])
  }

  private func startPolling() {
    poller.withLockedValue { p in
      guard p == nil else { return }
      p = Task { [weak self] in
        while let self, !Task.isCancelled {
          await self.poll()
          try? await Task.sleep(for: self.pollInterval)
        }
      }
    }
  }

  /// One `squeue` over every job still running: a job it no longer lists, or lists in a
  /// final state, has ended.
  private func poll() async {
    let live = jobs.withLockedValue { j in j.filter { $0.value.ended == nil }.map(\.key) }
    guard !live.isEmpty else { return }
    guard
      let (status, output, _) = try? await ChildProcess.run([
        "squeue", "-h", "-o", "%i %T", "-j", live.joined(separator: ","),
      ]),
      status == 0
    else { return }  // squeue failing (a busy controller) says nothing about the jobs: ask again.
    var listed: [String: String] = [:]
    for line in output.split(separator: "\n") {
      let words = line.split(separator: " ")
      if words.count == 2 { listed[String(words[0])] = String(words[1]) }
    }
    let finals: Set<String> = [
      "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
      "DEADLINE",
    ]
    let ended: [(CheckedContinuation<String, Never>, String)] = jobs.withLockedValue { j in
      var out: [(CheckedContinuation<String, Never>, String)] = []
      for job in live {
        guard var watch = j[job] else { continue }
        let state = listed[job]
        if let state { watch.state = state }
        if state == nil || finals.contains(state!) {
          let how = "slurm job \(job) \(state ?? "left the queue after \(watch.state)")"
          watch.ended = how
          out += watch.waiters.map { ($0, how) }
          watch.waiters = []
        }
        j[job] = watch
      }
      return out
    }
    for (waiter, how) in ended { waiter.resume(returning: how) }
  }

  public func shutdown() async {
    poller.withLockedValue { p in
      p?.cancel()
      p = nil
    }
    let waiters = jobs.withLockedValue { j -> [CheckedContinuation<String, Never>] in
      defer { j = [:] }
      return j.values.flatMap(\.waiters)
    }
    for w in waiters { w.resume(returning: "the slurm launcher shut down") }
  }
}

/// A worker's batch job.
struct SlurmWorker: LaunchedWorker {
  let job: String
  let launcher: SlurmLauncher

  func ended() async -> String { await launcher.ended(job) }
  func stop() async { await launcher.cancel(job) }
}
