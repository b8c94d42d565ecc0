import NIOConcurrencyHelpers
import NIOCore

/// The caller's side of one call.
final class OutgoingCall: @unchecked Sendable {
  let stream: UInt32
  let method: String
  let argumentWindow = SendWindow(window: WireLimits.streamWindow)
  let replyStream: InboundStream
  private struct State {
    var result: Result<ReplyHeader, any Error>?
    var waiter: CheckedContinuation<ReplyHeader, any Error>?
    var pump: Task<Void, Never>?
    var done = false
  }
  private let state = NIOLockedValueBox(State())

  init(stream: UInt32, method: String, connection: Connection) {
    self.stream = stream
    self.method = method
    replyStream = InboundStream(
      window: WireLimits.streamWindow,
      grant: { [weak connection] n in
        var p = ByteBufferAllocator().buffer(capacity: 4)
        p.writeInteger(UInt32(n))
        connection?.send(.credit, stream, p)
      },
      onAbandon: { [weak connection] in connection?.abandon(stream) })
  }

  func setPump(_ task: Task<Void, Never>) {
    let cancel = state.withLockedValue { s -> Bool in
      s.pump = task
      return s.done
    }
    if cancel { task.cancel() }
  }

  func waitForReply() async throws -> ReplyHeader {
    try await withCheckedThrowingContinuation { cont in
      let r: Result<ReplyHeader, any Error>? = state.withLockedValue { s in
        if let r = s.result { return r }
        s.waiter = cont
        return nil
      }
      if let r { cont.resume(with: r) }
    }
  }

  /// Settles the reply (first result wins). A successful reply that does not stream also ends
  /// the argument stream's pump.
  func resolve(_ result: Result<ReplyHeader, any Error>) {
    let w: CheckedContinuation<ReplyHeader, any Error>? = state.withLockedValue { s in
      if s.result != nil { return nil }
      s.result = result
      defer { s.waiter = nil }
      return s.waiter
    }
    w?.resume(with: result)
    if case .success(let h) = result, h.flags & ReplyHeader.streamsReply != 0 { return }
    stopPump()
  }

  /// The callee ended the call: before a reply that is the call's failure, after a streamed
  /// reply it ends the reply stream.
  func end(_ error: BigmachineError?) {
    let replied = state.withLockedValue { $0.result != nil }
    if replied {
      replyStream.finish(error)
    } else {
      resolve(
        .failure(
          error ?? .fatal(address: "", kind: .protocolViolation, message: "\(method) ended without a reply")))
      replyStream.finish(error)
    }
    stopPump()
  }

  /// Fails the call however far it got.
  func fail(_ error: any Error) {
    resolve(.failure(error))
    replyStream.finish(error)
    argumentWindow.fail(error)
    stopPump()
  }

  private func stopPump() {
    let pump = state.withLockedValue { s -> Task<Void, Never>? in
      s.done = true
      return s.pump
    }
    pump?.cancel()
  }
}

/// The callee's side of one call.
final class IncomingCall: @unchecked Sendable {
  let input: InboundStream?
  let replyWindow = SendWindow(window: WireLimits.streamWindow)
  private let task = NIOLockedValueBox<(task: Task<Void, Never>?, cancelled: Bool)>((nil, false))

  init(input: InboundStream?) { self.input = input }

  func setTask(_ t: Task<Void, Never>) {
    let cancelled = task.withLockedValue { s -> Bool in
      s.task = t
      return s.cancelled
    }
    if cancelled { t.cancel() }
  }

  /// The caller cancelled, or the connection is gone: cancel the method's task.
  func cancel() {
    let t = task.withLockedValue { s -> Task<Void, Never>? in
      s.cancelled = true
      return s.task
    }
    t?.cancel()
    input?.finish(CancellationError())
    replyWindow.fail(CancellationError())
  }
}
