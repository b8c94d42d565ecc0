import BigmachineTestSupport
import Crypto
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Bigmachine

#if canImport(Glibc)
  import Glibc
#endif

/// A TCP relay on loopback between one dialer and the server at `target`, as a host on the
/// path would sit. It forwards the server's bytes as they come, and the dialer's frame by
/// frame (it reads each length), handing each of those to `tamper` with its index (0 is the
/// hello, 1 the proof): what `tamper` returns is sent in its place.
final class Relay: Sendable {
  let port: Int
  private let listener: Int32

  init(target: Int, tamper: @escaping @Sendable (_ index: Int, _ frame: [UInt8]) -> [[UInt8]]) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    guard ok else { throw SocketFailure(call: "bind", errno: errno) }
    listener = fd
    port = Int(UInt16(bigEndian: address.sin_port))
    ThreadPool.detach {
      let dialer = accept(fd, nil, nil)
      guard dialer >= 0 else { return }
      let server = connectLoopback(port: target)
      guard server >= 0 else {
        close(dialer)
        return
      }
      ThreadPool.detach {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
          let n = read(server, &buffer, buffer.count)
          if n <= 0 || !Self.writeAll(dialer, buffer[..<n]) { break }
        }
        shutdown(dialer, Int32(SHUT_RDWR))
      }
      var index = 0
      while let frame = Self.readFrame(dialer) {
        for piece in tamper(index, frame) where !Self.writeAll(server, piece[...]) { break }
        index += 1
      }
      shutdown(server, Int32(SHUT_RDWR))
      close(server)
      close(dialer)
    }
  }

  deinit { close(listener) }

  private static func readFrame(_ fd: Int32) -> [UInt8]? {
    guard let header = readExactly(fd, 4) else { return nil }
    let length = Int(header[0]) << 24 | Int(header[1]) << 16 | Int(header[2]) << 8 | Int(header[3])
    guard length <= 32 << 20, let rest = readExactly(fd, length) else { return nil }
    return header + rest
  }

  private static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
      let n = out[got...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n <= 0 { return nil }
      got += n
    }
    return out
  }

  private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
    var sent = bytes.startIndex
    while sent < bytes.endIndex {
      let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n <= 0 { return false }
      sent += n
    }
    return true
  }
}

/// Dials machine `m` of `b` with its secret through `relay`.
func dialThrough(_ relay: Relay, _ b: Bigmachine, _ m: Machine) async throws -> Connection {
  let config = PeerConfig(
    secret: b.secret, binaryFingerprint: "relayed", applicationFingerprint: "", methods: nil, onKeepalive: nil,
    log: .discard)
  return try await dial(host: "127.0.0.1", port: relay.port, config: config, label: m.address)
}

/// A `Test.block` call frame on `stream` as a peer would send it in the clear.
func plainBlockCall(_ id: String, stream: UInt32) -> [UInt8] {
  let call = CallHeader(method: "Test.block", flags: 0, argument: jsonString(id))
    .encode(allocator: ByteBufferAllocator())
  return frameBytes(4, stream: stream, Array(call.readableBytesView))
}

