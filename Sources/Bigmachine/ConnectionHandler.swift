import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What one end of a connection needs to authenticate and then serve or call.
struct PeerConfig: Sendable {
  var secret: ClusterSecret
  /// Sent in the hello.
  var binaryFingerprint: String
  /// Sent in the hello; empty when there is none.
  var applicationFingerprint: String
  /// If set, a peer whose binary fingerprint differs is refused.
  var expectedBinaryFingerprint: String?
  /// If set and non-empty, a peer whose application fingerprint differs is refused.
  var expectedApplicationFingerprint: String?
  /// The methods this end serves (none on a driver).
  var methods: (any MethodLookup)?
  /// Called on each lease renewal with the lease in milliseconds; returns health (workers only).
  var onKeepalive: (@Sendable (UInt64) -> Bool)?
  var log: BigmachineLog
  var handshakeTimeout: TimeAmount = .seconds(10)
  /// Where served calls run; nil for the cooperative pool.
  var executor: (any TaskExecutor)? = nil
  /// Whether frames after the handshake are sealed (see `FrameProtection`).
  var protection: FrameProtection = .sealed
  /// Whether a peer whose binary fingerprint says it is a bootstrap is admitted whatever its
  /// binary (a hosts or cluster driver, which then sends it the right one).
  var admitsBootstraps = false
}

