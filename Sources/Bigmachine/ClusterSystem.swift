import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// What a ``WorkerLauncher`` runs to start one worker. The worker dials the driver with the
/// cluster secret, which it reads from a file (mode 0600) that its host must see at the same
/// path: the secret is never on a command line.
public struct WorkerCommand: Sendable {
  /// Names this launch; the worker reports it when it joins.
  public var id: String
  /// The worker binary: the driver's own, unless the system was given another.
  public var executable: String
  /// The worker's arguments after argv[0].
  public var arguments: [String]
  /// Variables the worker needs (`BIGMACHINE_*`), to set on top of whatever environment the
  /// launcher gives it.
  public var environment: [String: String]

  /// `env K=V … executable arguments…`, each word quoted for a POSIX shell: what a launcher
  /// that runs a command line (a shell, ssh, a batch script) runs.
  public var shellCommand: String {
    let assignments = environment.sorted { $0.key < $1.key }.map { shellQuote("\($0.key)=\($0.value)") }
    return (["env"] + assignments + [shellQuote(executable)] + arguments.map(shellQuote)).joined(separator: " ")
  }
}

/// A worker a ``WorkerLauncher`` started: a process, a batch job, a pod.
public protocol LaunchedWorker: Sendable {
  /// Returns once the worker has ended (its process exited, its job or step finished, its
  /// pod went away), saying how: "exit status 1", "slurm job 42 CANCELLED". The system
  /// watches this from launch to shutdown: a worker that ends before it joins fails its
  /// start with this text, and one that ends later is a lost machine.
  func ended() async -> String
  /// Stops the worker if it still runs (kill, `scancel`). Idempotent; it may return before
  /// the worker has ended.
  func stop() async
}

/// Starts workers for a ``ClusterSystem``: the one part of a system that knows the
/// scheduler. Implement it for one Bigmachine does not ship (Kubernetes, a cloud API); the
/// built-in ones, ``CommandLauncher`` (a shell command per worker: ssh, `kubectl run`) and
/// ``SlurmLauncher``, are examples.
public protocol WorkerLauncher: Sendable {
  /// A short name for logs and errors, e.g. `"slurm"`.
  var name: String { get }
  /// Starts one worker running `command`, and returns as soon as it is submitted: joining is
  /// the worker's part. Throws if it cannot be submitted at all.
  func launch(_ command: WorkerCommand) async throws -> any LaunchedWorker
  /// Releases what the launcher holds, after every machine stopped.
  func shutdown() async
}

extension WorkerLauncher {
  public func shutdown() async {}
}

/// Machines started by a ``WorkerLauncher``: the driver listens, the launcher starts each
/// worker (the driver's binary in worker mode, by default), and each worker dials in with
/// the cluster secret and the launch's id. A worker that ends before it joins, or does not
/// join within `startTimeout`, fails its start with the launcher's account of it; one that
/// ends after joining is a lost machine (a session then starts a replacement); at shutdown
/// every worker still running is stopped.
public final class ClusterSystem: MachineProvider, @unchecked Sendable {
  public var name: String { launcher.name }
  public let keepalive: KeepaliveConfig
  private let launcher: any WorkerLauncher
  private let listenHost: String
  private let listenPort: Int
  private let advertise: String?
  private let executable: String?
  private let bootstrap: String?
  private let arguments: [String]
  private let secretFile: String?
  private let startTimeout: Duration
  private let check: HostsSystem.FingerprintCheck
  private let output: MachineOutput

  private enum Pending {
    case waiting(CheckedContinuation<(Connection, MachineDescription), any Error>)
    case joined(Connection, MachineDescription)
    case expected
    case failed(BigmachineError)
  }

  private struct State {
    var listener: (any Channel)?
    var secretPath: String?
    var pending: [String: Pending] = [:]
    var launched: [String: any LaunchedWorker] = [:]
    var next = 0
    var log: BigmachineLog = .discard
  }
  private let state = NIOLockedValueBox(State())

  /// A system whose workers `launcher` starts.
  /// - Parameters:
  ///   - listen: where the driver listens for its workers (`host:port`, `[ipv6]:port`; port
  ///     0 picks one).
  ///   - advertise: the host workers dial; nil for the listen host, or this host's name when
  ///     listening on every interface.
  ///   - executable: the worker binary as the workers' hosts see it; nil for this process's
  ///     own binary (its real path: hosts that share the file system find it there).
  ///   - bootstrap: a bootstrap's path on the workers' hosts (any build of a program that can
  ///     join, such as `bigslice`), or nil. When given, each worker starts from it and
  ///     receives the worker binary over its connection, checked against its SHA-256: the
  ///     hosts need not share the build.
  ///   - arguments: the worker's arguments after argv[0]; nil passes the driver's own.
  ///   - secretFile: where the driver writes the secret (mode 0600) for the workers to read;
  ///     nil for `~/.bigmachine/<pid>-<random>.secret`. It must be at this path on every
  ///     worker host (a shared home directory, say). Removed at shutdown.
  ///   - startTimeout: how long a worker may take to join (batch queues can be slow).
  ///   - output: where each worker's stdout and stderr go once it has joined, line by line,
  ///     prefixed with its address.
  public init(
    launcher: any WorkerLauncher, listen: String = "0.0.0.0:0", advertise: String? = nil, executable: String? = nil,
    bootstrap: String? = nil, arguments: [String]? = nil, secretFile: String? = nil,
    keepalive: KeepaliveConfig = .standard,
    startTimeout: Duration = .seconds(600), fingerprint: HostsSystem.FingerprintCheck = .sameAsDriver,
    output: MachineOutput = .standardError
  ) {
    self.launcher = launcher
    let parsed = splitHostPort(listen)
    listenHost = parsed?.host ?? listen
    listenPort = parsed?.port ?? 0
    self.advertise = advertise
    self.executable = executable
    self.bootstrap = bootstrap
    self.arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
    self.secretFile = secretFile
    self.keepalive = keepalive
    self.startTimeout = startTimeout
    check = fingerprint
    self.output = output
  }

