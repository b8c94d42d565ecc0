import NIOConcurrencyHelpers
import NIOCore

/// A method a connection can serve: it gets the call and must either `reply` once with
/// `streams: false`, or `reply` with `streams: true` and then write the stream (the
/// connection ends the stream when the handler returns, or fails it with what it throws).
typealias MethodHandler = @Sendable (ServedCall) async throws -> Void

/// One incoming call as a handler sees it.
struct ServedCall: Sendable {
  var method: String
  var argument: ByteBuffer
  var context: CallContext
  var reply: @Sendable (_ reply: ByteBuffer, _ streams: Bool) -> Void
  var writer: StreamWriter
}

/// Finds the handler of a "Service.method" name.
protocol MethodLookup: Sendable {
  func handler(for method: String) -> MethodHandler?
}

/// An authenticated connection carrying many concurrent calls in both directions, each on
/// its own stream. Frames arrive on the channel's event loop (`receive`); calls are made and
/// served from tasks.
final class Connection: @unchecked Sendable {
  let channel: any Channel
  /// The peer's address as errors name it (the machine's address on the driver).
  let peer: String
  private let dialer: Bool
  private let methods: (any MethodLookup)?
  private let onKeepalive: (@Sendable (UInt64) -> Bool)?
  private let log: BigmachineLog
  private let executor: (any TaskExecutor)?

  private struct State {
    var nextStream: UInt32
    var outgoing: [UInt32: OutgoingCall] = [:]
    var incoming: [UInt32: IncomingCall] = [:]
    var closed: BigmachineError?
    var keepaliveSeq: UInt64 = 0
    var keepaliveWaiters: [UInt64: @Sendable (Result<Bool, any Error>) -> Void] = [:]
    var closeHandlers: [@Sendable (BigmachineError) -> Void] = []
  }
  private let state: NIOLockedValueBox<State>

  init(
    channel: any Channel, peer: String, dialer: Bool, methods: (any MethodLookup)?,
    onKeepalive: (@Sendable (UInt64) -> Bool)?, log: BigmachineLog, executor: (any TaskExecutor)? = nil
  ) {
    self.executor = executor
    self.channel = channel
    self.peer = peer
    self.dialer = dialer
    self.methods = methods
    self.onKeepalive = onKeepalive
    self.log = log
    state = NIOLockedValueBox(State(nextStream: dialer ? 1 : 2))
  }

  /// Why the connection closed, once it has.
  var closedError: BigmachineError? { state.withLockedValue { $0.closed } }

  /// Calls `handler` once when the connection closes (at once if it already has).
  func onClose(_ handler: @escaping @Sendable (BigmachineError) -> Void) {
    let closed: BigmachineError? = state.withLockedValue { s in
      if s.closed == nil { s.closeHandlers.append(handler) }
      return s.closed
    }
    if let closed { handler(closed) }
  }

  /// Closes the connection; calls in flight fail with `error`.
  func close(_ error: BigmachineError) {
    lost(error)
    channel.close(promise: nil)
  }

  // MARK: Calling

  /// Calls `method` with an encoded `argument`. If `input` is given, it runs concurrently and
  /// streams the argument through the writer it gets. Returns the encoded reply, and the
  /// reply stream if the method streams one. Cancelling the task cancels the call on the peer.
  /// Throws a fatal `badArgument` error, before anything is sent, for a method name longer
  /// than `WireLimits.maxMethodName` bytes or an argument too large for one frame (the peer
  /// would drop the whole connection for it).
  func call(
    method: String, argument: ByteBuffer, input: (@Sendable (StreamWriter) async throws -> Void)?
  ) async throws -> (reply: ByteBuffer, stream: ByteStream?) {
    try checkSize(method: method, argument: argument)
    let call = try register(method: method)
    let header = CallHeader(method: method, flags: input == nil ? 0 : CallHeader.streamsArgument, argument: argument)
    send(.call, call.stream, header.encode(allocator: channel.allocator))
    if let input {
      let writer = StreamWriter(window: call.argumentWindow) { [weak self] chunk in
        self?.send(.data, call.stream, chunk)
      }
      let stream = call.stream
      call.setPump(
        Task { [weak self] in
          do {
            try await input(writer)
            self?.send(.end, stream, EndPayload.encode(nil, allocator: ByteBufferAllocator()))
          } catch {
            if !Task.isCancelled {
              self?.send(.end, stream, EndPayload.encode(WireError(serving: error), allocator: ByteBufferAllocator()))
            }
          }
        })
    }
    let reply = try await withTaskCancellationHandler {
      try await call.waitForReply()
    } onCancel: {
      self.abandon(call.stream)
    }
    if reply.flags & ReplyHeader.streamsReply != 0 {
      return (reply.reply, ByteStream(call.replyStream))
    }
    return (reply.reply, nil)
  }

