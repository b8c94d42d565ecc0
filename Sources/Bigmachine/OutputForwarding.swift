import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

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
  private var pending: [UInt8] = []
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
    for byte in buffer.readableBytesView {
      if byte == UInt8(ascii: "\n") {
        emit()
      } else {
        pending.append(byte)
        if pending.count >= 64 << 10 { emit() }
      }
    }
  }

  private func emit() {
    let line = String(decoding: pending, as: UTF8.self)
    pending.removeAll(keepingCapacity: true)
    if let onListening, line.hasPrefix(listeningMarker) {
      onListening(String(line.dropFirst(listeningMarker.count)))
      return
    }
    if line == shutdownMarker {
      complete()
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
      if !pending.isEmpty { emit() }
      complete()
      context.close(promise: nil)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    if !pending.isEmpty { emit() }
    complete()
  }

  func errorCaught(context: ChannelHandlerContext, error: any Error) {
    complete()
    context.close(promise: nil)
  }
}
