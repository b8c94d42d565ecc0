import Crypto
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// A worker started from a bootstrap: any build of a program that can join (with
/// `BIGMACHINE_BOOTSTRAP=1`, or `bigslice worker --join … --bootstrap`). It proves the cluster
/// secret and says in its hello that it is a bootstrap (`bootstrap:` before its fingerprint),
/// which a hosts or cluster driver admits without the binary check. The driver then sends
/// its binary (`Supervisor.exec`, a streamed argument) with its SHA-256; the bootstrap writes
/// it to a file of its own (mode 0700), refuses it unless the digest and size match, and
/// execs it in place with its own environment, so the same process joins again as a worker
/// of the driver's exact build. Hosts then need only the bootstrap, not the build.
enum Bootstrap {
  static let fingerprintPrefix = "bootstrap:"

  /// Whether this process was started as a bootstrap.
  static var isBootstrap: Bool { WorkerEnvironment.value(WorkerEnvironment.bootstrap) != nil }

  /// The secret the worker proved, kept for the program it execs (the environment no longer
  /// holds it).
  static let secret = NIOLockedValueBox<ClusterSecret?>(nil)

  /// What the driver sends with its binary.
  struct Request: Codable, Sendable {
    /// `sha256:` and hex, as `BinaryFingerprint` writes it.
    var digest: String
    var size: Int
  }

  /// The served method: receives the binary, checks it, replies, and execs it. Fails with a
  /// `ServiceError` (kind `NotABootstrap` or `BadBinary`) and execs nothing otherwise.
  static let method: MethodHandler = { call in
    guard isBootstrap else {
      throw ServiceError(kind: "NotABootstrap", message: "this worker was not started as a bootstrap")
    }
    let request = try Payload.decode(Request.self, from: call.argument)
    let path = try await receive(call.context.input, request)
    call.reply(try Payload.encode(true, allocator: ByteBufferAllocator()), false)
    Task {
      // Let the reply leave first.
      try? await Task.sleep(for: .milliseconds(100))
      exec(path)
    }
  }

  /// Writes `input` to a new file (mode 0700) in `TMPDIR`, hashing it as it goes, and returns
  /// its path; throws a `ServiceError` (kind `BadBinary`), leaving no file, unless exactly
  /// `request.size` bytes whose SHA-256 is `request.digest` arrived.
  static func receive<S: AsyncSequence & Sendable>(_ input: S?, _ request: Request) async throws -> String
  where S.Element == ByteBuffer {
    guard let input else { throw ServiceError(kind: "BadBinary", message: "no binary was streamed") }
    let dir = WorkerEnvironment.value("TMPDIR") ?? "/tmp"
    let path = "\(dir)/bigmachine-binary-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o700)
    guard fd >= 0 else {
      throw ServiceError(kind: "BadBinary", message: "cannot create \(path): \(String(cString: strerror(errno)))")
    }
    var hash = SHA256()
    var written = 0
    do {
      defer { close(fd) }
      for try await chunk in input {
        written += chunk.readableBytes
        guard written <= request.size else {
          throw ServiceError(kind: "BadBinary", message: "more than the \(request.size) bytes announced arrived")
        }
        try chunk.withUnsafeReadableBytes { bytes in
          hash.update(bufferPointer: bytes)
          var at = 0
          while at < bytes.count {
            let n = write(fd, bytes.baseAddress! + at, bytes.count - at)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
              throw ServiceError(
                kind: "BadBinary", message: "cannot write \(path): \(String(cString: strerror(errno)))")
            }
            at += n
          }
        }
      }
      let digest = "sha256:" + hash.finalize().map { String($0, radix: 16).leftPadded(2) }.joined()
      guard written == request.size else {
        throw ServiceError(kind: "BadBinary", message: "\(written) bytes arrived, not the \(request.size) announced")
      }
      guard digest == request.digest else {
        throw ServiceError(
          kind: "BadBinary", message: "the binary received has digest \(digest), not \(wireText(request.digest))")
      }
    } catch {
      unlink(path)
      throw error
    }
    return path
  }

  /// Removes the file this process runs if a bootstrap received it (the running program
  /// stays whole; nothing else needs the file), once its fingerprint has been taken.
  static func removeReceivedBinary() {
    guard let path = WorkerEnvironment.value(WorkerEnvironment.receivedBinary) else { return }
    unsetenv(WorkerEnvironment.receivedBinary)
    if (try? ClusterSystem.ownExecutable()) == path { unlink(path) }
  }

  /// Replaces this process with the binary at `path`: same pid, same environment less the
  /// bootstrap flag and any fingerprint override, the secret passed on in the environment
  /// (which the new program removes as it reads it). Exits with status 2 if exec fails.
  static func exec(_ path: String) -> Never {
    var env = processEnvironment()
    env[WorkerEnvironment.bootstrap] = nil
    env[WorkerEnvironment.receivedBinary] = path
    env[BinaryFingerprint.overrideVariable] = nil
    if let secret = secret.withLockedValue({ $0 }) {
      env[WorkerEnvironment.secret] = secret.hex
      env[WorkerEnvironment.secretFile] = nil
    }
    markOpenDescriptorsCloseOnExec()
    fflush(nil)
    let argv = [strdup(path)] + [nil]
    let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
    execve(path, argv, envp)
    writeStandardError("bigmachine bootstrap: cannot exec \(path): \(String(cString: strerror(errno)))\n")
    exit(2)
  }

  /// Sends `binary` (nil: this process's own) to the bootstrap at `connection`, which then
  /// joins again as a worker; a refusal is logged and the bootstrap dropped.
  static func shipOrDrop(_ binary: String?, to connection: Connection, log: BigmachineLog) async {
    do {
      try await ship(try binary ?? ClusterSystem.ownExecutable(), to: connection)
    } catch {
      log("the bootstrap at \(connection.peer) did not take the worker binary: \(error)")
      connection.close(.fatal(address: connection.peer, kind: .startFailed, message: "bootstrap failed: \(error)"))
    }
  }

  /// Sends `binary` to the bootstrap at the other end of `connection`; returns once it has
  /// accepted it (it execs a moment later and joins again as a worker). Throws its refusal.
  static func ship(_ binary: String, to connection: Connection) async throws {
    let digest = try await BinaryFingerprint.ofFile(binary)
    var info = stat()
    guard stat(binary, &info) == 0 else {
      throw BigmachineError.fatal(address: "", kind: .configuration, message: "cannot read the worker binary \(binary)")
    }
    let argument = try Payload.encode(
      Request(digest: digest, size: Int(info.st_size)), allocator: ByteBufferAllocator())
    _ = try await connection.call(method: "Supervisor.exec", argument: argument) { writer in
      let fd = open(binary, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else { throw ServiceError(kind: "BadBinary", message: "cannot open \(binary)") }
      defer { close(fd) }
      while true {
        var chunk = ByteBufferAllocator().buffer(capacity: 1 << 20)
        let n = chunk.writeWithUnsafeMutableBytes(minimumWritableBytes: 1 << 20) { raw in
          max(0, read(fd, raw.baseAddress, raw.count))
        }
        if n == 0 { break }
        try await writer.write(chunk)
      }
    }
  }
}
