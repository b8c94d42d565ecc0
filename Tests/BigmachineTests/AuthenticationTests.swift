import BigmachineTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import Bigmachine

#if canImport(Glibc)
  import Glibc
#endif

/// Connects to `port`, writes `bytes`, and returns whether the server closed the connection
/// within `seconds` (generous: a full test run keeps both cores busy with other suites, and a
/// close in time is what passes, so the wait costs nothing then).
func serverCloses(port: Int, after bytes: [UInt8], within seconds: Int64 = 30) async throws -> Bool {
  try await onOwnThread { try blockingServerCloses(port: port, after: bytes, within: seconds).closed }
}

/// Runs `body` on a plain thread of its own and returns what it returns: what is measured is
/// the server, not how soon a busy event loop or pool of this process gets to the client's end.
func onOwnThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
  try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
    ThreadPool.detach { continuation.resume(with: Result { try body() }) }
  }
}

/// `serverCloses` on the calling thread, with the client's local port (the server's logs
/// name the peer by it).
private func blockingServerCloses(
  port: Int, after bytes: [UInt8], within seconds: Int64
) throws -> (closed: Bool, localPort: Int) {
  let fd = connectLoopback(port: port)
  guard fd >= 0 else { throw SocketFailure(call: "connect", errno: errno) }
  defer { close(fd) }
  var local = sockaddr_in()
  var length = socklen_t(MemoryLayout<sockaddr_in>.size)
  let named = withUnsafeMutablePointer(to: &local) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
  }
  guard named == 0 else { throw SocketFailure(call: "getsockname", errno: errno) }
  let localPort = Int(UInt16(bigEndian: local.sin_port))
  var sent = 0
  while sent < bytes.count {
    let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    // The server closed first: this thread was starved past the handshake timeout.
    if n < 0 { return (errno == EPIPE || errno == ECONNRESET, localPort) }
    sent += n
  }
  let deadline = ContinuousClock.now + .seconds(seconds)
  var buffer = [UInt8](repeating: 0, count: 4096)
  while ContinuousClock.now < deadline {
    var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    let left = max(1, Int32((deadline - ContinuousClock.now) / .milliseconds(1)))
    guard poll(&poller, 1, left) > 0 else { continue }
    let n = recv(fd, &buffer, buffer.count, 0)
    // 0: the server closed; an error: it reset the connection. Bytes (its hello) go on.
    if n <= 0 { return (true, localPort) }
  }
  return (false, localPort)
}

/// A socket call that failed in a test's own client.
struct SocketFailure: Error {
  let call: String
  let errno: Int32
}

/// A loopback TCP server that only hands each accepted channel to `accepted`: it speaks no
/// protocol unless `accepted` writes raw bytes. Returns the server channel and its port.
func rawServer(_ accepted: @escaping @Sendable (any Channel) -> Void) async throws -> (any Channel, Int) {
  let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
    .childChannelInitializer { channel in
      accepted(channel)
      return channel.eventLoop.makeSucceededVoidFuture()
    }
    .bind(host: "127.0.0.1", port: 0).get()
  return (server, server.localAddress!.port!)
}

/// The error a dial to `port` with a random secret ends in; nil if it succeeds.
func dialError(port: Int, handshakeTimeout: TimeAmount = .seconds(10)) async -> (any Error)? {
  var config = PeerConfig(
    secret: .random(), binaryFingerprint: "x", applicationFingerprint: "", methods: nil, onKeepalive: nil,
    log: .discard)
  config.handshakeTimeout = handshakeTimeout
  do {
    _ = try await dial(host: "127.0.0.1", port: port, config: config, label: "127.0.0.1:\(port)")
    return nil
  } catch {
    return error
  }
}

/// A frame as the wire carries it.
func frameBytes(_ kind: UInt8, stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
  let length = UInt32(5 + payload.count)
  var b: [UInt8] = [
    UInt8(length >> 24), UInt8(length >> 16 & 255), UInt8(length >> 8 & 255), UInt8(length & 255), kind,
  ]
  b += [UInt8(stream >> 24), UInt8(stream >> 16 & 255), UInt8(stream >> 8 & 255), UInt8(stream & 255)]
  return b + payload
}

@Suite struct AuthenticationTests {
  @Test func peersWithoutTheSecretAreRefusedAndTheServerKeepsServing() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let port = Int(m.address.split(separator: ":").last!)!

    // No handshake at all: a call frame straight away.
    let call = CallHeader(method: "Test.echo", flags: 0, argument: ByteBuffer(bytes: Array("\"x\"".utf8)))
      .encode(allocator: ByteBufferAllocator())
    #expect(try await serverCloses(port: port, after: frameBytes(4, stream: 1, Array(call.readableBytesView))))
    #expect(try await m.call("Test.echo", "1", returning: String.self) == "m:1")

