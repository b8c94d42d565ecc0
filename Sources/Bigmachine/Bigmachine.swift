import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// The machine manager: call ``start(system:services:options:)`` early in `main`.
///
/// In the driver (the process you run) it returns a `Bigmachine`, which starts machines,
/// keeps them alive and shuts them down. In a worker (the same binary, re-run by a system
/// with `BIGMACHINE_MODE=worker` in its environment) it never returns: it serves the
/// driver until told to exit or until its lease lapses. Code before the call therefore runs
/// in both; code after it runs only in the driver.
///
/// ```swift
/// let b = try await Bigmachine.start(system: LocalSystem(), services: [Sampler.self])
/// let machines = try await b.start(count: 2, services: [Sampler()])
/// for m in machines { await m.wait(for: .running) }
/// let hits: Int = try await machines[0].call("Sampler.sample", 1_000_000)
/// await b.shutdown()
/// ```
public final class Bigmachine: Sendable {
  /// Settings shared by the driver and its workers.
  public struct Options: Sendable {
    /// Sent in every handshake; when non-empty, a machine with a different one is refused.
    /// Bigslice passes the fingerprint of its func registry here.
    public var applicationFingerprint: String
    /// Where refused connections, lapsed leases and stopped machines are reported.
    public var log: BigmachineLog
    /// The cluster secret; nil makes a fresh random one (the usual case).
    public var secret: ClusterSecret?
    /// A hosts worker: the interface it listens on for its peers (default every one).
    public var peerListenHost: String
    /// A hosts worker: the host its peers dial; nil for the address it reaches the driver
    /// from (right when workers and driver share a network).
    public var peerAdvertiseHost: String?
    /// How frames travel after each handshake: sealed (the default), or in the clear between
    /// loopback addresses when every end asks for it (``FrameProtection/loopbackPlain``). The
    /// driver passes its choice to the workers a ``LocalSystem`` starts.
    public var protection: FrameProtection

    /// Defaults: no application fingerprint, log to standard error, a random secret, sealed
    /// frames; a hosts worker listens for peers on every interface.
    public init(
      applicationFingerprint: String = "", log: BigmachineLog = .standardError, secret: ClusterSecret? = nil,
      peerListenHost: String = "0.0.0.0", peerAdvertiseHost: String? = nil, protection: FrameProtection = .sealed
    ) {
      self.applicationFingerprint = applicationFingerprint
      self.log = log
      self.secret = secret
      self.peerListenHost = peerListenHost
      self.peerAdvertiseHost = peerAdvertiseHost
      self.protection = protection
    }
  }

  /// The system machines come from.
  public let system: any System
  /// The cluster secret every connection must prove.
  public let secret: ClusterSecret
  let driver: DriverContext
  private let provider: any MachineProvider
  private let all = NIOLockedValueBox<[Machine]>([])
  private let shuttingDown = NIOLockedValueBox(false)

  /// Whether this process is a worker a system started (``start(system:services:options:)``
  /// serves instead of returning).
  public static var isWorker: Bool { WorkerEnvironment.isWorker }

  /// Bootstraps: in a worker serves forever; in the driver returns the manager.
  ///
  /// `services` lists every service type the program's machines may install (the worker
  /// decodes service values by their ``Service/name``). Throws a fatal `configuration` error
  /// if a worker's environment is unusable (no secret, bad address).
  public static func start(
    system: any System, services: [any Service.Type] = [], options: Options = Options()
  ) async throws -> Bigmachine {
    let types = ServiceTypes(services)
    raiseDescriptorLimit()
    if WorkerEnvironment.isWorker {
      try await WorkerEnvironment.run(types: types, options: options)
    }
    guard let provider = system as? any MachineProvider else {
      throw BigmachineError.fatal(address: "", kind: .configuration, message: "\(system.name) is not a machine system")
    }
    let b = Bigmachine(system: provider, types: types, options: options)
    try await provider.prepare(driver: b.driver)
    return b
  }

  private init(system: any MachineProvider, types: ServiceTypes, options: Options) {
    self.system = system
    provider = system
    secret = options.secret ?? .random()
    driver = DriverContext(
      secret: secret, binaryFingerprint: { try await BinaryFingerprint.ofSelf() },
      applicationFingerprint: options.applicationFingerprint, types: types, log: options.log,
      protection: options.protection)
  }

  /// Starts `count` machines, each with `services` installed, and returns them while they
  /// are still starting: wait for ``Machine/State/running`` on each (a machine whose
  /// service `setUp` fails stops at once, with the cause as its ``Machine/error``).
  ///
  /// Throws if the system cannot launch them at all (spawn failure, or a service value that
  /// does not encode). For ``HostsSystem`` it waits until `count` workers have joined.
  public func start(count: Int, services: [any Service]) async throws -> [Machine] {
    let specs = try services.map { try ServiceSpec($0) }
    let launches = try await provider.launch(count: count, driver: driver)
    let machines = launches.map { Machine(launch: $0) }
    all.withLockedValue { $0 += machines }
    let keepalive = system.keepalive
    for m in machines {
      // Not on the cooperative pool: a driver may block pool threads waiting for machines.
      Task(executorPreference: ThreadPool.shared) { [self] in
        await m.boot(services: specs, keepalive: keepalive)
        guard await m.wait(for: .stopped) == .stopped else { return }
        await peerLost(m)
      }
    }
    return machines
  }

  /// Tells the other running machines that `machine` stopped (unless the cluster is shutting
  /// down): their calls to it then fail at once, not when TCP gives up on a dead host.
  private func peerLost(_ machine: Machine) async {
    guard !shuttingDown.withLockedValue({ $0 }) else { return }
    let others = machines.filter { $0 !== machine && $0.state == .running }
    await withTaskGroup(of: Void.self) { group in
      for other in others {
        group.addTask { _ = try? await other.call("Supervisor.peerLost", machine.address, returning: Bool.self) }
      }
    }
  }

  /// The machines started so far that have not stopped.
  public var machines: [Machine] { all.withLockedValue { $0 }.filter { $0.state != .stopped } }

  /// Shuts every machine down in parallel (each waits for its worker's last output), then
  /// releases the system.
  public func shutdown() async {
    shuttingDown.withLockedValue { $0 = true }
    let machines = all.withLockedValue { $0 }
    await withTaskGroup(of: Void.self) { group in
      for m in machines { group.addTask { await m.shutdown() } }
    }
    await provider.shutdown()
  }
}

/// Raises this process's soft limit on open descriptors to its hard limit: connections,
/// spill files and shuffle files all take descriptors, and many systems start programs with
/// a soft limit of 1024 and a hard one far above. A limit the user lowered (`ulimit -n`
/// lowers both) stays as it is.
func raiseDescriptorLimit() {
  var limit = rlimit()
  guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
  limit.rlim_cur = limit.rlim_max
  _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
