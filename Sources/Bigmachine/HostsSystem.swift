import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// Machines on any hosts, started by an outside scheduler or by hand: the driver listens,
/// and each worker dials in with the cluster secret and is handed out to the next
/// ``Bigmachine/start(count:services:)`` in the order workers join.
///
/// Start a worker with the same binary and either the environment
/// `BIGMACHINE_MODE=worker BIGMACHINE_SYSTEM=hosts BIGMACHINE_DRIVER=host:port` plus
/// `BIGMACHINE_SECRET=<hex>` or `BIGMACHINE_SECRET_FILE=<path>`, or a program's own `worker`
/// command that calls ``Bigmachine/worker(driver:secret:services:options:)``. A worker exits
/// when the driver shuts it down, when its connection is lost, or when its lease lapses.
/// Once a worker joins, what it writes to stdout and stderr comes to `output` line by line,
/// prefixed with its address, as a local worker's does.
public final class HostsSystem: MachineProvider, @unchecked Sendable {
  /// Which binary the driver accepts from joining workers.
  public enum FingerprintCheck: Sendable {
    /// The driver's own binary (the usual case: the same build everywhere).
    case sameAsDriver
    /// Exactly this fingerprint (`sha256:` and hex digits).
    case exactly(String)
    /// Any binary (the cluster secret still has to be proven).
    case any

    /// The fingerprint a driver with `driver`'s context expects, nil for any.
    func expected(by driver: DriverContext) async throws -> String? {
      switch self {
      case .sameAsDriver: return try await driver.binaryFingerprint()
      case .exactly(let f): return f
      case .any: return nil
      }
    }
  }

  public let name = "hosts"
  public let keepalive: KeepaliveConfig
  private let host: String
  private let port: Int
  private let check: FingerprintCheck
  private let secretFile: String?
  private let output: MachineOutput
  private let binary: String?

  private struct State {
    var listener: (any Channel)?
    var joined: [Connection] = []
    var waiters: [(id: UInt64, continuation: CheckedContinuation<Connection, any Error>)] = []
    var nextWaiter: UInt64 = 0
  }
  private let state = NIOLockedValueBox(State())

  /// A system that listens on `listen` (`host:port`; port 0 picks one, see ``address``).
  /// If `secretFile` is given, the driver writes the cluster secret there (mode 0600) for
  /// workers to read.
  public init(
    listen: String = "0.0.0.0:0", keepalive: KeepaliveConfig = .standard, fingerprint: FingerprintCheck = .sameAsDriver,
    secretFile: String? = nil, output: MachineOutput = .standardError, binary: String? = nil
  ) {
    let parsed = splitHostPort(listen)
    host = parsed?.host ?? listen
    port = parsed?.port ?? 0
    self.keepalive = keepalive
    check = fingerprint
    self.secretFile = secretFile
    self.output = output
    self.binary = binary
  }

  /// The address workers dial (`host:port`), once ``Bigmachine/start(system:services:options:)`` returned.
  public var address: String? {
    state.withLockedValue { s in s.listener?.localAddress.map { joinHostPort(host, $0.port ?? 0) } }
  }

  /// Workers that have joined and wait to be handed out.
  public var waitingWorkers: Int { state.withLockedValue { $0.joined.count } }

  func prepare(driver: DriverContext) async throws {
    if let secretFile { try driver.secret.write(toFile: secretFile) }
    let config = driver.peerConfig(
      expectedBinaryFingerprint: try await check.expected(by: driver), admitsBootstraps: true)
    let channel = try await listen(host: host, port: port, config: config) { [weak self] connection in
      self?.join(connection)
    }
    state.withLockedValue { $0.listener = channel }
  }

  private func join(_ connection: Connection) {
    let waiter: CheckedContinuation<Connection, any Error>? = state.withLockedValue { s in
      if s.waiters.isEmpty {
        s.joined.append(connection)
        return nil
      }
      return s.waiters.removeFirst().continuation
    }
    waiter?.resume(returning: connection)
  }

  /// The next joined worker whose connection is still open; waits for one. Throws
  /// `CancellationError` if the task is cancelled while it waits.
  private func next() async throws -> Connection {
    while true {
      let id = state.withLockedValue { s -> UInt64 in
        s.nextWaiter += 1
        return s.nextWaiter
      }
      let connection = try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Connection, any Error>) in
          let ready: Result<Connection, any Error>? = state.withLockedValue { s in
            if !s.joined.isEmpty { return .success(s.joined.removeFirst()) }
            if Task.isCancelled { return .failure(CancellationError()) }
            s.waiters.append((id, cont))
            return nil
          }
          if let ready { cont.resume(with: ready) }
        }
      } onCancel: {
        let waiter = state.withLockedValue { s -> CheckedContinuation<Connection, any Error>? in
          guard let i = s.waiters.firstIndex(where: { $0.id == id }) else { return nil }
          return s.waiters.remove(at: i).continuation
        }
        waiter?.resume(throwing: CancellationError())
      }
      if connection.closedError == nil { return connection }
    }
  }

  func launch(count: Int, driver: DriverContext) async throws -> [MachineLaunch] {
    var launches: [MachineLaunch] = []
    while launches.count < count {
      let connection = try await next()
      // The machine is named by where its peers reach it: its listener, not the ephemeral
      // port it dialed from.
      var address = connection.peer
      let info = await describe(connection)
      if info?.bootstrap == true {
        // It joins again, as a worker of this build, once it has the binary.
        await Bootstrap.shipOrDrop(binary, to: connection, log: driver.log)
        continue
      }
      if let peer = info?.peerAddress { address = peer }
      forwardOutput(of: connection, address: address, to: output)
      launches.append(
        MachineLaunch(
          address: address, connect: { connection },
          kill: { connection.close(.network(address: connection.peer, reason: "machine stopped")) },
          finished: { limit in
            // The worker closes its end as it exits.
            let closed = connection.channel.eventLoop.makePromise(of: Void.self)
            connection.channel.closeFuture.cascade(to: closed)
            connection.channel.eventLoop.scheduleTask(in: limit.timeAmount) { closed.succeed(()) }
            try? await closed.futureResult.get()
          }))
    }
    return launches
  }

  func shutdown() async {
    let listener = state.withLockedValue { s -> (any Channel)? in
      defer { s.listener = nil }
      return s.listener
    }
    try? await listener?.close()
    if let secretFile { unlink(secretFile) }
  }
}

/// The description a worker gives of itself (`Supervisor.info`); nil if it gives none.
func describe(_ connection: Connection) async -> MachineDescription? {
  guard let argument = try? Payload.encode(true, allocator: ByteBufferAllocator()),
    let (reply, _) = try? await connection.call(method: "Supervisor.info", argument: argument, input: nil)
  else { return nil }
  return try? Payload.decode(MachineDescription.self, from: reply)
}
