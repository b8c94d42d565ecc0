import NIOConcurrencyHelpers
import NIOCore

/// A worker's connections to other machines of its cluster, for bulk data that should not
/// pass through the driver (a shuffle reading another worker's output).
///
/// A peer is named by the address the driver knows it by (``Machine/address``), which is
/// where it listens. Connections are made on first use, authenticated with the cluster
/// secret both ways like the driver's, and kept for later calls; one that closed is dialed
/// again on the next call.
public final class Peers: Sendable {
  private let config: NIOLockedValueBox<PeerConfig?>
  private let connections = NIOLockedValueBox<[String: Connection]>([:])
  /// Peers the driver declared stopped, and when: calls to them fail at once for a while.
  /// (Not for ever: a later worker on the same host may listen on the same port.)
  private let lost = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])
  static let lostFor: Duration = .seconds(60)

  init() { config = NIOLockedValueBox(nil) }

  /// Set once the worker knows its own secret and fingerprint.
  func configure(_ config: PeerConfig) { self.config.withLockedValue { $0 = config } }

  /// Calls a streaming method on the machine at `address` and returns its reply stream.
  /// Errors as ``Machine/stream(_:_:)``: a network error when the peer cannot be reached
  /// or the connection is lost, a remote error when the method throws.
  public func stream<A: Encodable & Sendable>(_ address: String, _ method: String, _ argument: A) async throws
    -> ByteStream
  {
    let connection = try await connection(to: address)
    let (_, stream) = try await connection.call(
      method: method, argument: try encode(argument, method, address), input: nil)
    guard let stream else {
      throw BigmachineError.fatal(
        address: address, kind: .badArgument, message: "\(method) does not match the call's streaming form")
    }
    return stream
  }

  /// Calls a unary method on the machine at `address`. Errors as ``Machine/call(_:_:returning:)``.
  public func call<A: Encodable & Sendable, R: Decodable & Sendable>(
    _ address: String, _ method: String, _ argument: A, returning: R.Type = R.self
  ) async throws -> R {
    let connection = try await connection(to: address)
    let (reply, _) = try await connection.call(
      method: method, argument: try encode(argument, method, address), input: nil)
    do {
      return try Payload.decode(R.self, from: reply)
    } catch {
      throw BigmachineError.fatal(
        address: address, kind: .badArgument, message: "cannot decode the reply of \(method) as \(R.self): \(error)")
    }
  }

  /// Closes every peer connection.
  func closeAll() {
    let all = connections.withLockedValue { c in
      defer { c = [:] }
      return Array(c.values)
    }
    for c in all { c.close(.network(address: c.peer, reason: "peer connections closed")) }
  }

  /// Forgets the peer at `address`, which the driver declared stopped: its connection is
  /// closed, so calls waiting on it fail now rather than when TCP gives up on a dead host,
  /// and later calls to it fail at once.
  func drop(_ address: String) {
    lost.withLockedValue { $0[address] = .now }
    let dropped = connections.withLockedValue { $0.removeValue(forKey: address) }
    dropped?.close(.network(address: address, reason: "the driver declared the peer stopped"))
  }

  private func connection(to address: String) async throws -> Connection {
    let declared = lost.withLockedValue { lost -> Bool in
      guard let at = lost[address] else { return false }
      if ContinuousClock.now - at < Peers.lostFor { return true }
      lost[address] = nil
      return false
    }
    if declared {
      throw BigmachineError.network(address: address, reason: "the driver declared the peer stopped")
    }
    if let c = connections.withLockedValue({ $0[address] }), c.closedError == nil { return c }
    guard let config = config.withLockedValue({ $0 }) else {
      throw BigmachineError.fatal(address: address, kind: .configuration, message: "this process is not a worker")
    }
    guard let (host, port) = splitHostPort(address) else {
      throw BigmachineError.fatal(
        address: address, kind: .configuration, message: "a peer address is host:port or [ipv6]:port")
    }
    let made = try await dial(host: host, port: port, config: config, label: address)
    // Two calls may dial at once: keep one connection and close the other.
    let (kept, extra): (Connection, Connection?) = connections.withLockedValue { c in
      if let other = c[address], other.closedError == nil { return (other, made) }
      c[address] = made
      return (made, nil)
    }
    extra?.close(.network(address: address, reason: "a second connection to the peer"))
    return kept
  }

  private func encode<A: Encodable>(_ argument: A, _ method: String, _ address: String) throws -> ByteBuffer {
    do {
      return try Payload.encode(argument, allocator: ByteBufferAllocator())
    } catch {
      throw BigmachineError.fatal(
        address: address, kind: .badArgument, message: "cannot encode the argument of \(method): \(error)")
    }
  }
}