  private func checkSize(method: String, argument: ByteBuffer) throws {
    let nameBytes = method.utf8.count
    guard nameBytes <= WireLimits.maxMethodName else {
      throw BigmachineError.fatal(
        address: peer, kind: .badArgument,
        message:
          "the method name \(wireText(method.prefix(64)))… is \(nameBytes) bytes, over the limit of \(WireLimits.maxMethodName)"
      )
    }
    let limit = CallHeader.maxArgument(method: method)
    guard argument.readableBytes <= limit else {
      throw BigmachineError.fatal(
        address: peer, kind: .badArgument,
        message:
          "the argument of \(method) is \(argument.readableBytes) bytes encoded, over the limit of \(limit) bytes for an argument sent whole; send large data as an argument stream (Machine.call(_:_:input:returning:))"
      )
    }
  }

  private func register(method: String) throws -> OutgoingCall {
    try state.withLockedValue { s in
      if let closed = s.closed { throw closed }
      let id = s.nextStream
      s.nextStream &+= 2
      let call = OutgoingCall(stream: id, method: method, connection: self)
      s.outgoing[id] = call
      return call
    }
  }

  /// The caller gave up on `stream`: tell the peer and fail everything local.
  func abandon(_ stream: UInt32) {
    guard let call = state.withLockedValue({ $0.outgoing.removeValue(forKey: stream) }) else { return }
    send(.cancel, stream, ByteBuffer())
    call.fail(CancellationError())
  }

  /// Renews the peer's lease for `leaseMillis`, then calls `completion` (on the event loop)
  /// with the peer's health flag, or with a network error if no acknowledgement arrives within
  /// `timeout` or the connection is lost. Needs no task: liveness must not depend on the
  /// cooperative pool, which user code may keep busy.
  func keepalive(
    leaseMillis: UInt64, timeout: TimeAmount, completion: @escaping @Sendable (Result<Bool, any Error>) -> Void
  ) {
    let seq: UInt64? = state.withLockedValue { s in
      if s.closed != nil { return nil }
      s.keepaliveSeq += 1
      s.keepaliveWaiters[s.keepaliveSeq] = completion
      return s.keepaliveSeq
    }
    guard let seq else {
      completion(.failure(closedError ?? .network(address: peer, reason: "connection closed")))
      return
    }
    var payload = channel.allocator.buffer(capacity: 16)
    payload.writeInteger(seq)
    payload.writeInteger(leaseMillis)
    send(.keepalive, 0, payload)
    channel.eventLoop.scheduleTask(in: timeout) { [weak self] in
      guard let self else { return }
      let w = self.state.withLockedValue { $0.keepaliveWaiters.removeValue(forKey: seq) }
      w?(.failure(BigmachineError.network(address: self.peer, reason: "keepalive timed out after \(timeout)")))
    }
  }

  // MARK: Receiving (on the event loop)

  private func isMine(_ stream: UInt32) -> Bool { (stream & 1 == 1) == dialer }