@Suite struct FrameProtectionTests {
  @Test func callsGoThroughAnHonestRelay() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    let relay = try Relay(target: Int(m.address.split(separator: ":").last!)!) { _, frame in [frame] }
    let peer = try await dialThrough(relay, b, m)
    let (reply, _) = try await peer.call(method: "Test.echo", argument: jsonString("through"), input: nil)
    #expect(String(buffer: reply) == "\"m:through\"")
    peer.close(.network(address: m.address, reason: "done"))
    await b.shutdown()
  }

  /// The attack of a host on the path: it relays both hellos and proofs, then speaks for the
  /// dialer. The frame it adds is not sealed under the connection's key, so the machine
  /// closes the connection before reading a call from it.
  @Test func aFrameInjectedByARelayCallsNothingAndClosesTheConnection() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let id = "injected-\(UInt64.random(in: 0...UInt64.max))"
    let relay = try Relay(target: Int(m.address.split(separator: ":").last!)!) { index, frame in
      index == 1 ? [frame, plainBlockCall(id, stream: 1)] : [frame]
    }
    let peer = try await dialThrough(relay, b, m)
    #expect(await eventually(within: 60) { peer.closedError != nil })
    #expect(await eventually(within: 60) { lines.all.contains { $0.contains("failed its integrity check") } })
    try await Task.sleep(for: .milliseconds(300))
    #expect(!(await Probe.shared.saw("started \(id)")))
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func aFlippedByteInASealedDataFrameClosesTheConnectionWithAnIntegrityError() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let flipped = NIOLockedValueBox(false)
    let relay = try Relay(target: Int(m.address.split(separator: ":").last!)!) { index, frame in
      // The first large frame after the handshake: a chunk of the streamed argument.
      guard index >= 2, frame.count > 4096, !flipped.withLockedValue({ $0 }) else { return [frame] }
      flipped.withLockedValue { $0 = true }
      var altered = frame
      altered[frame.count / 2] ^= 0x01
      return [altered]
    }
    let peer = try await dialThrough(relay, b, m)
    let stream = PatternBytes(count: 1 << 20)
    await #expect(throws: BigmachineError.self) {
      _ = try await peer.call(method: "Test.digest", argument: ByteBuffer(string: "true")) { writer in
        for try await chunk in stream { try await writer.write(chunk) }
      }
    }
    #expect(flipped.withLockedValue { $0 })
    #expect(await eventually(within: 60) { lines.all.contains { $0.contains("failed its integrity check") } })
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func sealedFramesSurviveAnySplitAndRefuseEveryAlteration() throws {
    let secret = ClusterSecret.random()
    let keys = FrameKeys(secret: secret, dialerHello: [1, 2, 3], acceptorHello: [4, 5, 6])
    let payloads: [(FrameKind, [UInt8])] = [
      (.call, Array("call".utf8)), (.data, [UInt8](repeating: 0xA5, count: 70_000)), (.credit, [0, 0, 1, 0]),
      (.end, [0]),
    ]
    // The sender's bytes, made by the encoder's own sealing.
    let sealer = FrameCipher(key: keys.dialerToAcceptor, opens: false)
    var wire: [UInt8] = []
    for (kind, payload) in payloads {
      let length = 5 + payload.count + FrameCipher.tagSize
      var out = ByteBuffer(bytes: WireFrameEncoder.header(length: length, kind: kind.rawValue, stream: 3))
      try sealer.seal(ByteBuffer(bytes: payload), appendingTo: &out)
      wire += out.readableBytesView
    }
    func parse(_ bytes: [UInt8], key: SymmetricKey, cuts: [Int]) throws -> [(FrameKind, [UInt8])] {
      let parser = WireFrameParser(maxFrame: WireLimits.maxFrame)
      parser.opener = FrameCipher(key: key, opens: true)
      var got: [(FrameKind, [UInt8])] = []
      var start = 0
      for end in cuts + [bytes.count] where end >= start {
        var input = ByteBuffer(bytes: bytes[start..<end])
        try parser.parse(&input) { got.append(($0.kind, Array($0.payload.readableBytesView))) }
        start = end
      }
      return got
    }
    var rng = SplitMix(seed: 7)
    for _ in 0..<50 {
      let cuts = (0..<Int(rng.next() % 6)).map { _ in Int(rng.next() % UInt64(wire.count)) }.sorted()
      let got = try parse(wire, key: keys.dialerToAcceptor, cuts: cuts)
      #expect(got.map(\.0) == payloads.map(\.0))
      #expect(got.map(\.1) == payloads.map(\.1))
    }
    // A flipped bit in a header, a payload or a tag; a frame dropped, repeated or sent under
    // the other direction's key: each is an integrity error.
    // Whole, and opened piece by piece across reads (cuts every 997 bytes, and one inside the
    // data frame's tag).
    let firstLength = 9 + 4 + FrameCipher.tagSize
    let dataEnd = firstLength + 9 + 70_000 + FrameCipher.tagSize
    let splits = [[], Array(stride(from: 7, to: wire.count, by: 997)), [firstLength + 100, dataEnd - 8]]
    for at in [5, 8, 10, firstLength - 1, firstLength + 9 + 35_000, dataEnd - 3, dataEnd - 12, wire.count - 1] {
      var altered = wire
      altered[at] ^= 0x10
      for cuts in splits {
        #expect(throws: WireViolation.self, "byte \(at), cuts \(cuts.count)") {
          _ = try parse(altered, key: keys.dialerToAcceptor, cuts: cuts)
        }
      }
    }
    let dropped = Array(wire[firstLength...])
    let repeated = Array(wire[..<firstLength]) + wire
    for bytes in [dropped, repeated] {
      #expect(throws: WireViolation.self) { _ = try parse(bytes, key: keys.dialerToAcceptor, cuts: []) }
    }
    #expect(throws: WireViolation.self) { _ = try parse(wire, key: keys.acceptorToDialer, cuts: []) }
    let other = FrameKeys(secret: secret, dialerHello: [1, 2, 3], acceptorHello: [4, 5, 7])
    #expect(throws: WireViolation.self) { _ = try parse(wire, key: other.dialerToAcceptor, cuts: []) }
  }
}

/// SplitMix64, for reproducible cuts.
struct SplitMix {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}
