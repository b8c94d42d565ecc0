import CSupport
import Crypto
import NIOCore

/// How the frames of an authenticated connection travel.
public enum FrameProtection: String, Sendable, Codable, CaseIterable {
  /// Every frame after the handshake is sealed with AES-256-GCM under keys of its own: the
  /// header is authenticated, the payload encrypted and authenticated. The default.
  case sealed
  /// Frames travel in the clear after the handshake, authenticated only once at its start.
  /// Honoured only when both ends ask for it and each sees the other on a loopback address;
  /// any other connection is sealed whatever this says.
  case loopbackPlain
}

/// The keys of one connection's two directions, bound to the secret and to both hellos (so
/// to both nonces): HKDF-SHA256 with the hash of the dialer's and the acceptor's hello bytes
/// as salt, one key per direction. No two connections share a key, so a frame from one is
/// refused on any other.
struct FrameKeys {
  var dialerToAcceptor: SymmetricKey
  var acceptorToDialer: SymmetricKey

  static let label = "bigmachine-frames-v1"

  init(secret: ClusterSecret, dialerHello: [UInt8], acceptorHello: [UInt8]) {
    var transcript = SHA256()
    transcript.update(data: dialerHello)
    transcript.update(data: acceptorHello)
    let salt = Array(transcript.finalize())
    func key(_ direction: String) -> SymmetricKey {
      HKDF<SHA256>.deriveKey(
        inputKeyMaterial: secret.key, salt: salt, info: Array("\(Self.label) \(direction)".utf8),
        outputByteCount: 32)
    }
    dialerToAcceptor = key("dialer to acceptor")
    acceptorToDialer = key("acceptor to dialer")
  }
}

/// One direction's AES-256-GCM state (OpenSSL's, kept for the connection: a frame costs no
/// key schedule and no allocation beyond its output). A frame's nonce is its position in the
/// direction (a 64-bit counter, never sent): a dropped, repeated or reordered frame fails to
/// open. The 9 header bytes as sent (their length counts the tag) are the associated data.
/// A class: it owns its C context. Used only on its connection's event loop.
final class FrameCipher {
  static let tagSize = Int(BS_SEAL_TAG)
  private let context: OpaquePointer
  private var counter: UInt64 = 0

  /// A cipher that seals (`opens` false) or opens frames under `key` (32 bytes).
  init(key: SymmetricKey, opens: Bool) {
    let made = key.withUnsafeBytes { bs_seal_new($0.bindMemory(to: UInt8.self).baseAddress, opens ? 1 : 0) }
    // Only an allocation failure makes this nil.
    guard let made else { fatalError("out of memory making a frame cipher") }
    context = made
  }

  deinit { bs_seal_free(context) }

  /// Appends `payload` sealed (ciphertext, then the tag) to `out`, whose readable bytes are
  /// the frame's header. Throws `WireViolation.integrity` only if the library fails.
  func seal(_ payload: ByteBuffer, appendingTo out: inout ByteBuffer) throws {
    let header = Array(out.readableBytesView)
    let n = payload.readableBytes
    let nonce = counter
    counter += 1
    let rc = payload.withUnsafeReadableBytes { input in
      out.writeWithUnsafeMutableBytes(minimumWritableBytes: n + Self.tagSize) { output in
        let o = output.bindMemory(to: UInt8.self).baseAddress!
        let rc = bs_seal_frame(
          context, nonce, header, header.count, input.bindMemory(to: UInt8.self).baseAddress, o, n, o + n)
        return rc == 0 ? n + Self.tagSize : 0
      }
    }
    guard rc == n + Self.tagSize else { throw WireViolation.integrity }
  }

  /// The plaintext of `sealed` (ciphertext then tag) under `header`; throws
  /// `WireViolation.integrity` if either was altered, or if a frame was dropped, repeated or
  /// reordered on the way.
  func open(_ sealed: ByteBuffer, header: [UInt8], allocator: ByteBufferAllocator) throws -> ByteBuffer {
    let nonce = counter
    counter += 1
    let n = sealed.readableBytes - Self.tagSize
    guard n >= 0 else { throw WireViolation.integrity }
    var out = allocator.buffer(capacity: n)
    var authentic = false
    sealed.withUnsafeReadableBytes { input in
      out.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { output in
        let i = input.bindMemory(to: UInt8.self).baseAddress!
        let rc = bs_open_frame(
          context, nonce, header, header.count, i, output.bindMemory(to: UInt8.self).baseAddress, n, i + n)
        authentic = rc == 0
        return authentic ? n : 0
      }
    }
    guard authentic else { throw WireViolation.integrity }
    return out
  }

  /// `open`, in place: for a frame gathered in a buffer of its own.
  func open(inPlace sealed: inout ByteBuffer, header: [UInt8]) throws {
    let nonce = counter
    counter += 1
    let n = sealed.readableBytes - Self.tagSize
    guard n >= 0 else { throw WireViolation.integrity }
    let rc = sealed.withUnsafeMutableReadableBytes { bytes in
      let p = bytes.bindMemory(to: UInt8.self).baseAddress!
      return bs_open_frame(context, nonce, header, header.count, p, p, n, p + n)
    }
    guard rc == 0 else { throw WireViolation.integrity }
    sealed.moveWriterIndex(to: sealed.readerIndex + n)
  }
}
