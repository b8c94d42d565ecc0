import NIOCore

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// The environment a system sets for the worker processes it starts.
enum WorkerEnvironment {
  /// `worker` makes ``Bigmachine/start(system:services:options:)`` serve instead of return.
  static let mode = "BIGMACHINE_MODE"
  /// `local` (listen on loopback, report the port on stdout) or `hosts` (dial `BIGMACHINE_DRIVER`).
  static let system = "BIGMACHINE_SYSTEM"
  /// The cluster secret in hex; or
  static let secret = "BIGMACHINE_SECRET"
  /// a file (mode 0600) holding it.
  static let secretFile = "BIGMACHINE_SECRET_FILE"
  /// `host:port` of the driver, for `hosts` workers.
  static let driver = "BIGMACHINE_DRIVER"
  /// The lease in milliseconds the worker grants itself until the first renewal.
  static let lease = "BIGMACHINE_LEASE_MS"
  /// Processors the worker reports.
  static let maxprocs = "BIGMACHINE_MAXPROCS"
  /// Set (to anything) in a bootstrap: see `Bootstrap`.
  static let bootstrap = "BIGMACHINE_BOOTSTRAP"
  /// The file a bootstrap received and exec'd, for the new program to remove.
  static let receivedBinary = "BIGMACHINE_RECEIVED_BINARY"
  /// Which launch of a ``ClusterSystem`` started this worker.
  static let launchID = "BIGMACHINE_LAUNCH_ID"
  /// A `FrameProtection` raw value, overriding the program's options (the local system
  /// passes the driver's).
  static let protection = "BIGMACHINE_PROTECTION"

  static func value(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

  static var isWorker: Bool { value(mode) == "worker" }

  /// Serves as the environment says; never returns. Exits the process with status 2 if the
  /// environment is unusable.
  static func run(types: ServiceTypes, options: Bigmachine.Options) async throws -> Never {
    do {
      guard let secret = try ClusterSecret.fromEnvironment() else {
        throw BigmachineError.fatal(
          address: "", kind: .configuration, message: "a worker needs \(Self.secret) or \(secretFile)")
      }
      let lease = Int64(value(Self.lease) ?? "") ?? 120_000
      let maxprocs = Int(value(Self.maxprocs) ?? "") ?? availableProcessors()
      switch value(system) {
      case "local":
        try await serveLocal(types: types, options: options, secret: secret, leaseMillis: lease, maxprocs: maxprocs)
      case "hosts":
        guard let driver = value(Self.driver) else {
          throw BigmachineError.fatal(address: "", kind: .configuration, message: "a hosts worker needs \(Self.driver)")
        }
        try await Bigmachine.worker(
          driver: driver, secret: secret, services: types, options: options, leaseMillis: lease, maxprocs: maxprocs)
      default:
        throw BigmachineError.fatal(
          address: "", kind: .configuration, message: "unknown \(system) \(value(system) ?? "(unset)")")
      }
    } catch {
      writeStandardError("bigmachine worker: \(error)\n")
      exitWorkerProcess(2)
    }
  }

  /// A `local` worker: listens on loopback, tells the driver the port on stdout, serves.
  private static func serveLocal(
    types: ServiceTypes, options: Bigmachine.Options, secret: ClusterSecret, leaseMillis: Int64, maxprocs: Int
  ) async throws -> Never {
    let config = try await startRuntime(
      types: types, options: options, secret: secret, leaseMillis: leaseMillis, maxprocs: maxprocs
    ).config
    let channel = try await listen(host: "127.0.0.1", port: 0, config: config) { _ in }
    writeAll(1, "\(listeningMarker)127.0.0.1:\(channel.localAddress?.port ?? 0)\n")
    // A local worker is its driver's child: when the driver is gone (killed, crashed), the
    // worker is reparented, and it leaves at once rather than when its lease lapses.
    let parent = getppid()
    while true {
      try? await Task.sleep(for: .milliseconds(500))
      if getppid() != parent {
        options.log("the driver process is gone: exiting")
        exitWorkerProcess(1)
      }
    }
  }
}

extension ClusterSecret {
  /// The secret the environment gives a worker: `BIGMACHINE_SECRET` (hex), else the file
  /// `BIGMACHINE_SECRET_FILE` names; nil when neither is set. Both variables are removed from
  /// this process's environment once read, so that the programs a service starts do not
  /// inherit the secret.
  /// - Throws: a fatal `configuration` error for malformed hex, or for a file that cannot be
  ///   read or that others may read (see ``read(fromFile:)``).
  public static func fromEnvironment() throws -> ClusterSecret? {
    let hex = WorkerEnvironment.value(WorkerEnvironment.secret)
    let file = WorkerEnvironment.value(WorkerEnvironment.secretFile)
    unsetenv(WorkerEnvironment.secret)
    unsetenv(WorkerEnvironment.secretFile)
    if let hex { return try ClusterSecret(hex: hex) }
    if let file { return try ClusterSecret.read(fromFile: file) }
    return nil
  }
}

extension Bigmachine {
  /// The `worker` entry point of ``HostsSystem``: dials the driver at `driver`
  /// (`host:port`), proves `secret`, and serves the driver's calls with `services`
  /// installed on request. Never returns: the process exits when the driver shuts it down,
  /// when the connection is lost, or when its lease lapses. Throws a fatal `configuration`
  /// error for a bad address, and the dial's or handshake's error if the driver cannot be
  /// reached or refuses this worker.
  public static func worker(
    driver: String, secret: ClusterSecret, services: [any Service.Type], options: Options = Options()
  ) async throws -> Never {
    try await worker(
      driver: driver, secret: secret, services: ServiceTypes(services), options: options, leaseMillis: 120_000,
      maxprocs: availableProcessors())
  }

