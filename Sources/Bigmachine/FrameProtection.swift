import CCryptoBoringSSL
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

/// One direction's AES-256-GCM state: BoringSSL's cipher context (the copy inside
/// swift-crypto, whose AES-GCM runs at about 11 GB/s on one core here, where the system's
/// OpenSSL 3.0 runs at 4.5), kept for the connection, so a frame costs no key schedule and no
/// allocation beyond its output. A frame's nonce is its position in the direction (a 64-bit
/// counter, never sent): a dropped, repeated or reordered frame fails to open. The 9 header
/// bytes as sent (their length counts the tag) are the associated data. A frame that arrives
/// in pieces is opened piece by piece into its buffer (`beginOpen`, `openPiece`, `finishOpen`),
/// and handed on only once its tag is checked. A class: it owns its C context. Used by one
/// thread at a time (its connection's event loop).
final class FrameCipher {
  static let tagSize = 16
  private let context: OpaquePointer
  private let opens: Bool
  private var counter: UInt64 = 0

  /// A cipher that seals (`opens` false) or opens frames under `key` (32 bytes).
  init(key: SymmetricKey, opens: Bool) {
    // Only an allocation failure makes this nil.
    guard let made = CCryptoBoringSSL_EVP_CIPHER_CTX_new() else { fatalError("out of memory making a frame cipher") }
    let ok = key.withUnsafeBytes {
      let k = $0.bindMemory(to: UInt8.self).baseAddress
      return opens
        ? CCryptoBoringSSL_EVP_DecryptInit_ex(made, CCryptoBoringSSL_EVP_aes_256_gcm(), nil, k, nil)
        : CCryptoBoringSSL_EVP_EncryptInit_ex(made, CCryptoBoringSSL_EVP_aes_256_gcm(), nil, k, nil)
    }
    precondition(ok == 1 && key.bitCount == 256, "a frame key must be 32 bytes")
    context = OpaquePointer(made)
    self.opens = opens
  }

  deinit { CCryptoBoringSSL_EVP_CIPHER_CTX_free(ctx) }

  private var ctx: UnsafeMutablePointer<EVP_CIPHER_CTX> { UnsafeMutablePointer(context) }

  /// Starts the next frame: its nonce (4 zero bytes, then the counter big-endian) and its
  /// header as associated data.
  private func begin(header: [UInt8]) -> Bool {
    var nonce = (
      UInt32(0), UInt32(truncatingIfNeeded: counter >> 32).bigEndian, UInt32(truncatingIfNeeded: counter).bigEndian
    )
    counter += 1
    let ctx = self.ctx
    let opens = self.opens
    return withUnsafeBytes(of: &nonce) { raw -> Bool in
      precondition(raw.count == 12)
      let iv = raw.bindMemory(to: UInt8.self).baseAddress
      var length: Int32 = 0
      return opens
        ? CCryptoBoringSSL_EVP_DecryptInit_ex(ctx, nil, nil, nil, iv) == 1
          && CCryptoBoringSSL_EVP_DecryptUpdate(ctx, nil, &length, header, Int32(header.count)) == 1
        : CCryptoBoringSSL_EVP_EncryptInit_ex(ctx, nil, nil, nil, iv) == 1
          && CCryptoBoringSSL_EVP_EncryptUpdate(ctx, nil, &length, header, Int32(header.count)) == 1
    }
  }

  /// Appends `payload` sealed (ciphertext, then the tag) to `out`, whose readable bytes are
  /// the frame's header. Throws `WireViolation.integrity` only if the library fails.
  func seal(_ payload: ByteBuffer, appendingTo out: inout ByteBuffer) throws {
    let n = payload.readableBytes
    guard n <= Int(Int32.max), begin(header: Array(out.readableBytesView)) else { throw WireViolation.integrity }
    let ctx = self.ctx
    let written = payload.withUnsafeReadableBytes { input in
      out.writeWithUnsafeMutableBytes(minimumWritableBytes: n + Self.tagSize) { output in
        let o = output.bindMemory(to: UInt8.self).baseAddress!
        var length: Int32 = 0
        var last: Int32 = 0
        let ok =
          CCryptoBoringSSL_EVP_EncryptUpdate(ctx, o, &length, input.bindMemory(to: UInt8.self).baseAddress, Int32(n))
          == 1 && length == n && CCryptoBoringSSL_EVP_EncryptFinal_ex(ctx, o + n, &last) == 1 && last == 0
          && CCryptoBoringSSL_EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagSize), o + n) == 1
        return ok ? n + Self.tagSize : 0
      }
    }
    guard written == n + Self.tagSize else { throw WireViolation.integrity }
  }

  /// The plaintext of `sealed` (ciphertext then tag) under `header`; throws
  /// `WireViolation.integrity` if either was altered, or if a frame was dropped, repeated or
  /// reordered on the way.
  func open(_ sealed: ByteBuffer, header: [UInt8], allocator: ByteBufferAllocator) throws -> ByteBuffer {
    let n = sealed.readableBytes - Self.tagSize
    guard n >= 0 else { throw WireViolation.integrity }
    var out = allocator.buffer(capacity: n)
    try beginOpen(header: header)
    try openPiece(sealed.getSlice(at: sealed.readerIndex, length: n)!, into: &out)
    try finishOpen(tag: Array(sealed.readableBytesView.suffix(Self.tagSize)))
    return out
  }

  /// Starts opening a frame that comes in pieces.
  func beginOpen(header: [UInt8]) throws {
    guard opens, begin(header: header) else { throw WireViolation.integrity }
  }

  /// Appends the plaintext of `piece`, the next ciphertext bytes of the frame begun, to `out`
  /// (not to be handed on before `finishOpen`).
  func openPiece(_ piece: ByteBuffer, into out: inout ByteBuffer) throws {
    let n = piece.readableBytes
    guard n > 0 else { return }
    guard n <= Int(Int32.max) else { throw WireViolation.integrity }
    let ctx = self.ctx
    let written = piece.withUnsafeReadableBytes { input in
      out.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { output in
        var length: Int32 = 0
        let ok = CCryptoBoringSSL_EVP_DecryptUpdate(
          ctx, output.bindMemory(to: UInt8.self).baseAddress, &length, input.bindMemory(to: UInt8.self).baseAddress,
          Int32(n))
        return ok == 1 && length == n ? n : 0
      }
    }
    guard written == n else { throw WireViolation.integrity }
  }

  /// Checks the frame begun against its `tag`; throws `WireViolation.integrity` if anything in
  /// it was altered, dropped, repeated or reordered.
  func finishOpen(tag: [UInt8]) throws {
    guard tag.count == Self.tagSize else { throw WireViolation.integrity }
    var tag = tag
    // GCM's final step writes nothing; it is given room all the same.
    var scratch = [UInt8](repeating: 0, count: Self.tagSize)
    var last: Int32 = 0
    let authentic =
      CCryptoBoringSSL_EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagSize), &tag) == 1
      && CCryptoBoringSSL_EVP_DecryptFinal_ex(ctx, &scratch, &last) == 1 && last == 0
    guard authentic else { throw WireViolation.integrity }
  }
}