/// Runs the handshake on a fresh channel, then hands each frame to its `Connection`.
/// Anything malformed, oversized, unauthenticated or late closes the channel with a logged
/// reason; it never traps.
final class ConnectionHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer

  private let config: PeerConfig
  private let dialer: Bool
  private let label: String
  private let ready: EventLoopPromise<Connection>
  private let parser = WireFrameParser(maxFrame: WireLimits.maxHandshakeFrame)
  private let encoder: WireFrameEncoder
  private var myHello: Hello
  private var myHelloBytes: [UInt8] = []
  private var peerHello: Hello?
  private var peerHelloBytes: [UInt8] = []
  private var connection: Connection?
  private var timeout: Scheduled<Void>?
  private var failed = false

  /// `label` names the peer in logs and errors until it is known better (its address).
  init(
    config: PeerConfig, dialer: Bool, label: String, encoder: WireFrameEncoder, ready: EventLoopPromise<Connection>
  ) {
    self.config = config
    self.dialer = dialer
    self.label = label
    self.encoder = encoder
    self.ready = ready
    myHello = Hello.make(
      dialer: dialer, binaryFingerprint: config.binaryFingerprint,
      applicationFingerprint: config.applicationFingerprint)
  }

  func channelActive(context: ChannelHandlerContext) {
    // Plain frames are asked for only where both ends are on loopback.
    let loopback = [context.channel.remoteAddress, context.channel.localAddress].allSatisfy { $0?.isLoopback == true }
    if config.protection == .loopbackPlain && loopback { myHello.flags |= Hello.plainFlag }
    myHelloBytes = myHello.encode()
    var payload = context.channel.allocator.buffer(capacity: myHelloBytes.count)
    payload.writeBytes(myHelloBytes)
    context.writeAndFlush(NIOAny(WireFrame(kind: .hello, stream: 0, payload: payload)), promise: nil)
    let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
    let limit = config.handshakeTimeout
    timeout = context.eventLoop.scheduleTask(in: limit) {
      let (handler, context) = bound.value
      // A slow or silent peer may be a slow network: temporary, unlike a wrong proof.
      let reason = "handshake not finished within \(limit)"
      handler.fail(context, .network(address: handler.label, reason: reason), reason)
    }
    context.fireChannelActive()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    var input = unwrapInboundIn(data)
    do {
      try parser.parse(&input) { frame in
        guard !failed else { return }
        if let connection {
          try connection.receive(frame)
        } else {
          try handshake(context, frame)
        }
      }
    } catch {
      if connection != nil {
        config.log("closing the connection with \(label): \(error)")
        connection?.close(.fatal(address: label, kind: .protocolViolation, message: "\(error)"))
      } else {
        refuse(context, .authentication, "\(error)")
      }
    }
  }

  private func handshake(_ context: ChannelHandlerContext, _ frame: WireFrame) throws {
    switch frame.kind {
    case .hello:
      guard peerHello == nil else { throw WireViolation.malformed("second hello") }
      let hello = try Hello.decode(frame.payload)
      guard hello.role != myHello.role else { throw WireViolation.malformed("both ends claim the same role") }
      peerHello = hello
      // The proofs cover the bytes as received, not a re-encoding of them.
      peerHelloBytes = Array(frame.payload.readableBytesView)
      if dialer { sendProof(context) }
    case .proof:
      guard let peerHello else { throw WireViolation.malformed("proof before hello") }
      guard
        HandshakeProof.check(
          frame.payload, secret: config.secret, prover: peerHelloBytes, proverRole: peerHello.role,
          verifier: myHelloBytes)
      else {
        // Told, so that a dialer with another secret stops rather than retries. The text is
        // fixed: an unauthenticated refusal's text is never shown.
        if !dialer { sendRefuse(context, "proof refused") }
        refuse(context, .authentication, "the peer's proof is wrong (it does not hold the cluster secret)")
        return
      }
      if !dialer { sendProof(context) }
      protect(peerHello)
      let bootstrap = config.admitsBootstraps && peerHello.binaryFingerprint.hasPrefix(Bootstrap.fingerprintPrefix)
      if let expected = config.expectedBinaryFingerprint, expected != peerHello.binaryFingerprint, !bootstrap {
        let message =
          "binary fingerprint mismatch: this side expects \(expected), \(label) runs \(wireText(peerHello.binaryFingerprint))"
        sendRefuse(context, message)
        refuse(context, .fingerprintMismatch, message)
        return
      }
      if let expected = config.expectedApplicationFingerprint, !expected.isEmpty,
        expected != peerHello.applicationFingerprint
      {
        let message =
          "application fingerprint mismatch: this side expects \(expected), \(label) has \(peerHello.applicationFingerprint.isEmpty ? "none" : wireText(peerHello.applicationFingerprint))"
        sendRefuse(context, message)
        refuse(context, .fingerprintMismatch, message)
        return
      }
      timeout?.cancel()
      parser.maxFrame = WireLimits.maxFrame
      let connection = Connection(
        channel: context.channel, peer: label, dialer: dialer, methods: config.methods,
        onKeepalive: config.onKeepalive, log: config.log, executor: config.executor)
      self.connection = connection
      ready.succeed(connection)
    case .refuse where dialer && peerHello != nil:
      // The acceptor refused this side's proof. Anyone on the path could say so: its text is
      // not shown, and the refusal ends only this dial.
      refuse(context, .authentication, "the peer refused this side's proof (the two hold different cluster secrets)")
    case .refuse:
      // An honest peer refuses otherwise only after both proofs, sealed, as a frame of the
      // connection: this one comes from a peer that proved nothing.
      refuse(context, .authentication, "unauthenticated peer sent refuse")
    default:
      throw WireViolation.malformed("\(frame.kind) frame before authentication")
    }
  }

  private func sendProof(_ context: ChannelHandlerContext) {
    let proof = HandshakeProof.make(
      secret: config.secret, prover: myHelloBytes, proverRole: myHello.role, verifier: peerHelloBytes)
    context.writeAndFlush(
      NIOAny(WireFrame(kind: .proof, stream: 0, payload: ByteBuffer(bytes: proof))), promise: nil)
  }

  /// Both proofs are out and the peer's is good: from here every frame in both directions is
  /// sealed under this connection's keys, unless both hellos asked for plain frames. Runs
  /// between two frames of a parse, so the next frame read is already opened.
  private func protect(_ peerHello: Hello) {
    guard !(myHello.asksForPlainFrames && peerHello.asksForPlainFrames) else { return }
    let keys = FrameKeys(
      secret: config.secret, dialerHello: dialer ? myHelloBytes : peerHelloBytes,
      acceptorHello: dialer ? peerHelloBytes : myHelloBytes)
    encoder.sealer = FrameCipher(key: dialer ? keys.dialerToAcceptor : keys.acceptorToDialer, opens: false)
    parser.opener = FrameCipher(key: dialer ? keys.acceptorToDialer : keys.dialerToAcceptor, opens: true)
  }

  private func sendRefuse(_ context: ChannelHandlerContext, _ message: String) {
    var b = context.channel.allocator.buffer(capacity: message.utf8.count)
    b.writeString(message)
    context.writeAndFlush(NIOAny(WireFrame(kind: .refuse, stream: 0, payload: b)), promise: nil)
  }

  /// Fails the handshake with a fatal error of `kind`: the peer is not one to retry.
  private func refuse(_ context: ChannelHandlerContext, _ kind: BigmachineError.FatalKind, _ reason: String) {
    fail(context, .fatal(address: label, kind: kind, message: reason), reason)
  }

  /// Fails the handshake: logs `reason`, fails `ready` with `error` and closes.
  private func fail(_ context: ChannelHandlerContext, _ error: BigmachineError, _ reason: String) {
    guard !failed, connection == nil else { return }
    failed = true
    timeout?.cancel()
    config.log("refused connection with \(label): \(reason)")
    ready.fail(error)
    context.close(promise: nil)
  }

  func channelInactive(context: ChannelHandlerContext) {
    timeout?.cancel()
    if let connection {
      connection.lost(.network(address: connection.peer, reason: "connection lost"))
    } else if !failed {
      failed = true
      ready.fail(BigmachineError.network(address: label, reason: "connection closed during the handshake"))
    }
    context.fireChannelInactive()
  }

  /// A channel closed before it ever became active (a peer that connected and reset at once,
  /// a dying process) never sees `channelInactive`: the handshake fails here instead.
  func handlerRemoved(context: ChannelHandlerContext) {
    timeout?.cancel()
    guard connection == nil, !failed else { return }
    failed = true
    ready.fail(BigmachineError.network(address: label, reason: "connection closed before the handshake"))
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    if let connection {
      connection.close(.network(address: connection.peer, reason: "\(error)"))
    } else {
      // A socket error (a reset, say) says nothing about the peer's secret: temporary.
      fail(context, .network(address: label, reason: "\(error)"), "\(error)")
    }
  }
}