  /// Handles one frame after authentication. Throws a `WireViolation` if the peer broke the
  /// protocol; the caller closes the connection.
  func receive(_ frame: WireFrame) throws {
    switch frame.kind {
    case .call:
      guard frame.stream != 0, !isMine(frame.stream) else {
        throw WireViolation.malformed("call on stream \(frame.stream)")
      }
      let header = try CallHeader.decode(frame.payload)
      try startServing(frame.stream, header)
    case .reply:
      guard isMine(frame.stream) else { throw WireViolation.malformed("reply on the peer's stream") }
      let header = try ReplyHeader.decode(frame.payload)
      guard let call = state.withLockedValue({ $0.outgoing[frame.stream] }) else { return }
      if header.flags & ReplyHeader.streamsReply == 0 { finishOutgoing(frame.stream) }
      call.resolve(.success(header))
    case .data:
      if isMine(frame.stream) {
        guard let call = state.withLockedValue({ $0.outgoing[frame.stream] }) else { return }
        guard call.replyStream.deliver(frame.payload) else { throw WireViolation.malformed("data beyond the window") }
      } else {
        guard let call = state.withLockedValue({ $0.incoming[frame.stream] }) else { return }
        guard let input = call.input, input.deliver(frame.payload) else {
          throw WireViolation.malformed("unexpected argument data")
        }
      }
    case .end:
      let error = try EndPayload.decode(frame.payload)
      if isMine(frame.stream) {
        guard let call = finishOutgoing(frame.stream) else { return }
        let mapped = error.map { $0.bigmachineError(address: peer, method: call.method) }
        call.end(mapped)
      } else {
        guard let call = state.withLockedValue({ $0.incoming[frame.stream] }) else { return }
        call.input?.finish(error.map { $0.bigmachineError(address: peer, method: "argument stream") })
      }
    case .cancel:
      guard !isMine(frame.stream) else { return }
      state.withLockedValue { $0.incoming[frame.stream] }?.cancel()
    case .credit:
      var p = frame.payload
      guard let n = p.readInteger(as: UInt32.self), n > 0 else { throw WireViolation.malformed("credit") }
      let window =
        isMine(frame.stream)
        ? state.withLockedValue { $0.outgoing[frame.stream] }?.argumentWindow
        : state.withLockedValue { $0.incoming[frame.stream] }?.replyWindow
      guard window?.add(Int(n)) ?? true else {
        throw WireViolation.malformed("credit of \(n) bytes beyond the window on stream \(frame.stream)")
      }
    case .keepalive:
      var p = frame.payload
      guard let seq = p.readInteger(as: UInt64.self), let lease = p.readInteger(as: UInt64.self) else {
        throw WireViolation.malformed("keepalive")
      }
      guard let onKeepalive else { throw WireViolation.malformed("keepalive sent to a driver") }
      let healthy = onKeepalive(lease)
      var ack = channel.allocator.buffer(capacity: 9)
      ack.writeInteger(seq)
      ack.writeInteger(UInt8(healthy ? 1 : 0))
      send(.keepaliveAck, 0, ack)
    case .keepaliveAck:
      var p = frame.payload
      guard let seq = p.readInteger(as: UInt64.self), let healthy = p.readInteger(as: UInt8.self) else {
        throw WireViolation.malformed("keepalive ack")
      }
      state.withLockedValue { $0.keepaliveWaiters.removeValue(forKey: seq) }?(.success(healthy == 1))
    case .refuse:
      let reason = wireText(frame.payload)
      log("\(peer) refused this connection: \(reason)")
      close(.fatal(address: peer, kind: .fingerprintMismatch, message: reason))
    case .hello, .proof:
      throw WireViolation.malformed("handshake frame after authentication")
    }
  }

  @discardableResult
  private func finishOutgoing(_ stream: UInt32) -> OutgoingCall? {
    state.withLockedValue { $0.outgoing.removeValue(forKey: stream) }
  }

  /// The channel closed or failed: fail every call, once.
  func lost(_ error: BigmachineError) {
    let (outgoing, incoming, waiters, handlers):
      (
        [OutgoingCall], [IncomingCall], [@Sendable (Result<Bool, any Error>) -> Void],
        [@Sendable (BigmachineError) -> Void]
      ) = state.withLockedValue { s in
        guard s.closed == nil else { return ([], [], [], []) }
        s.closed = error
        defer {
          s.outgoing = [:]
          s.incoming = [:]
          s.keepaliveWaiters = [:]
          s.closeHandlers = []
        }
        return (Array(s.outgoing.values), Array(s.incoming.values), Array(s.keepaliveWaiters.values), s.closeHandlers)
      }
    for call in outgoing { call.fail(error) }
    for call in incoming { call.cancel() }
    for w in waiters { w(.failure(error)) }
    for h in handlers { h(error) }
  }

