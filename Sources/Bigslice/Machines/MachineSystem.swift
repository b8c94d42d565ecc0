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
}