/// Sets a channel up for the handshake and returns the future authenticated connection.
func configure(
  channel: any Channel, config: PeerConfig, dialer: Bool, label: String
) -> EventLoopFuture<Connection> {
  let ready = channel.eventLoop.makePromise(of: Connection.self)
  do {
    let encoder = WireFrameEncoder()
    try channel.pipeline.syncOperations.addHandlers([
      encoder, ConnectionHandler(config: config, dialer: dialer, label: label, encoder: encoder, ready: ready),
    ])
  } catch {
    ready.fail(error)
  }
  return ready.futureResult
}

/// Dials `host:port` from an event loop of `group` and authenticates. Throws a network error
/// if the dial fails, or the handshake's fatal error.
func dial(
  host: String, port: Int, config: PeerConfig, label: String,
  group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
) async throws -> Connection {
  let box = NIOLockedValueBoxFuture()
  let bootstrap = ClientBootstrap(group: group)
    .channelOption(.socketOption(.so_reuseaddr), value: 1)
    .channelOption(.tcpOption(.tcp_nodelay), value: 1)
    .channelOption(
      .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 65536, maximum: 1 << 20)
    )
    .channelInitializer { channel in
      channel.eventLoop.makeCompletedFuture {
        box.set(configure(channel: channel, config: config, dialer: true, label: label))
      }
    }
  let channel: any Channel
  do {
    channel = try await bootstrap.connect(host: host, port: port).get()
  } catch {
    throw BigmachineError.network(address: label, reason: "cannot connect: \(error)")
  }
  _ = channel
  return try await box.get().get()
}

