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
/// logged; the machine lives on and serves the driver.
@Suite struct HostilePeerTests {
  @Test func anEmptyDataFrameClosesTheConnection() async throws {
    let lines = LogLines()
    let (b, _, machines) = try await inProcessCluster(log: lines.log)
    let m = machines[0]
    let peer = try await authenticatedPeer(b, m)
    peer.send(.data, 1, ByteBuffer())
    #expect(await eventually(within: 10) { peer.closedError != nil })
    #expect(lines.all.contains { $0.contains("empty data frame") })
    #expect(try await m.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }
}
