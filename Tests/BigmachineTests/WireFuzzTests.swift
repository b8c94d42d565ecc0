import NIOCore
import Testing

@testable import Bigmachine

/// A seeded random-frame run of the wire's decoders: over a million frames, most well formed
/// and the rest damaged (bad kinds, lengths short or over the limit, flipped bytes, sealed
/// frames under the wrong key), cut at random points. Every input either decodes or is
/// refused with a `WireViolation`; nothing traps, and no refusal comes later than the bytes
/// that caused it.
@Suite struct WireFuzzTests {
  @Test func amillionRandomFramesNeverTrapTheParserOrThePayloadDecoders() throws {
    var rng = SplitMix(seed: 0x5EED_F00D)
    let keys = FrameKeys(secret: .random(), dialerHello: [1], acceptorHello: [2])
    var frames = 0
    var refused = 0
    var decoded = 0
    while frames < 1_000_000 {
      let sealed = rng.next() % 4 == 0
      var wire: [UInt8] = []
      let sealer = FrameCipher(key: keys.dialerToAcceptor, opens: false)
      let count = 1 + Int(rng.next() % 32)
      for _ in 0..<count {
        var payload: [UInt8] = []
        let length = Int(rng.next() % 48)
        while payload.count < length {
          withUnsafeBytes(of: rng.next()) { payload += $0.prefix(length - payload.count) }
        }
        var kind = UInt8(1 + rng.next() % 11)
        if rng.next() % 300 == 0 { kind = UInt8(truncatingIfNeeded: rng.next()) }
        let stream = UInt32(truncatingIfNeeded: rng.next() % 8)
        var frame: [UInt8]
        if sealed {
          var out = ByteBuffer(
            bytes: WireFrameEncoder.header(
              length: 5 + payload.count + FrameCipher.tagSize, kind: kind, stream: stream))
          try sealer.seal(ByteBuffer(bytes: payload), appendingTo: &out)
          frame = Array(out.readableBytesView)
        } else {
          frame = frameBytes(kind, stream: stream, payload)
        }
        switch rng.next() % 300 {
        case 0: frame[Int(rng.next() % UInt64(frame.count))] ^= UInt8(1 + rng.next() % 255)
        case 1: frame.replaceSubrange(0..<4, with: [0, 0, 0, UInt8(rng.next() % 5)])
        case 2: frame.replaceSubrange(0..<4, with: [0xFF, 0xFF, 0xFF, UInt8(truncatingIfNeeded: rng.next())])
        default: break
        }
        wire += frame
      }
      let parser = WireFrameParser(maxFrame: 1 << 16)
      if sealed {
        parser.opener = FrameCipher(
          key: rng.next() % 20 == 0 ? keys.acceptorToDialer : keys.dialerToAcceptor, opens: true)
      }
      var start = 0
      do {
        while start < wire.count {
          let end = min(wire.count, start + 1 + Int(rng.next() % 200))
          var input = ByteBuffer(bytes: wire[start..<end])
          try parser.parse(&input) { frame in
            decoded += 1
            // Each payload decoder meets the payloads of its kind, and a share of all others.
            let all = decoded % 16 == 0
            if all || frame.kind == .hello { _ = try? Hello.decode(frame.payload) }
            if all || frame.kind == .call { _ = try? CallHeader.decode(frame.payload) }
            if all || frame.kind == .reply { _ = try? ReplyHeader.decode(frame.payload) }
            if all || frame.kind == .end { _ = try? EndPayload.decode(frame.payload) }
            if all || frame.kind == .refuse { _ = wireText(frame.payload) }
          }
          start = end
        }
      } catch is WireViolation {
        refused += 1
      }
      frames += count
    }
    // Both outcomes happened many times: the run exercised the refusals and the decoding.
    #expect(refused > 1_000 && decoded > 500_000, "refused \(refused) streams, decoded \(decoded) frames")
  }
}
