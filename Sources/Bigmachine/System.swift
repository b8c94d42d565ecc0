import NIOCore

/// Where machines come from. Three systems exist: ``InProcessSystem`` (servers inside this
/// process, for tests), ``LocalSystem`` (child processes on this host) and ``HostsSystem``
/// (workers anywhere that dial the driver). Pass one to
/// ``Bigmachine/start(system:services:options:)``.
public protocol System: Sendable {
  /// The system's name, e.g. `"local"`.
  var name: String { get }
  /// How machines of this system are kept alive.
  var keepalive: KeepaliveConfig { get }
}

/// The driver-side work of a system. Internal, so the set of systems is closed.
protocol MachineProvider: System {
  /// Readies the driver side once, when the driver starts (e.g. listens for workers).
  func prepare(driver: DriverContext) async throws
  /// Starts `count` machines; returns how to reach each. May wait until they have addresses.
  func launch(count: Int, driver: DriverContext) async throws -> [MachineLaunch]
  /// Releases what the system holds (listeners, files) after every machine stopped.
  func shutdown() async
}

extension MachineProvider {
  func prepare(driver: DriverContext) async throws {}
}

/// How the driver reaches, kills and waits out one launched machine.
struct MachineLaunch: Sendable {
  var address: String
  /// Returns the authenticated connection (dials it, or hands over one that dialed in).
  var connect: @Sendable () async throws -> Connection
  /// Kills what is left of the machine (a process that has not exited yet). Idempotent.
  var kill: @Sendable () -> Void = {}
  /// Waits, up to the given time, until the machine's output has fully arrived.
  var finished: @Sendable (Duration) async -> Void = { _ in }
}

/// What a system needs from its driver.
struct DriverContext: Sendable {
  var secret: ClusterSecret
  /// The driver's own binary fingerprint (what `local` and `hosts` expect of their workers by default).
  var binaryFingerprint: @Sendable () async throws -> String
  var applicationFingerprint: String
  var types: ServiceTypes
  var log: BigmachineLog
  var protection: FrameProtection = .sealed

  /// The configuration of the driver's end of a connection to a machine.
  func peerConfig(expectedBinaryFingerprint: String?, admitsBootstraps: Bool = false) -> PeerConfig {
    var config = PeerConfig(
      secret: secret, binaryFingerprint: "driver", applicationFingerprint: applicationFingerprint,
      expectedBinaryFingerprint: expectedBinaryFingerprint,
      expectedApplicationFingerprint: applicationFingerprint, methods: nil, onKeepalive: nil, log: log,
      protection: protection)
    config.admitsBootstraps = admitsBootstraps
    return config
  }
}
