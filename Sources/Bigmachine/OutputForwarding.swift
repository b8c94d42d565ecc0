import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// Where the lines local workers write to stdout and stderr go, each prefixed with the
/// machine's address (`127.0.0.1:40123: text`).
public struct MachineOutput: Sendable {
  let write: @Sendable (String) -> Void

  /// Hands each prefixed line (without its newline) to `write`.
  public init(_ write: @escaping @Sendable (String) -> Void) { self.write = write }

  /// Each line goes to the driver's standard error (as in the original).
  public static let standardError = MachineOutput { line in writeStandardError(line + "\n") }
}

/// Reads one of a worker's output pipes line by line on an event loop: forwards each line
/// with the machine's prefix, picks out the control lines (the listening address on stdout,
/// the shutdown marker on both), and reports when the stream is complete: at the marker or
/// at end of file, whichever comes first. Lines longer than 64 KiB are forwarded in pieces.
final class OutputForwarder: ChannelInboundHandler, @unchecked Sendable {
  typealias InboundIn = ByteBuffer

  private let prefix: NIOLockedValueBox<String>
  private let output: MachineOutput
  private let onListening: (@Sendable (String) -> Void)?
  private let recent: NIOLockedValueBox<[String]>
  private var lines = OutputLines()
  private var completed = false
  let done: EventLoopPromise<Void>

  private init(
    prefix: NIOLockedValueBox<String>, output: MachineOutput, recent: NIOLockedValueBox<[String]>,
    onListening: (@Sendable (String) -> Void)?, done: EventLoopPromise<Void>
  ) {
    self.prefix = prefix
    self.output = output
    self.recent = recent
    self.onListening = onListening
    self.done = done
  }

  /// Starts forwarding the pipe `fd` (taking ownership of it). `recent` keeps the last lines,
  /// for an error message if the worker dies while starting. Returns a future that completes
  /// when the stream is complete.
  static func start(
    fd: Int32, prefix: NIOLockedValueBox<String>, output: MachineOutput, recent: NIOLockedValueBox<[String]>,
    onListening: (@Sendable (String) -> Void)?
  ) -> EventLoopFuture<Void> {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let done = loop.makePromise(of: Void.self)
    let bootstrap = NIOPipeBootstrap(group: loop)
      .channelOption(.allowRemoteHalfClosure, value: true)
      .channelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(
            OutputForwarder(prefix: prefix, output: output, recent: recent, onListening: onListening, done: done))
        }
      }
    bootstrap.takingOwnershipOfDescriptor(input: fd).whenFailure { _ in done.succeed(()) }
    return done.futureResult
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    let buffer = unwrapInboundIn(data)
    lines.add(buffer.readableBytesView) { emit($0) }
    if lines.ended { complete() }
  }

  private func emit(_ line: String) {
    if let onListening, line.hasPrefix(listeningMarker) {
      onListening(String(line.dropFirst(listeningMarker.count)))
      return
    }
    recent.withLockedValue { r in
      r.append(line)
      if r.count > 20 { r.removeFirst() }
    }
    output.write("\(prefix.withLockedValue { $0 }): \(line)")
  }

  private func complete() {
    guard !completed else { return }
    completed = true
    done.succeed(())
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if let e = event as? ChannelEvent, e == .inputClosed {
      lines.finish { emit($0) }
      complete()
      context.close(promise: nil)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    lines.finish { emit($0) }
    complete()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    complete()
    context.close(promise: nil)
  }
}

/// Splits bytes into lines as they arrive, whatever the chunks: a line longer than 64 KiB
/// is passed on in pieces, and the shutdown marker ends the stream.
struct OutputLines {
  private var pending: [UInt8] = []
  /// Whether the shutdown marker has been seen: lines after it are not passed on.
  private(set) var ended = false

  /// Calls `line` for each complete line of `bytes` (without its newline).
  mutating func add(_ bytes: some Sequence<UInt8>, line: (String) -> Void) {
    for byte in bytes where !ended {
      if byte == UInt8(ascii: "\n") {
        emit(line)
      } else {
        pending.append(byte)
        if pending.count >= 64 << 10 { emit(line) }
      }
    }
  }

  /// Passes on a last line without its newline.
  mutating func finish(line: (String) -> Void) {
    if !pending.isEmpty && !ended { emit(line) }
  }

  private mutating func emit(_ line: (String) -> Void) {
    let text = String(decoding: pending, as: UTF8.self)
    pending.removeAll(keepingCapacity: true)
    if text == shutdownMarker {
      ended = true
    } else {
      line(text)
    }
  }
}

/// A worker that dialed its driver (hosts or cluster) sends its stdout and stderr to the
/// driver once the driver asks (`Supervisor.output`): from then on both descriptors are one
/// pipe this process reads, and what it reads goes out as the call's reply stream. At exit
/// (`exitWorkerProcess`) the worker waits, up to 2 seconds, until its last lines are sent.
enum OutputCapture {
  private static let started = NIOLockedValueBox(false)
  /// Signalled (state 1) once the chunk holding the shutdown marker has been sent.
  private static let drained = ConditionLock(value: 0)

  /// The served method: redirects stdout and stderr and streams them to the caller. Fails if
  /// another call already took them.
  static let method: MethodHandler = { call in
    let first = started.withLockedValue { s in
      defer { s = true }
      return !s
    }
    guard first else { throw ServiceError(kind: "Busy", message: "this worker's output already goes to a driver") }
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw ServiceError(kind: "Pipe", message: "pipe: errno \(errno)") }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    fflush(nil)
    dup2(fds[1], 1)
    dup2(fds[1], 2)
    close(fds[1])
    let (chunks, sink) = AsyncStream<[UInt8]>.makeStream(bufferingPolicy: .bufferingNewest(256))
    let reader = fds[0]
    ThreadPool.detach {
      var buffer = [UInt8](repeating: 0, count: 64 << 10)
      while true {
        let n = buffer.withUnsafeMutableBytes { read(reader, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        sink.yield(Array(buffer[0..<n]))
      }
      sink.finish()
    }
    call.reply(try Payload.encode(true, allocator: ByteBufferAllocator()), true)
    var lines = OutputLines()
    for await chunk in chunks {
      try await call.writer.write(chunk)
      lines.add(chunk) { _ in }
      if lines.ended { break }
    }
    drained.lock()
    drained.unlock(withValue: 1)
  }

  /// Waits until the output up to the shutdown marker has been sent, or 2 seconds; at once
  /// when the output was never asked for.
  static func waitUntilSent() {
    guard started.withLockedValue({ $0 }) else { return }
    if drained.lock(whenValue: 1, timeoutSeconds: 2) { drained.unlock() }
  }
}

/// Asks the worker at the other end of `connection` for its output, and writes each line to
/// `output` prefixed with `address`, until the worker's shutdown marker or the end of the
/// stream. A worker that cannot send it (an older one) is left as it is.
func forwardOutput(of connection: Connection, address: String, to output: MachineOutput) {
  Task {
    guard
      let (_, stream) = try? await connection.call(
        method: "Supervisor.output", argument: try Payload.encode(true, allocator: ByteBufferAllocator()), input: nil),
      let stream
    else { return }
    var lines = OutputLines()
    do {
      for try await chunk in stream {
        lines.add(chunk.readableBytesView) { output.write("\(address): \($0)") }
        if lines.ended { return }
      }
    } catch {}
    lines.finish { output.write("\(address): \($0)") }
  }
}
