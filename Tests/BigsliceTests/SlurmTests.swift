import Bigmachine
import BigmachineTestSupport
import Bigslice
import Foundation
import Testing
import Workloads

/// A one-node Slurm cluster on this host, for as long as the value lives: `munged`,
/// `slurmctld` and `slurmd` from Debian's `slurm-wlm` and `munge`, configured in a scratch
/// directory as `../shared/notes/slurm-one-node.md` does. Made as root; anywhere it cannot
/// be made, the tests are skipped and say why.
final class SlurmCluster: @unchecked Sendable {
  let directory: String
  let configuration: String

  /// Why no cluster can be made here, or nil: found once, by making one.
  static let unavailable: String? = {
    switch make() {
    case .success(let cluster):
      shared = cluster
      return nil
    case .failure(let reason): return "a one-node Slurm cluster cannot run here: \(reason)"
    }
  }()
  nonisolated(unsafe) static var shared: SlurmCluster?

  static func make() -> Result<SlurmCluster, SkipReason> {
    guard getuid() == 0 else { return .failure(SkipReason("not root")) }
    for tool in ["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/sbatch"] {
      guard FileManager.default.isExecutableFile(atPath: tool) else {
        return .failure(SkipReason("no \(tool) (Debian's slurm-wlm and munge)"))
      }
    }
    let dir = NSTemporaryDirectory() + "bigslice-slurm-\(getpid())"
    let script = """
      set -e
      DIR=\(dir)
      mkdir -p $DIR/state $DIR/spool $DIR/log $DIR/out /etc/munge /run/munge /var/log/munge /var/lib/munge
      [ -f /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
      chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
      chmod 400 /etc/munge/munge.key; chmod 700 /etc/munge
      # The daemons keep no descriptor of this script's output: its reader waits for the end.
      [ -S /run/munge/munge.socket.2 ] && munge -n >/dev/null 2>&1 \\
        || runuser -u munge -- /usr/sbin/munged </dev/null >/dev/null 2>&1
      HOST=$(hostname -s)
      cat > $DIR/slurm.conf <<CONF
      ClusterName=bigslice
      SlurmctldHost=$HOST
      SlurmUser=root
      SlurmdUser=root
      SlurmctldPort=\(6917 + getpid() % 1000)
      SlurmdPort=\(7917 + getpid() % 1000)
      StateSaveLocation=$DIR/state
      SlurmdSpoolDir=$DIR/spool
      SlurmctldPidFile=$DIR/slurmctld.pid
      SlurmdPidFile=$DIR/slurmd.pid
      SlurmctldLogFile=$DIR/log/ctld.log
      SlurmdLogFile=$DIR/log/d.log
      AuthType=auth/munge
      ProctrackType=proctrack/linuxproc
      TaskPlugin=task/none
      JobAcctGatherType=jobacct_gather/none
      SelectType=select/cons_tres
      SelectTypeParameters=CR_Core
      ReturnToService=2
      NodeName=$HOST CPUs=$(nproc) RealMemory=$(( $(free -m | awk '/Mem:/{print $2}') - 1024 )) State=UNKNOWN
      PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
      CONF
      export SLURM_CONF=$DIR/slurm.conf
      slurmctld -f $SLURM_CONF </dev/null >/dev/null 2>&1
      slurmd -f $SLURM_CONF </dev/null >/dev/null 2>&1
      for i in $(seq 1 100); do
        sinfo -h -o %t 2>/dev/null | grep -q idle && exit 0
        sleep 0.2
      done
      echo "the node never became idle: $(sinfo 2>&1 | tail -1)" >&2
      exit 1
      """
    // A daemon that never gets going fails the setup in two minutes instead of holding it.
    let (status, output) = run("/usr/bin/timeout", ["120", "/bin/sh", "-c", script])
    let cluster = SlurmCluster(directory: dir, configuration: dir + "/slurm.conf")
    guard status == 0 else {
      return .failure(SkipReason(output.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
    setenv("SLURM_CONF", cluster.configuration, 1)
    return .success(cluster)
  }

  private init(directory: String, configuration: String) {
    self.directory = directory
    self.configuration = configuration
  }

  /// The ids of the jobs in the queue; fails the test if `squeue` fails.
  func jobs() -> [String] {
    let (status, output) = run("/usr/bin/squeue", ["-h", "-o", "%i"])
    #expect(status == 0, "squeue: \(output)")
    return status == 0 ? output.split(separator: "\n").map(String.init) : ["squeue failed"]
  }

  /// Stops both daemons (munged is left to whoever else uses it) and removes the directory.
  func stop() {
    var pids: [Int32] = []
    for daemon in ["slurmd", "slurmctld"] {
      if let text = try? String(contentsOfFile: "\(directory)/\(daemon).pid", encoding: .utf8),
        let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
      {
        kill(pid, SIGTERM)
        pids.append(pid)
      }
    }
    for _ in 0..<100 where pids.contains(where: { kill($0, 0) == 0 }) { usleep(50_000) }
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// Runs `path` with `arguments`; its status and what it printed (both streams).
  @discardableResult
  static func run(_ path: String, _ arguments: [String]) -> (status: Int32, output: String) {
    var environment = processEnvironment()
    if let conf = shared?.configuration { environment["SLURM_CONF"] = conf }
    do {
      let (status, output, errors) = try ChildProcess.runBlocking(path, arguments, environment: environment)
      return (status, output + errors)
    } catch {
      return (-1, "\(error)")
    }
  }

  private func run(_ path: String, _ arguments: [String]) -> (status: Int32, output: String) {
    Self.run(path, arguments)
  }
}

@Suite(.serialized, .engine) struct SlurmTests {
  /// W1 and W3 on two workers Slurm runs as batch jobs, against references computed here;
  /// then each again with one worker's job cancelled mid-job (the answers are still right,
  /// and a replacement job joins); at shutdown every job is cancelled.
  @Test(.enabled(if: SlurmCluster.unavailable == nil, Comment(rawValue: SlurmCluster.unavailable ?? "")))
  func jobsRunOnSlurmWorkersAndSurviveACancelledOne() async throws {
    let cluster = try #require(SlurmCluster.shared)
    defer { cluster.stop() }
    Workloads.register()
    let keepalive = KeepaliveConfig(
      period: .milliseconds(300), timeout: .seconds(2), rpcTimeout: .seconds(1), lease: .seconds(5))
    let system = ClusterSystem(
      launcher: SlurmLauncher(
        .init(timeLimit: "30", cpusPerWorker: 1, outputDirectory: cluster.directory + "/out"),
        pollInterval: .milliseconds(300)),
      listen: "127.0.0.1:0", executable: try bigsliceBinary(), arguments: [],
      secretFile: cluster.directory + "/secret", keepalive: keepalive, startTimeout: .seconds(120), fingerprint: .any)
    let session = Session(executor: .machines(system: .system(system), count: 2, procs: 1))
    try await expectW1(session, rows: 400_000, keys: 5_000, shards: 6)
    #expect(cluster.jobs().count == 2, "\(cluster.jobs())")
    try await expectW3(session, rows: 100_000, keys: 20_000, shards: 6)

    let before = Set(cluster.jobs())
    let cancelled = try await expectW1(session, rows: 3_000_000, keys: 5_000, shards: 12) {
      let (status, output) = SlurmCluster.run("/usr/bin/scancel", [before.sorted()[0]])
      #expect(status == 0, "scancel: \(output)")
    }
    #expect(cancelled, "the job ended before a worker was cancelled")
    // The cancelled job's machine was replaced by a new job.
    let replaced = await eventually(within: 60, every: .milliseconds(100)) {
      let now = Set(cluster.jobs())
      return now.count == 2 && now != before
    }
    #expect(replaced, "jobs before \(before), now \(cluster.jobs())")

    // W3 again, larger, with another worker's job cancelled mid-job.
    let second = Set(cluster.jobs())
    let cancelledAgain = try await expectW3(session, rows: 2_000_000, keys: 500_000, shards: 12) {
      let (status, output) = SlurmCluster.run("/usr/bin/scancel", [second.sorted()[0]])
      #expect(status == 0, "scancel: \(output)")
    }
    #expect(cancelledAgain, "the join ended before a worker was cancelled")
    session.shutdown()
    #expect(
      await eventually(within: 30, every: .milliseconds(100)) { cluster.jobs().isEmpty }, "jobs left: \(cluster.jobs())"
    )
  }
}
