import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// Machines that are child processes on this host, each re-running the driver's binary with
/// `BIGMACHINE_MODE=worker` so that its ``Bigmachine/start(system:services:options:)`` serves.
///
/// A worker listens on 127.0.0.1 only, on a port it picks and reports on its stdout; the
/// driver dials it and both prove the cluster secret (read by the worker from a 0600 file
/// named in its environment). Workers inherit the driver's environment and arguments. Every
/// line a worker writes to stdout or stderr reaches ``MachineOutput`` prefixed with its
/// address, up to its last line: at shutdown the driver waits for the worker's end marker
/// (or end of file) on both streams.
public final class LocalSystem: MachineProvider, @unchecked Sendable {
  public let name = "local"
  public let keepalive: KeepaliveConfig
  private let executable: String?
  private let arguments: [String]
  private let environment: [String: String]
  private let maxprocs: Int
  private let output: MachineOutput
  private let startTimeout: Duration
  private let secretFile = NIOLockedValueBox<String?>(nil)

  /// A local system.
  /// - Parameters:
  ///   - executable: the worker binary; nil (the usual case) re-runs this process's own
  ///     binary (`/proc/self/exe`). The driver expects the worker's fingerprint to be this
  ///     file's.
  ///   - arguments: the worker's arguments after argv[0]; nil passes the driver's own.
  ///   - environment: variables added to the driver's environment for the workers.
  ///   - keepalive: lease and renewal timing.
  ///   - maxprocs: processors each machine reports (default 1, as in the original).
  ///   - output: where the workers' prefixed output lines go (default: standard error).
  ///   - startTimeout: how long a worker may take to report its port.
  public init(
    executable: String? = nil, arguments: [String]? = nil, environment: [String: String] = [:],
    keepalive: KeepaliveConfig = .standard, maxprocs: Int = 1, output: MachineOutput = .standardError,
    startTimeout: Duration = .seconds(60)
  ) {
    self.executable = executable
    self.arguments = arguments ?? Array(CommandLine.arguments.dropFirst())
    self.environment = environment
    self.keepalive = keepalive
    self.maxprocs = maxprocs
    self.output = output
    self.startTimeout = startTimeout
  }

  func launch(count: Int, driver: DriverContext) async throws -> [MachineLaunch] {
    let path = executable ?? "/proc/self/exe"
    let expected: String
    if let executable {
      expected = try await BinaryFingerprint.ofFile(executable)
    } else {
      expected = try await driver.binaryFingerprint()
    }
    let secretPath = try secretPath(driver.secret)
    var env = processEnvironment()
    for (k, v) in environment { env[k] = v }
    env[WorkerEnvironment.mode] = "worker"
    env[WorkerEnvironment.system] = "local"
    env[WorkerEnvironment.secretFile] = secretPath
    env[WorkerEnvironment.secret] = nil
    env[WorkerEnvironment.lease] = String(keepalive.lease.milliseconds * 2 + 10_000)
    env[WorkerEnvironment.maxprocs] = String(maxprocs)
    env[WorkerEnvironment.protection] = driver.protection.rawValue
    let config = driver.peerConfig(expectedBinaryFingerprint: expected)

    var launches: [MachineLaunch] = []
    do {
      for _ in 0..<count {
        launches.append(try await launchOne(path: path, env: env, config: config))
      }
    } catch {
      for l in launches { l.kill() }
      throw error
    }
    return launches
  }

  private func launchOne(path: String, env: [String: String], config: PeerConfig) async throws -> MachineLaunch {
    let child = try ChildProcess.spawn(executable: path, arguments: arguments, environment: env)
    let prefix = NIOLockedValueBox("pid \(child.pid)")
    let recent = NIOLockedValueBox<[String]>([])
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let listening = loop.makePromise(of: String.self)
    let out = OutputForwarder.start(
      fd: child.stdout, prefix: prefix, output: output, recent: recent,
      onListening: { address in
        prefix.withLockedValue { $0 = address }
        listening.succeed(address)
      })
    let err = OutputForwarder.start(fd: child.stderr, prefix: prefix, output: output, recent: recent, onListening: nil)
    let finished = out.and(err).map { _ in () }
    // Reap as soon as both pipes are done, whether the worker exited or was killed.
    finished.whenComplete { _ in Task(executorPreference: ThreadPool.shared) { await child.reap() } }
    // A worker that exits before it listens fails the launch with its last words.
    finished.whenComplete { _ in
      listening.fail(
        BigmachineError.fatal(
          address: "pid \(child.pid)", kind: .startFailed,
          message:
            "the worker exited before it listened; its last lines: \(recent.withLockedValue { $0 }.joined(separator: " | "))"
        ))
    }
    let timeout = loop.scheduleTask(in: startTimeout.timeAmount) {
      listening.fail(
        BigmachineError.fatal(
          address: "pid \(child.pid)", kind: .startFailed,
          message: "the worker did not listen within \(self.startTimeout)"))
    }
    let address: String
    do {
      address = try await listening.futureResult.get()
      timeout.cancel()
    } catch {
      child.kill()
      throw error
    }
    guard let port = splitHostPort(address)?.port else {
      child.kill()
      throw BigmachineError.fatal(address: address, kind: .startFailed, message: "the worker reported a bad address")
    }
    return MachineLaunch(
      address: address,
      connect: { try await dial(host: "127.0.0.1", port: port, config: config, label: address) },
      kill: { child.kill() },
      finished: { limit in
        let done = loop.makePromise(of: Void.self)
        finished.cascade(to: done)
        loop.scheduleTask(in: limit.timeAmount) { done.succeed(()) }
        try? await done.futureResult.get()
        child.kill()
        await child.reap()
      })
  }

  func shutdown() async {
    if let path = secretFile.withLockedValue({ $0 }) { unlink(path) }
  }

  /// The 0600 file holding the secret, written on first use.
  private func secretPath(_ secret: ClusterSecret) throws -> String {
    try secretFile.withLockedValue { path in
      if let path { return path }
      let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
      let p = "\(dir)/bigmachine-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).secret"
      try secret.write(toFile: p)
      path = p
      return p
    }
  }
}

/// This process's environment as a dictionary, as it is now (Foundation's `ProcessInfo` keeps
/// the one it found at startup).
package func processEnvironment() -> [String: String] {
  var env: [String: String] = [:]
  var p = environ
  while let entry = p.pointee {
    let s = String(cString: entry)
    if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
    p += 1
  }
  return env
}
