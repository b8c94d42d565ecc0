import Bigmachine

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// Where a session on machines gets them.
public enum MachineSystem: @unchecked Sendable {
  /// Worker processes on this host, each re-running this binary.
  case local
  /// Servers inside this process (tests: they speak the full protocol).
  case inProcess
  /// Any Bigmachine system: `LocalSystem` with other settings, `InProcessSystem` kept to
  /// kill its machines, `HostsSystem` for workers that join from other hosts.
  case system(any System)

  /// Workers on any hosts that join the driver at `listen` (`host:port`):
  /// `bigslice worker --join HOST:PORT`, or a program's own `Bigmachine.worker` entry, with
  /// the cluster secret, which the driver writes to `secretFile` (mode 0600). Pass a
  /// `HostsSystem` as `.system` instead to learn the port it picked for port 0.
  public static func hosts(
    listen: String, secretFile: String? = nil, fingerprint: HostsSystem.FingerprintCheck = .sameAsDriver
  ) -> MachineSystem {
    .system(HostsSystem(listen: listen, fingerprint: fingerprint, secretFile: secretFile))
  }

  /// Workers submitted to Slurm as batch jobs of `resources`, which join the driver at
  /// `listen`; a job that ends is a lost machine, replaced like any other, and every job
  /// still queued or running is cancelled at shutdown. The workers run this binary, and read
  /// the cluster secret from `secretFile` (default `~/.bigmachine/…`): both must be at the
  /// same paths on the compute nodes (a shared file system). With `bootstrap` (the path of
  /// any build of `bigslice`, say, on the nodes), the nodes need only that: each worker starts
  /// from it and receives this binary over its connection.
  public static func slurm(
    _ resources: SlurmLauncher.Resources = .init(), listen: String = "0.0.0.0:0", advertise: String? = nil,
    secretFile: String? = nil, bootstrap: String? = nil, startTimeout: Duration = .seconds(600)
  ) -> MachineSystem {
    .system(
      ClusterSystem(
        launcher: SlurmLauncher(resources), listen: listen, advertise: advertise, bootstrap: bootstrap,
        secretFile: secretFile, startTimeout: startTimeout))
  }

  /// Workers started by a shell command per worker (see ``CommandLauncher``), such as
  /// `ssh {host} {command}`, which join the driver at `listen`.
  public static func command(
    _ template: String, hosts: [String] = [], listen: String = "0.0.0.0:0", advertise: String? = nil,
    secretFile: String? = nil, bootstrap: String? = nil
  ) -> MachineSystem {
    .system(
      ClusterSystem(
        launcher: CommandLauncher(template, hosts: hosts), listen: listen, advertise: advertise, bootstrap: bootstrap,
        secretFile: secretFile))
  }
}