/// Holds the future a channel initializer made, for the code that started the bootstrap.
final class NIOLockedValueBoxFuture: @unchecked Sendable {
  private var future: EventLoopFuture<Connection>?
  private let lock = NIOLock()
  func set(_ f: EventLoopFuture<Connection>) { lock.withLock { future = f } }
  func get() -> EventLoopFuture<Connection> { lock.withLock { future! } }
}

/// Counts the handshakes under way on one listener, in all and per peer address, so that
/// connections that never authenticate cannot take every descriptor: beyond either cap a new
/// connection is closed as soon as it is accepted. A handshake leaves the count when it
/// succeeds, fails or times out.
final class HandshakeGate: Sendable {
  private struct State {
    var total = 0
    var perAddress: [String: Int] = [:]
    var refusing: Set<String> = []
  }
  private let state = NIOLockedValueBox(State())
  let total: Int
  let perAddress: Int

  init(total: Int = WireLimits.maxPendingHandshakes, perAddress: Int = WireLimits.maxPendingHandshakesPerAddress) {
    self.total = total
    self.perAddress = perAddress
  }

  /// Counts a handshake from `address` in; false (and nothing counted) when a cap is reached.
  /// The first refusal from an address since it was last under its cap is reported as true in
  /// `first`, for one log line rather than one per connection.
  func admit(_ address: String) -> (admitted: Bool, first: Bool) {
    state.withLockedValue { s in
      let mine = s.perAddress[address, default: 0]
      guard s.total < total, mine < perAddress else { return (false, s.refusing.insert(address).inserted) }
      s.total += 1
      s.perAddress[address] = mine + 1
      return (true, false)
    }
  }

  func release(_ address: String) {
    state.withLockedValue { s in
      s.total -= 1
      s.refusing.remove(address)
      let left = s.perAddress[address, default: 1] - 1
      s.perAddress[address] = left == 0 ? nil : left
    }
  }
}

/// Listens on `host:port` (port 0 picks one) on the event loops of `group`; every accepted
/// channel that authenticates is passed to `accepted`. Handshakes under way are capped
/// (`HandshakeGate`). Returns the server channel (its local address tells the port).
func listen(
  host: String, port: Int, config: PeerConfig, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
  accepted: @escaping @Sendable (Connection) -> Void
) async throws -> any Channel {
  let gate = HandshakeGate()
  let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 256)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    .childChannelOption(
      .recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 1024, initial: 65536, maximum: 1 << 20)
    )
    .childChannelInitializer { channel in
      let ip = channel.remoteAddress?.ipAddress ?? "?"
      let label = joinHostPort(ip, channel.remoteAddress?.port ?? 0)
      let (admitted, first) = gate.admit(ip)
      guard admitted else {
        if first {
          config.log(
            "refusing connections from \(ip): \(gate.perAddress) handshakes from it, or \(gate.total) in all, are under way"
          )
        }
        return channel.eventLoop.makeFailedFuture(ChannelError.inputClosed)
      }
      return channel.eventLoop.makeCompletedFuture {
        let handshake = configure(channel: channel, config: config, dialer: false, label: label)
        handshake.whenComplete { _ in gate.release(ip) }
        handshake.whenSuccess { accepted($0) }
      }
    }
  do {
    return try await bootstrap.bind(host: host, port: port).get()
  } catch {
    throw BigmachineError.fatal(address: "\(host):\(port)", kind: .configuration, message: "cannot listen: \(error)")
  }
}

extension SocketAddress {
  /// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
  var isLoopback: Bool {
    guard let ip = ipAddress else { return false }
    return ip.hasPrefix("127.") || ip == "::1" || ip.hasPrefix("::ffff:127.")
  }
}