  /// The address workers dial (`host:port`), once ``Bigmachine/start(system:services:options:)`` returned.
  public var address: String? {
    state.withLockedValue { s in
      s.listener?.localAddress.map { joinHostPort(advertisedHost, $0.port ?? 0) }
    }
  }

  private var advertisedHost: String {
    if let advertise { return advertise }
    if listenHost != "0.0.0.0" && listenHost != "::" { return listenHost }
    var name = [UInt8](repeating: 0, count: 256)
    guard gethostname(&name, name.count - 1) == 0 else { return "localhost" }
    return String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
  }

  func prepare(driver: DriverContext) async throws {
    let path = try secretFile ?? Self.defaultSecretPath()
    try driver.secret.write(toFile: path)
    let config = driver.peerConfig(
      expectedBinaryFingerprint: try await check.expected(by: driver), admitsBootstraps: true)
    let channel = try await listen(host: listenHost, port: listenPort, config: config) { [weak self] connection in
      Task { await self?.join(connection) }
    }
    state.withLockedValue { s in
      s.listener = channel
      s.secretPath = path
      s.log = driver.log
    }
  }

  private static func defaultSecretPath() throws -> String {
    let home = getenv("HOME").map { String(cString: $0) } ?? "/tmp"
    let dir = home + "/.bigmachine"
    if mkdir(dir, 0o700) != 0 && errno != EEXIST {
      throw BigmachineError.fatal(
        address: "", kind: .configuration, message: "cannot make \(dir): \(String(cString: strerror(errno)))")
    }
    return "\(dir)/\(getpid())-\(UInt64.random(in: 0...UInt64.max)).secret"
  }

  /// A worker dialed in: it is handed to the launch it names, or closed if it names none.
  private func join(_ connection: Connection) async {
    let info = await describe(connection)
    if info?.bootstrap == true {
      // Its launch waits on: the process joins again, as a worker of this build.
      await Bootstrap.shipOrDrop(executable, to: connection, log: state.withLockedValue { $0.log })
      return
    }
    guard let info, let id = info.launchID else {
      connection.close(.fatal(address: connection.peer, kind: .startFailed, message: "a worker with no launch joined"))
      return
    }
    let (waiter, known, log): (CheckedContinuation<(Connection, MachineDescription), any Error>?, Bool, BigmachineLog) =
      state.withLockedValue { s in
        switch s.pending[id] {
        case .waiting(let c)?:
          s.pending[id] = nil
          return (c, true, s.log)
        case .expected?:
          s.pending[id] = .joined(connection, info)
          return (nil, true, s.log)
        case .joined?, .failed?, nil:
          return (nil, false, s.log)
        }
      }
    guard known else {
      log("closing a worker from \(connection.peer) that names launch \(wireText(id)), which is not waited for")
      connection.close(.fatal(address: connection.peer, kind: .startFailed, message: "unknown launch \(id)"))
      return
    }
    waiter?.resume(returning: (connection, info))
  }

  /// Waits for launch `id` to join; throws the error `fail` gave it, before or during the wait.
  private func joined(_ id: String) async throws -> (Connection, MachineDescription) {
    try await withCheckedThrowingContinuation { continuation in
      let ready: Result<(Connection, MachineDescription), any Error>? = state.withLockedValue { s in
        switch s.pending[id] {
        case .joined(let c, let info)?:
          s.pending[id] = nil
          return .success((c, info))
        case .failed(let error)?:
          s.pending[id] = nil
          return .failure(error)
        default:
          s.pending[id] = .waiting(continuation)
          return nil
        }
      }
      if let ready { continuation.resume(with: ready) }
    }
  }

  /// Fails the wait for launch `id`, if it still waits.
  private func fail(_ id: String, _ error: BigmachineError) {
    let waiter = state.withLockedValue { s -> CheckedContinuation<(Connection, MachineDescription), any Error>? in
      switch s.pending[id] {
      case .waiting(let c)?:
        s.pending[id] = nil
        return c
      case .expected?:
        s.pending[id] = .failed(error)
        return nil
      default:
        return nil
      }
    }
    waiter?.resume(throwing: error)
  }

