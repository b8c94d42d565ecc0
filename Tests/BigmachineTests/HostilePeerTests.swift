import BigmachineTestSupport
import NIOCore
import Testing

@testable import Bigmachine

/// A peer that holds the cluster secret, so it passes the handshake with machine `m`, and
/// then writes whatever frames a test gives it (`Connection.send` writes any frame as is).
func authenticatedPeer(_ b: Bigmachine, _ m: Machine) async throws -> Connection {
  let port = Int(m.address.split(separator: ":").last!)!
  let config = PeerConfig(
    secret: b.secret, binaryFingerprint: "hostile", applicationFingerprint: "", methods: nil, onKeepalive: nil,
    log: .discard)
  return try await dial(host: "127.0.0.1", port: port, config: config, label: m.address)
}

/// The JSON argument of a `String` method.
func jsonString(_ s: String) -> ByteBuffer { ByteBuffer(string: "\"\(s)\"") }

/// An authenticated peer that breaks the protocol loses its connection, with the reason
/// logged; the machine lives on and serves the driver. The waits are long: at the start of a
/// full run on 2 cores every suite starts at once, and four of these closes once took over
/// 10 s to arrive (a close in time is what passes, so the wait costs nothing then).
@Suite struct HostilePeerTests {
  @Test func anEmptyDataFrameClosesTheConnection() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let peer = try await authenticatedPeer(b, m)
    peer.send(.data, 1, ByteBuffer())
    #expect(await eventually(within: 60) { peer.closedError != nil })
    #expect(lines.all.contains { $0.contains("empty data frame") })
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func creditBeyondTheWindowClosesTheConnection() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let peer = try await authenticatedPeer(b, m)
    let id = "credit-\(UInt64.random(in: 0...UInt64.max))"
    // The peer's first call is on stream 1; the machine holds a reply window for it.
    let call = Task { try await peer.call(method: "Test.block", argument: jsonString(id), input: nil) }
    #expect(await eventually(within: 60) { await Probe.shared.saw("started \(id)") })
    // Repeated, these would overflow the window's counter.
    var credit = ByteBuffer()
    credit.writeInteger(UInt32.max)
    peer.send(.credit, 1, credit)
    #expect(await eventually(within: 60) { peer.closedError != nil })
    #expect(lines.all.contains { $0.contains("beyond the window on stream 1") })
    // The call failed with the connection (the cancel only ends the wait if it did not).
    call.cancel()
    let outcome = await call.result
    #expect(throws: BigmachineError.self) { try outcome.get() }
    #expect(await eventually(within: 60) { await Probe.shared.saw("cancelled \(id)") })
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func aRefusalsTextIsLoggedBoundedAndWithoutControlCharacters() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let peer = try await authenticatedPeer(b, m)
    let text = "\u{1B}[2J\r\nbigmachine: forged line" + String(repeating: "A", count: 100_000)
    peer.send(.refuse, 0, ByteBuffer(string: text))
    #expect(await eventually(within: 60) { peer.closedError != nil })
    let line = try #require(lines.all.first { $0.contains("refused this connection") })
    #expect(!line.unicodeScalars.contains { $0.properties.generalCategory == .control })
    #expect(line.contains("\u{FFFD}[2J\u{FFFD}\u{FFFD}bigmachine: forged line"))
    #expect(line.unicodeScalars.count < WireLimits.maxPeerText + 100)
    #expect(line.hasSuffix("A\u{2026}"))
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func aCallReadTogetherWithTheFrameThatClosedTheConnectionIsNotServed() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    let peer = try await authenticatedPeer(b, m)
    let id = "after-close-\(UInt64.random(in: 0...UInt64.max))"
    // Flushed together, so the machine reads both at once: the refusal closes the
    // connection, and the call behind it must not start a method.
    let call = CallHeader(method: "Test.block", flags: 0, argument: jsonString(id))
    peer.channel.write(WireFrame(kind: .refuse, stream: 0, payload: ByteBuffer(string: "bye")), promise: nil)
    peer.channel.writeAndFlush(
      WireFrame(kind: .call, stream: 1, payload: call.encode(allocator: ByteBufferAllocator())), promise: nil)
    #expect(await eventually(within: 60) { peer.closedError != nil })
    try await Task.sleep(for: .milliseconds(500))
    #expect(!(await Probe.shared.saw("started \(id)")))
    await b.shutdown()
  }

  @Test func anErrorsTextIsBoundedOnReceipt() throws {
    // As a peer that does not bound its own errors would send it.
    let sent = WireError(
      errorClass: .remote, kind: "K\u{7}", message: "\u{1B}]0;owned\u{7}" + String(repeating: "m", count: 5000),
      temporary: false)
    let error = try #require(try EndPayload.decode(ByteBuffer(bytes: [1] + (try Payload.encode(sent)))))
    #expect(error.kind == "K\u{FFFD}")
    #expect(error.message.unicodeScalars.count == WireLimits.maxPeerText)
    #expect(error.message.hasPrefix("\u{FFFD}]0;owned\u{FFFD}mmm"))
    #expect(error.message.hasSuffix("m\u{2026}"))
  }
}
