import Crypto
import NIOConcurrencyHelpers
import NIOPosix

#if canImport(Glibc)
  import Glibc
#endif

/// Which binary a process runs, as sent in every handshake: `sha256:` and the hex SHA-256 of
/// the executable's bytes. A driver refuses a machine whose fingerprint differs from the one
/// it expects, naming both, so a worker built from other sources never serves its calls.
///
/// The environment variable `BIGMACHINE_BINARY_FINGERPRINT` overrides a process's own
/// fingerprint (for tests, or deployments that vouch for their binaries some other way).
enum BinaryFingerprint {
  static let overrideVariable = "BIGMACHINE_BINARY_FINGERPRINT"
  private static let cache = NIOLockedValueBox<String?>(nil)

  /// This process's fingerprint: the override, or the hash of `/proc/self/exe` (computed once,
  /// on NIO's blocking-I/O thread pool; about 0.1 s per 100 MB).
  static func ofSelf() async throws -> String {
    if let value = getenv(overrideVariable) { return String(cString: value) }
    if let cached = cache.withLockedValue({ $0 }) { return cached }
    let value = try await ofFile("/proc/self/exe")
    cache.withLockedValue { $0 = value }
    return value
  }

  /// The fingerprint of the executable at `path`, hashed on NIO's blocking-I/O thread pool.
  static func ofFile(_ path: String) async throws -> String {
    try await NIOThreadPool.singleton.runIfActive {
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        throw BigmachineError.fatal(address: "", kind: .configuration, message: "cannot open \(path) to fingerprint it")
      }
      defer { close(fd) }
      var hash = SHA256()
      var buffer = [UInt8](repeating: 0, count: 1 << 20)
      while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n >= 0 else {
          throw BigmachineError.fatal(
            address: "", kind: .configuration, message: "cannot read \(path) to fingerprint it")
        }
        if n == 0 { break }
        buffer.withUnsafeBytes { hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
      }
      return "sha256:" + hash.finalize().map { String($0, radix: 16).leftPadded(2) }.joined()
    }
  }
}
