import NIOConcurrencyHelpers
import NIOCore

// Flow control: credit windows per stream and direction, as in HTTP/2.
//
// A sender may have at most `WireLimits.streamWindow` bytes of data in flight on a stream:
// sent but not yet handed to the consumer on the other side. The receiver counts the bytes
// its consumer takes and, once a quarter of the window has been taken, sends a `credit` frame
// returning them. A sender without credit waits; a receiver that gets more than the window
// closes the connection. So a stream of any length holds at most one window (plus the chunk
// in the consumer's hands) in the receiver's memory, and the sender's queue is bounded the
// same way, however slow the consumer.

/// The receiving end of one stream direction: chunks delivered from the event loop, taken by
/// one consumer task.
final class InboundStream: @unchecked Sendable {
  private struct State {
    var chunks = CircularBuffer<ByteBuffer>()
    var buffered = 0
    var unreported = 0
    var ended = false
    var error: (any Error)?
    var waiter: CheckedContinuation<ByteBuffer?, any Error>?
  }
  private let state = NIOLockedValueBox(State())
  let window: Int
  private let grant: @Sendable (Int) -> Void
  /// Called once if the consumer's task is cancelled while it waits, or the consumer
  /// abandons the stream before its end.
  let onAbandon: (@Sendable () -> Void)?

  init(window: Int, grant: @escaping @Sendable (Int) -> Void, onAbandon: (@Sendable () -> Void)? = nil) {
    self.window = window
    self.grant = grant
    self.onAbandon = onAbandon
  }

  /// A stream that has already ended without data.
  static func empty() -> InboundStream {
    let s = InboundStream(window: 0, grant: { _ in })
    s.finish(nil)
    return s
  }

  /// Adds a chunk from the peer. Returns false if the peer overran its credit.
  func deliver(_ chunk: ByteBuffer) -> Bool {
    let n = chunk.readableBytes
    var overrun = false
    var resume: CheckedContinuation<ByteBuffer?, any Error>?
    var toGrant = 0
    state.withLockedValue { s in
      if s.ended { return }
      if s.buffered + s.unreported + n > window {
        overrun = true
        return
      }
      if let w = s.waiter {
        s.waiter = nil
        resume = w
        toGrant = account(&s, n)
      } else {
        s.chunks.append(chunk)
        s.buffered += n
      }
    }
    if toGrant > 0 { grant(toGrant) }
    resume?.resume(returning: chunk)
    return !overrun
  }

  /// Ends the stream: cleanly if `error` is nil. Chunks already delivered are still read first.
  func finish(_ error: (any Error)?) {
    let waiter: CheckedContinuation<ByteBuffer?, any Error>? = state.withLockedValue { s in
      if s.ended { return nil }
      s.ended = true
      s.error = error
      if s.chunks.isEmpty, let w = s.waiter {
        s.waiter = nil
        return w
      }
      return nil
    }
    if let waiter {
      if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }
  }

  /// Whether the stream has ended and every chunk has been taken.
  var isDrained: Bool { state.withLockedValue { $0.ended && $0.chunks.isEmpty } }

  /// The next chunk, or nil at a clean end. Throws the stream's error at a failed end, and
  /// `CancellationError` if the task is cancelled while waiting.
  func next() async throws -> ByteBuffer? {
    if let r = take() { return try r.get() }
    return try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (cont: CheckedContinuation<ByteBuffer?, any Error>) in
        var result: Result<ByteBuffer?, any Error>?
        var toGrant = 0
        state.withLockedValue { s in
          if let r = pop(&s, &toGrant) {
            result = r
          } else if Task.isCancelled {
            result = .failure(CancellationError())
          } else {
            s.waiter = cont
          }
        }
        if toGrant > 0 { grant(toGrant) }
        if let result { cont.resume(with: result) }
      }
    } onCancel: {
      let w = state.withLockedValue { s -> CheckedContinuation<ByteBuffer?, any Error>? in
        defer { s.waiter = nil }
        return s.waiter
      }
      if let w {
        w.resume(throwing: CancellationError())
        onAbandon?()
      }
    }
  }

  private func take() -> Result<ByteBuffer?, any Error>? {
    var toGrant = 0
    let r = state.withLockedValue { pop(&$0, &toGrant) }
    if toGrant > 0 { grant(toGrant) }
    return r
  }

  private func pop(_ s: inout State, _ toGrant: inout Int) -> Result<ByteBuffer?, any Error>? {
    if !s.chunks.isEmpty {
      let c = s.chunks.removeFirst()
      s.buffered -= c.readableBytes
      toGrant = account(&s, c.readableBytes)
      return .success(c)
    }
    if s.ended {
      if let e = s.error { return .failure(e) }
      return .success(nil)
    }
    return nil
  }

  /// Counts `n` bytes taken by the consumer; returns the credit to grant now (0 to wait for more).
  private func account(_ s: inout State, _ n: Int) -> Int {
    s.unreported += n
    guard s.unreported >= window / 4 else { return 0 }
    defer { s.unreported = 0 }
    return s.ended ? 0 : s.unreported
  }
}