  func launch(count: Int, driver: DriverContext) async throws -> [MachineLaunch] {
    guard let listener = state.withLockedValue({ $0.listener }), let port = listener.localAddress?.port,
      let secretPath = state.withLockedValue({ $0.secretPath })
    else {
      throw BigmachineError.fatal(address: "", kind: .configuration, message: "the \(name) system is not prepared")
    }
    let binary = try executable ?? Self.ownExecutable()
    var started: [(String, any LaunchedWorker)] = []
    do {
      for _ in 0..<count {
        let id = state.withLockedValue { s -> String in
          s.next += 1
          let id = "\(launcher.name)-\(getpid())-\(s.next)"
          s.pending[id] = .expected
          return id
        }
        var env: [String: String] = [
          WorkerEnvironment.mode: "worker", WorkerEnvironment.system: "hosts",
          WorkerEnvironment.driver: joinHostPort(advertisedHost, port), WorkerEnvironment.secretFile: secretPath,
          WorkerEnvironment.launchID: id, WorkerEnvironment.protection: driver.protection.rawValue,
          WorkerEnvironment.lease: String(keepalive.lease.milliseconds * 2 + 10_000),
        ]
        if let fp = WorkerEnvironment.value(BinaryFingerprint.overrideVariable) {
          env[BinaryFingerprint.overrideVariable] = fp
        }
        if bootstrap != nil { env[WorkerEnvironment.bootstrap] = "1" }
        let command = WorkerCommand(
          id: id, executable: bootstrap ?? binary, arguments: bootstrap == nil ? arguments : [], environment: env)
        let worker = try await launcher.launch(command)
        state.withLockedValue { $0.launched[id] = worker }
        started.append((id, worker))
      }
      return try await withThrowingTaskGroup(of: (Int, MachineLaunch).self) { group in
        for (index, (id, worker)) in started.enumerated() {
          group.addTask { (index, try await self.awaitJoin(id, worker)) }
        }
        var out: [MachineLaunch?] = Array(repeating: nil, count: started.count)
        for try await (index, launch) in group { out[index] = launch }
        return out.map { $0! }
      }
    } catch {
      for (id, worker) in started {
        fail(id, .fatal(address: id, kind: .startFailed, message: "another worker of the launch failed"))
        await worker.stop()
      }
      throw error
    }
  }

  /// Waits for the worker of launch `id` to join, to end, or to run out of time.
  private func awaitJoin(_ id: String, _ worker: any LaunchedWorker) async throws -> MachineLaunch {
    let limit = startTimeout
    let launcherName = launcher.name
    let ending = Task {
      let how = await worker.ended()
      self.fail(
        id,
        .fatal(address: id, kind: .startFailed, message: "the \(launcherName) worker ended before it joined: \(how)"))
      return how
    }
    let timer = Task {
      try await Task.sleep(for: limit)
      self.fail(
        id, .fatal(address: id, kind: .startFailed, message: "the \(launcherName) worker did not join within \(limit)"))
    }
    defer { timer.cancel() }
    let (connection, info) = try await joined(id)
    let address = info.peerAddress ?? connection.peer
    forwardOutput(of: connection, address: address, to: output)
    // From here the worker's end is a lost machine.
    Task {
      let how = await ending.value
      connection.close(.network(address: address, reason: "the \(launcherName) worker ended: \(how)"))
    }
    return MachineLaunch(
      address: address, connect: { connection },
      kill: {
        connection.close(.network(address: address, reason: "machine stopped"))
        Task { await worker.stop() }
      },
      finished: { limit in
        let closed = connection.channel.eventLoop.makePromise(of: Void.self)
        connection.channel.closeFuture.cascade(to: closed)
        connection.channel.eventLoop.scheduleTask(in: limit.timeAmount) { closed.succeed(()) }
        try? await closed.futureResult.get()
      })
  }

  /// This process's binary, by its real path (what another process on a shared file system
  /// can run).
  static func ownExecutable() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else {
      throw BigmachineError.fatal(address: "", kind: .configuration, message: "cannot find this process's binary")
    }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  func shutdown() async {
    let (listener, path, workers) = state.withLockedValue { s in
      defer {
        s.listener = nil
        s.launched = [:]
      }
      return (s.listener, s.secretPath, Array(s.launched.values))
    }
    for worker in workers { await worker.stop() }
    await launcher.shutdown()
    try? await listener?.close()
    if let path { unlink(path) }
  }
}

/// `s` quoted for a POSIX shell: as is when it holds only safe characters, else in single
/// quotes with each single quote written as '\''.
func shellQuote(_ s: String) -> String {
  let safe = s.utf8.allSatisfy { c in
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
      || "@%+=:,./_-".utf8.contains(c)
  }
  if safe && !s.isEmpty { return s }
  return "'" + s.split(separator: "'", omittingEmptySubsequences: false).joined(separator: "'\\''") + "'"
}
