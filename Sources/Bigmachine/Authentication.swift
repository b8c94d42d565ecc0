import Crypto
import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// The cluster secret: 256 random bits made by the driver and handed to its workers through
/// the environment (`BIGMACHINE_SECRET`, hex) or a 0600 file (`BIGMACHINE_SECRET_FILE`).
/// Every connection proves knowledge of it in both directions before any call. Its
/// descriptions and its mirror say "redacted": print it, log it or dump it and its bytes stay
/// out; ``hex`` is the one way to them.
public struct ClusterSecret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
  CustomReflectable
{
  public var description: String { "ClusterSecret(redacted)" }
  public var debugDescription: String { description }
  public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

  private let bytes: [UInt8]
  var key: SymmetricKey { SymmetricKey(data: bytes) }

  /// A fresh random 256-bit secret from the system's secure generator.
  public static func random() -> ClusterSecret {
    ClusterSecret(bytes: SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
  }

  /// The secret whose hex form is `hex` (64 hex digits). Throws a configuration error otherwise.
  public init(hex: String) throws {
    let trimmed = hex.trimmingWhitespace()
    guard trimmed.utf8.count == 64, let bytes = Self.parseHex(trimmed) else {
      throw BigmachineError.fatal(address: "", kind: .configuration, message: "a cluster secret is 64 hex digits")
    }
    self.bytes = bytes
  }

  private init(bytes: [UInt8]) { self.bytes = bytes }

  /// The 64 hex digits of the secret, for the environment or a file.
  public var hex: String {
    bytes.map { String($0, radix: 16).leftPadded(2) }.joined()
  }

  /// Reads a secret written by ``write(toFile:)`` (or any file holding its hex). The file must
  /// belong to this process's user and be readable by its owner only (mode 0600 or 0400): a
  /// secret others can read, or could have written, is refused with a configuration error
  /// that says how to fix it. Blocking I/O: call it at startup, not from a busy task.
  public static func read(fromFile path: String) throws -> ClusterSecret {
    func refuse(_ why: String) -> BigmachineError {
      .fatal(address: "", kind: .configuration, message: "the secret file \(path) \(why)")
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw refuse("cannot be opened: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { throw refuse("is not a regular file") }
    guard info.st_uid == geteuid() else {
      throw refuse("belongs to uid \(info.st_uid), not to this user (uid \(geteuid()))")
    }
    guard info.st_mode & 0o077 == 0 else {
      throw refuse(
        "has mode \(String(info.st_mode & 0o777, radix: 8)): others may read it; make it the owner's alone (chmod 600 \(path))"
      )
    }
    guard let text = readSmallFile(fd) else { throw refuse("cannot be read") }
    return try ClusterSecret(hex: text)
  }

  /// Writes the hex secret to `path` with mode 0600, replacing a file left there (by a driver
  /// that died, say): it is written under a fresh name beside `path`, then renamed over it, so
  /// a reader finds the old secret or the new one, never a part.
  public func write(toFile path: String) throws {
    let temporary = "\(path).\(getpid())-\(UInt64.random(in: 0...UInt64.max)).tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
    guard fd >= 0 else {
      throw BigmachineError.fatal(
        address: "", kind: .configuration,
        message: "cannot create the secret file \(path): \(String(cString: strerror(errno)))")
    }
    var text = hex + "\n"
    let ok = text.withUTF8 { Glibc.write(fd, $0.baseAddress, $0.count) == $0.count } && fsync(fd) == 0
    close(fd)
    guard ok, rename(temporary, path) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(temporary)
      throw BigmachineError.fatal(
        address: "", kind: .configuration, message: "cannot write the secret file \(path): \(reason)")
    }
  }

  private static func parseHex(_ s: String) -> [UInt8]? {
    var out: [UInt8] = []
    var it = s.utf8.makeIterator()
    while let hi = it.next() {
      guard let lo = it.next(), let h = hexValue(hi), let l = hexValue(lo) else { return nil }
      out.append(h << 4 | l)
    }
    return out
  }

  private static func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
  }
}

/// What each side says first. Layout of the `hello` payload:
///
///     4  magic "BGMC"
///     1  protocol version (2)
///     1  role: 0 = dialer, 1 = acceptor
///     1  flags: bit 0 = the sender asks for plain frames (`FrameProtection.loopbackPlain`)
///     32 nonce (random per connection)
///     1  length n, then n bytes: the sender's binary fingerprint (UTF-8)
///     1  length m, then m bytes: the sender's application fingerprint (UTF-8, may be empty)
///
/// Then each side sends `proof` = HMAC-SHA256(secret, "bigmachine-proof-v1" ‖ role byte of the
/// prover ‖ prover's hello payload ‖ verifier's hello payload): 32 bytes over both nonces, both
/// roles' views and both fingerprints. The role byte stops a peer from reflecting a proof back.
/// The dialer proves first, once it has the acceptor's hello; the acceptor checks that proof
/// (in constant time) before it sends its own, so it proves nothing to a peer that has not
/// proved itself. After its proof each side seals every frame it sends (`FrameKeys`), unless
/// both hellos ask for plain frames.
struct Hello: Equatable {
  static let magic: [UInt8] = Array("BGMC".utf8)
  static let version: UInt8 = 2
  static let plainFlag: UInt8 = 1
  var role: UInt8
  var flags: UInt8 = 0
  var nonce: [UInt8]
  var binaryFingerprint: String
  var applicationFingerprint: String

  var asksForPlainFrames: Bool { flags & Hello.plainFlag != 0 }

  static func make(
    dialer: Bool, binaryFingerprint: String, applicationFingerprint: String, plainFrames: Bool = false
  ) -> Hello {
    var nonce = [UInt8](repeating: 0, count: 32)
    SymmetricKey(size: .bits256).withUnsafeBytes { nonce = Array($0) }
    return Hello(
      role: dialer ? 0 : 1, flags: plainFrames ? plainFlag : 0, nonce: nonce,
      binaryFingerprint: prefix(binaryFingerprint, bytes: 255),
      applicationFingerprint: prefix(applicationFingerprint, bytes: 255))
  }

  /// The longest prefix of `s` whose UTF-8 fits in `bytes`, cut between Unicode scalars (a cut
  /// inside a multibyte scalar would not be UTF-8).
  static func prefix(_ s: String, bytes: Int) -> String {
    var out = String.UnicodeScalarView()
    var used = 0
    for scalar in s.unicodeScalars {
      used += UTF8.width(scalar)
      if used > bytes { break }
      out.append(scalar)
    }
    return String(out)
  }

  func encode() -> [UInt8] {
    var b = Hello.magic
    b.append(Hello.version)
    b.append(role)
    b.append(flags)
    b += nonce
    b.append(UInt8(binaryFingerprint.utf8.count))
    b += binaryFingerprint.utf8
    b.append(UInt8(applicationFingerprint.utf8.count))
    b += applicationFingerprint.utf8
    return b
  }

  /// Decodes a peer's hello. Throws a `WireViolation` for anything malformed, including a
  /// fingerprint that is not valid UTF-8 (it is rejected, never repaired: a repaired string
  /// would no longer be the bytes the proofs cover, and could outgrow its length byte).
  static func decode(_ payload: ByteBuffer) throws -> Hello {
    var p = payload
    guard let magic = p.readBytes(length: 4), magic == Hello.magic else {
      throw WireViolation.malformed("not a bigmachine hello")
    }
    guard let version = p.readInteger(as: UInt8.self), version == Hello.version else {
      throw WireViolation.malformed("unsupported protocol version")
    }
    guard let role = p.readInteger(as: UInt8.self), role <= 1, let flags = p.readInteger(as: UInt8.self),
      flags & ~Hello.plainFlag == 0, let nonce = p.readBytes(length: 32),
      let n = p.readInteger(as: UInt8.self), let fp = p.readBytes(length: Int(n)),
      let m = p.readInteger(as: UInt8.self), let app = p.readBytes(length: Int(m)), p.readableBytes == 0
    else { throw WireViolation.malformed("hello fields") }
    guard let binary = String(validating: fp, as: UTF8.self),
      let application = String(validating: app, as: UTF8.self)
    else { throw WireViolation.malformed("hello fingerprint is not UTF-8") }
    return Hello(
      role: role, flags: flags, nonce: nonce, binaryFingerprint: binary, applicationFingerprint: application)
  }
}

enum HandshakeProof {
  static let label = Array("bigmachine-proof-v1".utf8)

  static func make(secret: ClusterSecret, prover: [UInt8], proverRole: UInt8, verifier: [UInt8]) -> [UInt8] {
    var mac = HMAC<SHA256>(key: secret.key)
    mac.update(data: label)
    mac.update(data: [proverRole])
    mac.update(data: prover)
    mac.update(data: verifier)
    return Array(mac.finalize())
  }

  static func check(
    _ proof: ByteBuffer, secret: ClusterSecret, prover: [UInt8], proverRole: UInt8, verifier: [UInt8]
  ) -> Bool {
    guard proof.readableBytes == 32 else { return false }
    var message = label
    message.append(proverRole)
    message += prover
    message += verifier
    return proof.withUnsafeReadableBytes {
      HMAC<SHA256>.isValidAuthenticationCode($0, authenticating: message, using: secret.key)
    }
  }
}

/// Reads a file of at most 1 MiB whole; nil if it cannot.
func readSmallFile(_ path: String) -> String? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  return readSmallFile(fd)
}

/// Reads at most 1 MiB of an open file; nil if it cannot.
func readSmallFile(_ fd: Int32) -> String? {
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while bytes.count < 1 << 20 {
    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if n < 0 && errno == EINTR { continue }
    if n <= 0 { break }
    bytes += chunk[0..<n]
  }
  return String(decoding: bytes, as: UTF8.self)
}

extension String {
  func trimmingWhitespace() -> String {
    let scalars = unicodeScalars
    guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
    let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
    return String(scalars[first...last])
  }

  func leftPadded(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