/// The sending side's credit on one stream direction. It starts at the whole window, and
/// never holds more: an honest receiver returns only bytes it was sent.
final class SendWindow: @unchecked Sendable {
  private struct State {
    var credit: Int
    var waiter: CheckedContinuation<Void, any Error>?
    var failure: (any Error)?
  }
  private let state: NIOLockedValueBox<State>
  let window: Int

  init(window: Int) {
    self.window = window
    state = NIOLockedValueBox(State(credit: window))
  }

  /// Waits for credit, then takes up to `max` bytes of it. Throws once the stream has failed
  /// or the task is cancelled.
  func acquire(max: Int) async throws -> Int {
    while true {
      let got: Int? = try state.withLockedValue { s in
        if let f = s.failure { throw f }
        guard s.credit > 0 else { return nil }
        let n = min(s.credit, max)
        s.credit -= n
        return n
      }
      if let got { return got }
      try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (cont: CheckedContinuation<Void, any Error>) in
          var result: Result<Void, any Error>?
          state.withLockedValue { s in
            if let f = s.failure {
              result = .failure(f)
            } else if s.credit > 0 {
              result = .success(())
            } else if Task.isCancelled {
              result = .failure(CancellationError())
            } else {
              s.waiter = cont
            }
          }
          if let result { cont.resume(with: result) }
        }
      } onCancel: {
        let w = state.withLockedValue { s -> CheckedContinuation<Void, any Error>? in
          defer { s.waiter = nil }
          return s.waiter
        }
        w?.resume(throwing: CancellationError())
      }
    }
  }

  /// Adds `n` (at least 0) bytes of credit granted by the peer. Returns false, and adds
  /// nothing, if the credit would exceed the window: the peer broke the protocol.
  func add(_ n: Int) -> Bool {
    var ok = true
    let w = state.withLockedValue { s -> CheckedContinuation<Void, any Error>? in
      guard n <= window - s.credit else {
        ok = false
        return nil
      }
      s.credit += n
      defer { s.waiter = nil }
      return s.waiter
    }
    w?.resume()
    return ok
  }

  /// Fails the window: waiting and later `acquire`s throw `error`.
  func fail(_ error: any Error) {
    let w = state.withLockedValue { s -> CheckedContinuation<Void, any Error>? in
      if s.failure == nil { s.failure = error }
      defer { s.waiter = nil }
      return s.waiter
    }
    w?.resume(throwing: error)
  }
}

/// A stream of byte chunks from another machine: a streamed reply on the caller's side, or a
/// streamed argument inside a service method (``CallContext/input``).
///
/// Iterate it once. Chunks arrive as the wire delivered them (at most 1 MiB each, often less); at most
/// 8 MiB are buffered ahead of the reader, and the sender waits beyond that. Iteration throws
/// the sender's error at the end of a failed stream, a ``BigmachineError/network(address:reason:)``
/// if the connection is lost, and `CancellationError` if the reading task is cancelled (the
/// call is then cancelled on the other side too). Dropping a reply stream before its end
/// cancels the call.
public struct ByteStream: AsyncSequence, Sendable {
  public typealias Element = ByteBuffer

  final class Owner: Sendable {
    let source: InboundStream
    init(_ source: InboundStream) { self.source = source }
    deinit {
      if !source.isDrained { source.onAbandon?() }
    }
  }
  let owner: Owner

  init(_ source: InboundStream) { owner = Owner(source) }

  /// An iterator over the chunks.
  public struct AsyncIterator: AsyncIteratorProtocol {
    let owner: Owner
    /// The next chunk, or nil at the end. Cost: no copy; waits if nothing is buffered.
    public mutating func next() async throws -> ByteBuffer? { try await owner.source.next() }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(owner: owner) }

  /// All remaining bytes as one array. Throws a fatal `badArgument` error past `limit`
  /// bytes (so a surprise gigabyte does not land in memory), and whatever iteration throws.
  public func collect(upTo limit: Int) async throws -> [UInt8] {
    var out: [UInt8] = []
    for try await chunk in self {
      guard out.count + chunk.readableBytes <= limit else {
        throw BigmachineError.fatal(address: "", kind: .badArgument, message: "stream longer than \(limit) bytes")
      }
      out += chunk.readableBytesView
    }
    return out
  }
}

/// Writes a streamed reply (inside a streaming service method) or a streamed argument.
/// Each `write` waits while the receiver's window is full, so a fast writer cannot fill
/// memory; the bytes are cut into frames of at most 1 MiB and not copied.
public struct StreamWriter: Sendable {
  let window: SendWindow
  let send: @Sendable (ByteBuffer) -> Void

  /// Sends `chunk`. Throws if the stream was cancelled, its connection lost, or the task cancelled.
  public func write(_ chunk: ByteBuffer) async throws {
    var chunk = chunk
    while chunk.readableBytes > 0 {
      let n = try await window.acquire(max: min(chunk.readableBytes, WireLimits.maxDataChunk))
      send(chunk.readSlice(length: n)!)
    }
  }

  /// Sends a copy of `bytes`.
  public func write(_ bytes: [UInt8]) async throws {
    try await write(ByteBuffer(bytes: bytes))
  }
}