    // A full handshake with the wrong secret: both ends refuse.
    let wrong = PeerConfig(
      secret: .random(), binaryFingerprint: "x", applicationFingerprint: "", methods: nil, onKeepalive: nil,
      log: .discard)
    do {
      _ = try await dial(host: "127.0.0.1", port: port, config: wrong, label: m.address)
      Issue.record("a peer with the wrong secret was accepted")
    } catch let error as BigmachineError {
      #expect(!error.isTemporary)
    }
    #expect(try await m.call("Test.echo", "2", returning: String.self) == "m:2")

    // Random bytes.
    var rng = SystemRandomNumberGenerator()
    let noise = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
    #expect(try await serverCloses(port: port, after: noise))
    #expect(try await m.call("Test.echo", "3", returning: String.self) == "m:3")

    // A hello whose proof is garbage.
    let hello = Hello.make(dialer: true, binaryFingerprint: "x", applicationFingerprint: "").encode()
    let junkProof = [UInt8](repeating: 7, count: 32)
    #expect(
      try await serverCloses(port: port, after: frameBytes(1, stream: 0, hello) + frameBytes(2, stream: 0, junkProof)))
    #expect(try await m.call("Test.echo", "4", returning: String.self) == "m:4")

    // Each refusal was logged with its reason.
    #expect(await eventually(within: 5) { lines.count(containing: "refused connection") >= 4 })
    #expect(lines.all.contains { $0.contains("call frame before authentication") })
    #expect(lines.all.contains { $0.contains("does not hold the cluster secret") })
    await b.shutdown()
  }

  @Test func aPeerThatNeverFinishesTheHandshakeIsDropped() async throws {
    // A listener of its own, on an event loop of its own: only the silent peer connects to
    // it, so the log line it waits for cannot be another connection's (a driver's own
    // handshake timing out on a loaded machine says the same words), and its timer does not
    // wait behind the rest of the suite (in two full CI runs at the suite's start, a close on
    // the shared loops took over 10 s, and this peer's drop over 60 s).
    let lines = LogLines()
    let config = PeerConfig(
      secret: .random(), binaryFingerprint: "x", applicationFingerprint: "", methods: nil, onKeepalive: nil,
      log: lines.log, handshakeTimeout: .seconds(2))
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { group.shutdownGracefully { _ in } }
    let listener = try await listen(host: "127.0.0.1", port: 0, config: config, group: group) { _ in }
    let port = try #require(listener.localAddress?.port)
    // Connects and says nothing: no hello, no proof. The server must drop it, saying why.
    let (closed, localPort) = try await onOwnThread { try blockingServerCloses(port: port, after: [], within: 60) }
    #expect(closed)
    #expect(
      await eventually(within: 10) {
        lines.all.contains { $0.contains("127.0.0.1:\(localPort): handshake not finished within") }
      })
    // It still serves a peer that finishes the handshake.
    let connection = try await dial(host: "127.0.0.1", port: port, config: config, label: "listener", group: group)
    connection.close(.fatal(address: "listener", kind: .machineStopped, message: "test over"))
    try await listener.close()
  }

  @Test func anOversizedOrMalformedFrameClosesOnlyThatConnection() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let port = Int(m.address.split(separator: ":").last!)!
    // A length of 4 GiB, a length shorter than the header, an unknown kind.
    #expect(try await serverCloses(port: port, after: [255, 255, 255, 255, 4, 0, 0, 0, 1]))
    #expect(try await serverCloses(port: port, after: [0, 0, 0, 2, 4, 0, 0, 0, 1]))
    #expect(try await serverCloses(port: port, after: frameBytes(99, stream: 0, [1, 2, 3])))
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    #expect(lines.all.contains { $0.contains("exceeds the limit") })
    #expect(lines.all.contains { $0.contains("unknown frame kind 99") })
    await b.shutdown()
  }

  @Test func theFrameParserChecksEveryLengthAndSurvivesAnySplit() throws {
    // Frames survive being cut at every byte boundary. Data may arrive in pieces (stream
    // bytes have no boundaries); every other frame arrives whole.
    let frames =
      frameBytes(6, stream: 3, Array(repeating: 9, count: 300))
      + frameBytes(5, stream: 3, Array(repeating: 4, count: 200))
      + frameBytes(8, stream: 5, [])
    for cut in 0...frames.count {
      let parser = WireFrameParser(maxFrame: 1024)
      var data: [UInt8] = []
      var others: [(FrameKind, UInt32, [UInt8])] = []
      for piece in [Array(frames[..<cut]), Array(frames[cut...])] {
        var buffer = ByteBuffer(bytes: piece)
        try parser.parse(&buffer) { frame in
          if frame.kind == .data {
            #expect(frame.stream == 3 && others.isEmpty)
            #expect(frame.payload.readableBytes > 0, "an empty data piece at cut \(cut)")
            data += frame.payload.readableBytesView
          } else {
            others.append((frame.kind, frame.stream, Array(frame.payload.readableBytesView)))
          }
        }
      }
      #expect(data == Array(repeating: 9, count: 300))
      #expect(others.count == 2)
      #expect(others.first.map { $0.0 == .reply && $0.1 == 3 && $0.2 == Array(repeating: 4, count: 200) } == true)
      #expect(others.last.map { $0.0 == .cancel && $0.1 == 5 && $0.2.isEmpty } == true)
    }
    // A frame over the limit is refused from its first four bytes, before any payload.
    let parser = WireFrameParser(maxFrame: 1024)
    var header = ByteBuffer(bytes: [0, 0, 4, 6])
    #expect(throws: WireViolation.self) { try parser.parse(&header) { _ in } }
    // Truncated payloads of every structured frame are errors, never traps.
    let call = CallHeader(method: "A.b", flags: 0, argument: ByteBuffer(bytes: [1, 2])).encode(allocator: .init())
    for n in 0..<5 {
      #expect(throws: WireViolation.self) { try CallHeader.decode(call.getSlice(at: 0, length: n)!) }
    }
    #expect(throws: WireViolation.self) { try EndPayload.decode(ByteBuffer(bytes: [1, 123])) }
    #expect(throws: WireViolation.self) { try Hello.decode(ByteBuffer(bytes: Array("BGMC".utf8) + [1, 0])) }
  }

  @Test func anEmptyDataFrameIsMalformed() {
    // It would cost the receiver a queue entry and the sender no credit.
    let parser = WireFrameParser(maxFrame: 1024)
    var empty = ByteBuffer(bytes: frameBytes(6, stream: 3, []))
    #expect(throws: WireViolation.self) { try parser.parse(&empty) { _ in } }
  }

  @Test func aHelloWhoseFingerprintIsNotUTF8IsDroppedAndTheServerKeepsServing() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let port = Int(m.address.split(separator: ":").last!)!
    // 255 bytes of 0xFF: repaired, each would become a 3-byte U+FFFD, 765 bytes that the
    // hello's length byte cannot hold.
    var hello = Hello.magic + [Hello.version, 0, 0] + [UInt8](repeating: 1, count: 32)
    hello += [255] + [UInt8](repeating: 0xFF, count: 255) + [0]
    #expect(try await serverCloses(port: port, after: frameBytes(1, stream: 0, hello)))
    #expect(lines.all.contains { $0.contains("hello fingerprint is not UTF-8") })
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func aLongFingerprintIsCutBetweenScalars() throws {
    // 255 bytes end inside the 128th two-byte scalar; 85 three-byte scalars fill them exactly.
    let hello = Hello.make(
      dialer: true, binaryFingerprint: String(repeating: "\u{E9}", count: 200),
      applicationFingerprint: String(repeating: "\u{20AC}", count: 100))
    #expect(hello.binaryFingerprint == String(repeating: "\u{E9}", count: 127))
    #expect(hello.applicationFingerprint == String(repeating: "\u{20AC}", count: 85))
    #expect(try Hello.decode(ByteBuffer(bytes: hello.encode())) == hello)
  }

  @Test func aRefusalBeforeAuthenticationIsAnAuthenticationFailure() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let port = Int(m.address.split(separator: ":").last!)!
    // Sent to a machine: it is refused, and its text is not repeated in the log.
    let text = Array("machine is overloaded, \u{1B}[2J retry at evil.example".utf8)
    #expect(try await serverCloses(port: port, after: frameBytes(3, stream: 0, text)))
    #expect(lines.all.contains { $0.contains("unauthenticated peer sent refuse") })
    #expect(!lines.all.contains { $0.contains("evil.example") })
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
    // Sent by a server to a dialer: a fatal authentication error, not the server's story.
    let (server, serverPort) = try await rawServer { channel in
      channel.eventLoop.scheduleTask(in: .milliseconds(50)) {
        channel.writeAndFlush(ByteBuffer(bytes: frameBytes(3, stream: 0, text)), promise: nil)
      }
    }
    let error = await dialError(port: serverPort)
    guard case BigmachineError.fatal(_, let kind, let message)? = error else {
      Issue.record("not a fatal error: \(String(describing: error))")
      return
    }
    #expect(kind == .authentication)
    #expect(!message.contains("evil.example"))
    try await server.close()
  }

  @Test func aHandshakeThatTimesOutOrIsResetIsATemporaryNetworkError() async throws {
    // A server that accepts and never speaks.
    let (silent, silentPort) = try await rawServer { _ in }
    let timedOut = await dialError(port: silentPort, handshakeTimeout: .milliseconds(300))
    guard case BigmachineError.network(_, let reason)? = timedOut else {
      Issue.record("not a network error: \(String(describing: timedOut))")
      return
    }
    #expect(reason.contains("handshake not finished"))
    // A server that resets the connection (SO_LINGER 0, so close sends RST) once the hello is in.
    let (resetting, resettingPort) = try await rawServer { channel in
      channel.eventLoop.scheduleTask(in: .milliseconds(100)) {
        (channel as? any SocketOptionProvider)?.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
          channel.close(promise: nil)
        }
      }
    }
    let reset = await dialError(port: resettingPort)
    guard case BigmachineError.network? = reset else {
      Issue.record("not a network error: \(String(describing: reset))")
      return
    }
    try await silent.close()
    try await resetting.close()
  }

  @Test func aSecretNeverShowsItsBytesInDescriptions() {
    let secret = ClusterSecret.random()
    var dumped = ""
    dump(secret, to: &dumped)
    for text in ["\(secret)", String(reflecting: secret), dumped, "\([secret])", "\(Optional(secret) as Any)"] {
      #expect(!text.contains(secret.hex) && !text.contains(String(secret.hex.prefix(8))), "\(text)")
    }
    #expect("\(secret)" == "ClusterSecret(redacted)")
  }

  @Test func aSecretFileMustBeTheUsersOwnAndPrivateAndAStaleOneIsReplaced() throws {
    let path = "/tmp/bigmachine-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).secret"
    defer { unlink(path) }
    let first = ClusterSecret.random()
    try first.write(toFile: path)
    var info = stat()
    #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o600)
    #expect(try ClusterSecret.read(fromFile: path) == first)
    // A file a dead driver left behind is replaced, not an error.
    let second = ClusterSecret.random()
    try second.write(toFile: path)
    #expect(try ClusterSecret.read(fromFile: path) == second)
    // Readable by others: refused, saying how to fix it.
    chmod(path, 0o644)
    do {
      _ = try ClusterSecret.read(fromFile: path)
      Issue.record("a secret file of mode 0644 was accepted")
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .configuration)
      #expect(message.contains("mode 644") && message.contains("chmod 600 \(path)"))
    }
    chmod(path, 0o600)
    // Another user's file: refused (only root can make one here).
    if geteuid() == 0 {
      #expect(chown(path, 65534, 65534) == 0)
      do {
        _ = try ClusterSecret.read(fromFile: path)
        Issue.record("another user's secret file was accepted")
      } catch let BigmachineError.fatal(_, _, message) {
        #expect(message.contains("belongs to uid 65534"))
      }
    } else {
      print("skipped the other-owner case: making a file of another user needs root")
    }
  }

  /// A peer that sends a hello and no proof learns nothing from the machine but its hello:
  /// the side that accepted proves itself only after the dialer has.
  @Test func theAcceptorProvesNothingBeforeTheDialerHas() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let port = try #require(splitHostPort(machines[0].address)?.port)
    let hello = Hello.make(dialer: true, binaryFingerprint: "x", applicationFingerprint: "").encode()
    let kinds: [UInt8] = try await onOwnThread {
      let fd = connectLoopback(port: port)
      guard fd >= 0 else { throw SocketFailure(call: "connect", errno: errno) }
      defer { close(fd) }
      let frame = frameBytes(1, stream: 0, hello)
      _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      var received: [UInt8] = []
      var buffer = [UInt8](repeating: 0, count: 4096)
      let deadline = ContinuousClock.now + .seconds(1)
      while ContinuousClock.now < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 100) > 0 else { continue }
        let n = recv(fd, &buffer, buffer.count, 0)
        if n <= 0 { break }
        received += buffer[..<n]
      }
      var kinds: [UInt8] = []
      var at = 0
      while at + 9 <= received.count {
        let length =
          Int(received[at]) << 24 | Int(received[at + 1]) << 16 | Int(received[at + 2]) << 8
          | Int(received[at + 3])
        kinds.append(received[at + 4])
        at += 4 + length
      }
      return kinds
    }
    #expect(kinds == [FrameKind.hello.rawValue], "frames sent before any proof: \(kinds)")
    await b.shutdown()
  }
}
