import NIOConcurrencyHelpers
import NIOCore

/// Machines that are servers inside this process, reached over loopback TCP with the full
/// wire protocol and handshake: for tests. ``kill(_:)`` makes one vanish as abruptly as a
/// killed process (its listener and connections close; its lease stops).
public final class InProcessSystem: MachineProvider, @unchecked Sendable {
  public let name = "inProcess"
  public let keepalive: KeepaliveConfig
  private let maxprocs: Int
  /// How long a machine's server waits for a peer to finish the handshake (tests shorten it).
  var handshakeTimeout: TimeAmount = .seconds(10)
  private let servers = NIOLockedValueBox<[String: Server]>([:])

  private final class Server: @unchecked Sendable {
    let runtime: WorkerRuntime
    let listener = NIOLockedValueBox<(any Channel)?>(nil)
    let connections = NIOLockedValueBox<[Connection]>([])
    let dead = NIOLockedValueBox(false)

    init(runtime: WorkerRuntime) { self.runtime = runtime }

    func kill() {
      guard
        !dead.withLockedValue({ d in
          defer { d = true }
          return d
        })
      else { return }
      runtime.stopLease()
      listener.withLockedValue { $0 }?.close(promise: nil)
      for c in connections.withLockedValue({ $0 }) {
        c.close(.network(address: c.peer, reason: "machine killed"))
      }
    }
  }

  /// A system whose machines report `maxprocs` processors and are kept alive as `keepalive` says.
  public init(keepalive: KeepaliveConfig = .standard, maxprocs: Int = 1) {
    self.keepalive = keepalive
    self.maxprocs = maxprocs
  }

  /// Kills `machine` abruptly: its server closes, so its calls fail and the driver marks it
  /// stopped. Does nothing to a machine of another system.
  public func kill(_ machine: Machine) {
    servers.withLockedValue { $0[machine.address] }?.kill()
  }

  func launch(count: Int, driver: DriverContext) async throws -> [MachineLaunch] {
    var launches: [MachineLaunch] = []
    for _ in 0..<count {
      let holder = NIOLockedValueBox<Server?>(nil)
      let runtime = WorkerRuntime(
        // An in-process machine cannot outlive its driver (it is the same process), so its
        // first lease only has to outlast a driver whose tasks are starved (a cooperative
        // pool held by synchronous work) between the launch and the first renewal.
        types: driver.types, maxprocs: maxprocs, initialLease: keepalive.lease.timeAmount * 2 + .seconds(600),
        log: driver.log, terminate: { _, _ in holder.withLockedValue { $0 }?.kill() })
      let server = Server(runtime: runtime)
      holder.withLockedValue { $0 = server }
      let fingerprint = "in-process"
      var config = runtime.peerConfig(
        secret: driver.secret, binaryFingerprint: fingerprint, applicationFingerprint: driver.applicationFingerprint,
        protection: driver.protection)
      config.handshakeTimeout = handshakeTimeout
      // The driver may block pool threads waiting for these machines (a synchronous API):
      // their services must not need the pool.
      config.executor = ThreadPool.shared
      let channel = try await listen(host: "127.0.0.1", port: 0, config: config) { connection in
        server.connections.withLockedValue { $0.append(connection) }
        if server.dead.withLockedValue({ $0 }) {
          connection.close(.network(address: connection.peer, reason: "machine killed"))
        }
      }
      server.listener.withLockedValue { $0 = channel }
      let port = channel.localAddress?.port ?? 0
      let address = "127.0.0.1:\(port)"
      servers.withLockedValue { $0[address] = server }
      let driverConfig = driver.peerConfig(expectedBinaryFingerprint: fingerprint)
      launches.append(
        MachineLaunch(
          address: address,
          connect: { try await dial(host: "127.0.0.1", port: port, config: driverConfig, label: address) },
          kill: { server.kill() },
          finished: { _ in }))
    }
    return launches
  }

  func shutdown() async {
    for server in servers.withLockedValue({ $0.values }) { server.kill() }
  }
}