  // MARK: Serving

  private func startServing(_ stream: UInt32, _ header: CallHeader) throws {
    let streams = header.flags & CallHeader.streamsArgument != 0
    let input: InboundStream? =
      streams
      ? InboundStream(window: WireLimits.streamWindow, grant: { [weak self] n in self?.grant(n, on: stream) }) : nil
    let call = IncomingCall(input: input)
    enum Admission { case admitted, duplicate, closed }
    let admission: Admission = state.withLockedValue { s in
      if s.closed != nil { return .closed }
      if s.incoming[stream] != nil { return .duplicate }
      s.incoming[stream] = call
      return .admitted
    }
    switch admission {
    case .admitted: break
    case .duplicate: throw WireViolation.malformed("stream \(stream) reused")
    // Frames read together with the one that closed the connection still arrive here.
    case .closed: return
    }
    call.setTask(
      Task(executorPreference: executor) { [self] in
        await self.serve(stream, header, call)
        _ = self.state.withLockedValue { $0.incoming.removeValue(forKey: stream) }
      })
  }

  private func serve(_ stream: UInt32, _ header: CallHeader, _ call: IncomingCall) async {
    let allocator = channel.allocator
    guard let handler = methods?.handler(for: header.method) else {
      let error = WireError(
        errorClass: .fatal, kind: BigmachineError.FatalKind.unknownMethod.rawValue,
        message: "no method \(header.method) is installed on this machine", temporary: false)
      send(.end, stream, EndPayload.encode(error, allocator: allocator))
      return
    }
    let replied = NIOLockedValueBox<(done: Bool, streams: Bool)>((false, false))
    let served = ServedCall(
      method: header.method, argument: header.argument,
      context: CallContext(method: header.method, input: ByteStream(call.input ?? .empty())),
      reply: { [weak self] reply, streams in
        // A reply too large for one frame fails this call alone, not the connection.
        let limit = WireLimits.maxPayload - 1
        let fits = reply.readableBytes <= limit
        let first = replied.withLockedValue { r -> Bool in
          if r.done { return false }
          r = (true, streams && fits)
          return true
        }
        guard first, let self else { return }
        guard fits else {
          let message =
            "the reply of \(header.method) is \(reply.readableBytes) bytes encoded, over the limit of \(limit) bytes for a reply sent whole; return large data as a reply stream (ServiceMethod.streaming)"
          self.log("failing a call from \(self.peer): \(message)")
          let error = WireError(
            errorClass: .fatal, kind: BigmachineError.FatalKind.badArgument.rawValue, message: message,
            temporary: false)
          self.send(.end, stream, EndPayload.encode(error, allocator: allocator))
          return
        }
        let flags = streams ? ReplyHeader.streamsReply : 0
        self.send(.reply, stream, ReplyHeader(flags: flags, reply: reply).encode(allocator: allocator))
      },
      writer: StreamWriter(window: call.replyWindow) { [weak self] chunk in self?.send(.data, stream, chunk) })
    do {
      try await handler(served)
      let r = replied.withLockedValue { $0 }
      if !r.done {
        let error = WireError(
          errorClass: .fatal, kind: BigmachineError.FatalKind.protocolViolation.rawValue,
          message: "\(header.method) returned without a reply", temporary: false)
        send(.end, stream, EndPayload.encode(error, allocator: allocator))
      } else if r.streams {
        send(.end, stream, EndPayload.encode(nil, allocator: allocator))
      }
    } catch {
      send(.end, stream, EndPayload.encode(WireError(serving: error), allocator: allocator))
    }
  }

  private func grant(_ n: Int, on stream: UInt32) {
    var p = channel.allocator.buffer(capacity: 4)
    p.writeInteger(UInt32(n))
    send(.credit, stream, p)
  }

  func send(_ kind: FrameKind, _ stream: UInt32, _ payload: ByteBuffer) {
    channel.writeAndFlush(WireFrame(kind: kind, stream: stream, payload: payload), promise: nil)
  }
}