  static func worker(
    driver: String, secret: ClusterSecret, services: ServiceTypes, options: Options, leaseMillis: Int64, maxprocs: Int
  ) async throws -> Never {
    guard let (host, port) = splitHostPort(driver) else {
      throw BigmachineError.fatal(
        address: driver, kind: .configuration, message: "the driver address is not host:port or [ipv6]:port")
    }
    let (runtime, config) = try await startRuntime(
      types: services, options: options, secret: secret, leaseMillis: leaseMillis, maxprocs: maxprocs)
    // Peers stream bulk data from each other directly: listen for them, on every interface,
    // and tell the driver where (the address this host reaches the driver from).
    let listener = try await listen(host: options.peerListenHost, port: 0, config: config) { _ in }
    let advertised = options.peerAdvertiseHost ?? localAddress(toward: host, port: port)
    if let advertised, let peerPort = listener.localAddress?.port {
      runtime.peerAddress.withLockedValue { $0 = joinHostPort(advertised, peerPort) }
    } else {
      options.log("cannot tell which address peers reach this worker at: bulk reads from it will fail")
    }
    let connection = try await dial(host: host, port: port, config: config, label: driver)
    connection.onClose { error in
      if runtime.shutdownRequested { exitWorkerProcess(0) }
      options.log("connection to the driver lost (\(error)): exiting")
      exitWorkerProcess(1)
    }
    while true { try? await Task.sleep(for: .seconds(3600)) }
  }
}

/// What a worker process of either system starts with: stdout line-buffered, a runtime that
/// exits the process when it ends, and the configuration it serves and dials its peers with,
/// which proves this binary's fingerprint.
private func startRuntime(
  types: ServiceTypes, options: Bigmachine.Options, secret: ClusterSecret, leaseMillis: Int64, maxprocs: Int
) async throws -> (runtime: WorkerRuntime, config: PeerConfig) {
  setvbuf(stdout, nil, _IOLBF, 0)
  let own = try await BinaryFingerprint.ofSelf()
  let fingerprint = Bootstrap.isBootstrap ? Bootstrap.fingerprintPrefix + own : own
  Bootstrap.removeReceivedBinary()
  Bootstrap.secret.withLockedValue { $0 = secret }
  let runtime = WorkerRuntime(
    types: types, maxprocs: maxprocs, initialLease: .milliseconds(leaseMillis), log: options.log,
    terminate: { status, _ in exitWorkerProcess(status) })
  let named = WorkerEnvironment.value(WorkerEnvironment.protection)
  guard let protection = named.map(FrameProtection.init(rawValue:)) ?? options.protection else {
    throw BigmachineError.fatal(
      address: "", kind: .configuration,
      message:
        "\(WorkerEnvironment.protection) is \(named ?? ""), not one of \(FrameProtection.allCases.map(\.rawValue))")
  }
  let config = runtime.peerConfig(
    secret: secret, binaryFingerprint: fingerprint, applicationFingerprint: options.applicationFingerprint,
    protection: protection)
  return (runtime, config)
}

/// The local address this host sends from toward `host:port` (the route's source address),
/// found by connecting a UDP socket, which sends nothing. Nil if the host does not resolve or
/// has no route.
func localAddress(toward host: String, port: Int) -> String? {
  var hints = addrinfo()
  hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
  var list: UnsafeMutablePointer<addrinfo>?
  guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else { return nil }
  defer { freeaddrinfo(list) }
  var entry: UnsafeMutablePointer<addrinfo>? = first
  while let info = entry {
    defer { entry = info.pointee.ai_next }
    let fd = socket(info.pointee.ai_family, Int32(SOCK_DGRAM.rawValue), 0)
    guard fd >= 0 else { continue }
    defer { close(fd) }
    guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else { continue }
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let named = withUnsafeMutablePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { continue }
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    let family = Int32(storage.ss_family)
    let ok = withUnsafePointer(to: &storage) { raw -> Bool in
      if family == AF_INET {
        return raw.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
          var a = sin.pointee.sin_addr
          return inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil
        }
      }
      return raw.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin in
        var a = sin.pointee.sin6_addr
        return inet_ntop(AF_INET6, &a, &text, socklen_t(text.count)) != nil
      }
    }
    if ok { return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
  }
  return nil
}
