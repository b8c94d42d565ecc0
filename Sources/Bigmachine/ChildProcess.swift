import NIOConcurrencyHelpers
import NIOPosix

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc
/// module does not declare; nil in an older C library.
nonisolated(unsafe) private let addCloseFrom:
  (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
    else { return nil }
    return unsafeBitCast(
      symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
  }()

/// Marks every open descriptor above standard error close-on-exec, so that a process started
/// afterwards (with `Foundation.Process`, say) holds none of this process's sockets: SwiftNIO
/// opens them without close-on-exec, and a socket a child holds stays open when this process
/// closes it, so its peer never sees the close. Bigmachine's own workers are started with
/// nothing inherited; call this before starting other processes (a socket opened by another
/// thread in the meantime is not covered).
public func markOpenDescriptorsCloseOnExec() {
  guard let dir = opendir("/proc/self/fd") else { return }
  defer { closedir(dir) }
  while let entry = readdir(dir) {
    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    guard let fd = Int32(name), fd > 2 else { continue }
    let flags = fcntl(fd, F_GETFD)
    if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
  }
}

/// A child process with its stdout and stderr on pipes (or this process's own). Spawned with
/// `posix_spawn` (no fork of a threaded process) and reaped with `waitpid`, never through
/// Foundation's `Process`, whose `waitUntilExit` can miss a child's exit and wait forever.
package final class ChildProcess: @unchecked Sendable {
  package let pid: pid_t
  /// Read ends of the child's stdout and stderr, owned by whoever reads them; -1 when the child
  /// writes to this process's own.
  package let stdout: Int32
  package let stderr: Int32
  private let status = NIOLockedValueBox<(reaped: Bool, status: Int32?)>((false, nil))

  private init(pid: pid_t, stdout: Int32, stderr: Int32) {
    self.pid = pid
    self.stdout = stdout
    self.stderr = stderr
  }

  /// Starts `executable` with `arguments` (argv[0] excluded) and exactly `environment`.
  /// stdin is /dev/null; stdout and stderr are pipes, or this process's own with `piped:
  /// false`; no other descriptor of this process leaks into the child. Throws a fatal
  /// `startFailed` error if it cannot.
  package static func spawn(
    executable: String, arguments: [String], environment: [String: String], piped: Bool = true
  ) throws -> ChildProcess {
    // One spawn at a time: each child's pipe ends are made and handed over whole.
    try spawnLock.withLock {
      try spawnLocked(executable: executable, arguments: arguments, environment: environment, piped: piped)
    }
  }

  private static let spawnLock = NIOLock()

  /// Threads that wait for exiting children, apart from NIO's shared pool so that a slow
  /// exit never delays other blocking work.
  private static let reapers: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 4)
    pool.start()
    return pool
  }()

  private static func spawnLocked(
    executable: String, arguments: [String], environment: [String: String], piped: Bool
  ) throws -> ChildProcess {
    var out: [Int32] = [-1, -1]
    var err: [Int32] = [-1, -1]
    if piped {
      guard pipe(&out) == 0 else { throw failure("pipe: errno \(errno)") }
      guard pipe(&err) == 0 else {
        close(out[0])
        close(out[1])
        throw failure("pipe: errno \(errno)")
      }
      for fd in out + err { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    if piped {
      posix_spawn_file_actions_adddup2(&actions, out[1], 1)
      posix_spawn_file_actions_adddup2(&actions, err[1], 2)
    }
    // Nothing else of this process goes to the child: SwiftNIO opens its sockets without
    // close-on-exec, and a socket a child holds stays open when this process closes it (its
    // peer never sees the close).
    if let addCloseFrom {
      _ = addCloseFrom(&actions, 3)
    } else {
      markOpenDescriptorsCloseOnExec()
    }

    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGPIPE)
    sigaddset(&defaults, SIGINT)
    sigaddset(&defaults, SIGTERM)
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setsigmask(&attributes, &none)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for p in argv { free(p) }
      for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
    for fd in [out[1], err[1]] where fd >= 0 { close(fd) }
    guard rc == 0 else {
      for fd in [out[0], err[0]] where fd >= 0 { close(fd) }
      throw failure("cannot start \(executable): \(String(cString: strerror(rc)))")
    }
    return ChildProcess(pid: pid, stdout: out[0], stderr: err[0])
  }

  /// Sends `signal` unless the process has been reaped (its pid may then belong to another).
  package func kill(_ signal: Int32 = SIGKILL) {
    status.withLockedValue { s in
      if !s.reaped { _ = Glibc.kill(pid, signal) }
    }
  }

  /// Waits for the process to exit and returns its raw wait status. Call once its pipes
  /// reached end of file; blocks a thread of NIO's pool until then.
  @discardableResult
  package func reap() async -> Int32 {
    if let s = status.withLockedValue({ $0.status }) { return s }
    let pid = self.pid
    let raw =
      (try? await Self.reapers.runIfActive { () -> Int32 in
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        return st
      }) ?? 0
    status.withLockedValue { $0 = (true, raw) }
    return raw
  }

  /// Waits on the calling thread for the process to exit and returns its raw wait status.
  @discardableResult
  package func reapBlocking() -> Int32 {
    if let s = status.withLockedValue({ $0.status }) { return s }
    var raw: Int32 = 0
    while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
    status.withLockedValue { $0 = (true, raw) }
    return raw
  }

  /// Runs `executable` with `arguments` and `environment` (this process's when nil) to its
  /// end, blocking the calling thread: its raw wait status and what it wrote to stdout and
  /// stderr (each cut at `limit` bytes). For callers that cannot suspend; `run` otherwise.
  /// Throws a fatal `startFailed` error if it cannot start.
  package static func runBlocking(
    _ executable: String, _ arguments: [String], environment: [String: String]? = nil, limit: Int = 1 << 26
  ) throws -> (status: Int32, output: String, errors: String) {
    let child = try spawn(
      executable: executable, arguments: arguments, environment: environment ?? processEnvironment())
    var ends = [child.stdout, child.stderr].map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    var kept: [[UInt8]] = [[], []]
    while ends.contains(where: { $0.fd >= 0 }) {
      if poll(&ends, 2, -1) < 0 && errno != EINTR { break }
      for i in 0..<2 where ends[i].fd >= 0 && ends[i].revents != 0 {
        // poll passes over a negative descriptor: an ended stream is set to -1.
        if !readChunk(ends[i].fd, into: &kept[i], limit: limit) {
          close(ends[i].fd)
          ends[i].fd = -1
        }
      }
    }
    for end in ends where end.fd >= 0 { close(end.fd) }
    let status = child.reapBlocking()
    return (status, String(decoding: kept[0], as: UTF8.self), String(decoding: kept[1], as: UTF8.self))
  }

  /// Reads what `fd` has, keeping at most `limit` bytes in `kept`; false at its end or on an
  /// error.
  private static func readChunk(_ fd: Int32, into kept: inout [UInt8], limit: Int) -> Bool {
    var chunk = [UInt8](repeating: 0, count: 65536)
    let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    if n < 0 { return errno == EINTR || errno == EAGAIN }
    if n == 0 { return false }
    if kept.count < limit { kept += chunk[0..<min(n, limit - kept.count)] }
    return true
  }

  /// Runs `arguments[0]`, found on `PATH` (through `/usr/bin/env`), with `arguments[1...]`
  /// and this process's environment, to its end; returns its wait status and what it wrote to
  /// stdout and stderr (each cut at 1 MiB). Throws a fatal `startFailed` error if it cannot
  /// start.
  static func run(_ arguments: [String]) async throws -> (status: Int32, output: String, errors: String) {
    // `runBlocking` on a thread of its own, never on a Swift task thread.
    try await withCheckedThrowingContinuation { continuation in
      ThreadPool.detach {
        continuation.resume(with: Result { try runBlocking("/usr/bin/env", arguments, limit: 1 << 20) })
      }
    }
  }

  /// "exit status N" or "killed by signal N" for a raw wait status.
  package static func describe(_ status: Int32) -> String {
    let signal = status & 0x7f
    return signal == 0 ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(signal)"
  }

  private static func failure(_ message: String) -> BigmachineError {
    .fatal(address: "", kind: .startFailed, message: message)
  }
}
