import NIOCore

// The wire format. Every frame is
//
//     u32 length (big-endian; counts kind + stream + payload, so at least 5)
//     u8  kind
//     u32 stream id (0 for connection-level frames)
//     payload (length - 5 bytes)
//
// Before authentication a frame may be at most `WireLimits.maxHandshakeFrame` bytes and only
// `hello`, `proof` and `refuse` are allowed; afterwards at most `WireLimits.maxFrame`.
// Stream ids are chosen by the caller: the side that dialed uses odd ids, the side that
// accepted even ids, so both sides can call without colliding.
//
// A call's life on one stream:
//   caller → callee: call, then (if the call streams its argument) data* and end; cancel at any time
//   callee → caller: reply (or end with an error), then (if the reply streams) data* and end
//   credit frames flow opposite to data, granting the sender more bytes (see ByteStream.swift).

/// Kinds of frame. Numbers are part of the protocol.
enum FrameKind: UInt8, Sendable {
  /// Handshake: magic, version, role, nonce, fingerprints (Authentication.swift).
  case hello = 1
  /// Handshake: HMAC-SHA256 proof of the secret over both hellos.
  case proof = 2
  /// The peer was refused after authenticating (fingerprint mismatch); payload is UTF-8 text.
  case refuse = 3
  /// Starts a call: method name, flags, encoded argument.
  case call = 4
  /// The callee's successful reply: flags, encoded reply.
  case reply = 5
  /// A chunk of a streamed argument or reply.
  case data = 6
  /// Ends a stream direction: status, then an encoded `WireError` if it failed.
  case end = 7
  /// The caller abandons the call; the callee cancels its task.
  case cancel = 8
  /// Grants the other side more bytes of data on the stream (u32).
  case credit = 9
  /// The driver renews the worker's lease: u64 sequence, u64 lease in milliseconds.
  case keepalive = 10
  /// The worker acknowledges a keepalive: u64 sequence, u8 healthy.
  case keepaliveAck = 11
}

/// Bounds on everything that has a length.
enum WireLimits {
  /// Largest frame after authentication (kind + stream + payload).
  static let maxFrame = 16 << 20
  /// Largest frame before authentication.
  static let maxHandshakeFrame = 1024
  /// Bytes before the payload: length, kind, stream.
  static let headerSize = 9
  /// Longest method name.
  static let maxMethodName = 512
  /// Largest data frame a sender produces (receivers accept up to `maxFrame`).
  static let maxDataChunk = 1 << 20
  /// Bytes of data a receiver buffers per stream before the sender must wait for credit.
  static let streamWindow = 8 << 20
  /// Largest payload of a frame after authentication: room is left for a sealed frame's tag.
  static let maxPayload = maxFrame - 5 - FrameCipher.tagSize
  /// Handshakes under way on one listener, in all and from one address; connections beyond
  /// either are closed when accepted.
  static let maxPendingHandshakes = 256
  static let maxPendingHandshakesPerAddress = 32
  /// Longest text taken from a peer (a refusal, an error's kind or message), in Unicode scalars.
  static let maxPeerText = 1024
}

/// One decoded frame; `payload` is a view of the bytes after the header.
struct WireFrame: Sendable {
  var kind: FrameKind
  var stream: UInt32
  var payload: ByteBuffer
}

/// Why the bytes on a connection are not a valid frame sequence.
enum WireViolation: Error, CustomStringConvertible {
  case oversized(length: Int, limit: Int)
  case tooShort(length: Int)
  case unknownKind(UInt8)
  case malformed(String)
  /// A sealed frame that does not open: altered, dropped, repeated or reordered on the way,
  /// or sealed under another key.
  case integrity

  var description: String {
    switch self {
    case .oversized(let length, let limit): return "frame of \(length) bytes exceeds the limit of \(limit)"
    case .tooShort(let length): return "frame length \(length) is shorter than its header"
    case .unknownKind(let kind): return "unknown frame kind \(kind)"
    case .malformed(let what): return "malformed frame: \(what)"
    case .integrity:
      return "a sealed frame failed its integrity check (altered, replayed or reordered on the way)"
    }
  }
}

/// Splits a byte stream into frames. It checks each length against `maxFrame` before it
/// waits for, or allocates, the payload. A payload that arrives whole inside one read is a
/// slice of that read (no copy); one that spans reads is copied once into its own buffer,
/// except a `data` payload: stream bytes have no boundaries, so it is passed on piece by
/// piece as it arrives, each piece a `data` frame of its own and a slice of its read.
/// Once `opener` is set (by the frame handler, between two frames, when the handshake ends),
/// each frame's payload is sealed (`FrameCipher`): it is opened as its pieces arrive into a
/// buffer of its own, and passed on as one plaintext frame once its tag is checked.
/// A class, so the frame handler may raise `maxFrame` while a parse is under way.
final class WireFrameParser {
  var maxFrame: Int
  var opener: FrameCipher?
  private var header: [UInt8] = []
  /// A frame whose payload spans reads: what has come of it (opened, when sealed), the bytes
  /// still to come, and the tag's bytes so far.
  private struct Partial {
    var kind: FrameKind
    var stream: UInt32
    var payload: ByteBuffer
    var remaining: Int
    var tag: [UInt8] = []
  }
  private var partial: Partial?
  /// The stream and the bytes still to come of a `data` frame being passed on in pieces.
  private var passing: (stream: UInt32, remaining: Int)?

  init(maxFrame: Int) { self.maxFrame = maxFrame }

  /// Consumes all of `input`, calling `emit` for each complete frame. Throws a
  /// `WireViolation` at the first bad header; the connection must then be closed.
  func parse(_ input: inout ByteBuffer, emit: (WireFrame) throws -> Void) throws {
    while input.readableBytes > 0 {
      if var p = passing {
        let n = min(p.remaining, input.readableBytes)
        let piece = input.readSlice(length: n)!
        p.remaining -= n
        passing = p.remaining == 0 ? nil : p
        try emit(WireFrame(kind: .data, stream: p.stream, payload: piece))
        continue
      }
      if var p = partial {
        try absorb(input.readSlice(length: min(p.remaining, input.readableBytes))!, into: &p)
        if p.remaining == 0 {
          partial = nil
          if let opener { try opener.finishOpen(tag: p.tag) }
          try emit(WireFrame(kind: p.kind, stream: p.stream, payload: p.payload))
        } else {
          partial = p
        }
        continue
      }
      let length: Int
      let kindByte: UInt8
      let stream: UInt32
      if header.isEmpty && input.readableBytes >= WireLimits.headerSize {
        length = Int(input.readInteger(as: UInt32.self)!)
        kindByte = input.readInteger(as: UInt8.self)!
        stream = input.readInteger(as: UInt32.self)!
      } else {
        let need = WireLimits.headerSize - header.count
        let take = min(need, input.readableBytes)
        header += input.readBytes(length: take)!
        // Check the length as soon as its four bytes are here.
        if header.count >= 4 { try check(length: Self.u32(header, 0)) }
        guard header.count == WireLimits.headerSize else { return }
        length = Int(Self.u32(header, 0))
        kindByte = header[4]
        stream = Self.u32(header, 5)
        header.removeAll(keepingCapacity: true)
      }
      try check(length: UInt32(length))
      guard let kind = FrameKind(rawValue: kindByte) else { throw WireViolation.unknownKind(kindByte) }
      let payloadLength = length - 5
      let sealed = opener != nil
      if sealed && payloadLength < FrameCipher.tagSize { throw WireViolation.integrity }
      // An empty data frame carries nothing and costs the window nothing: a peer could queue
      // them without bound.
      if kind == .data && payloadLength == (sealed ? FrameCipher.tagSize : 0) {
        throw WireViolation.malformed("empty data frame")
      }
      if input.readableBytes >= payloadLength {
        let payload = input.readSlice(length: payloadLength)!
        try emit(WireFrame(kind: kind, stream: stream, payload: try open(payload, length, kindByte, stream)))
      } else if kind == .data && !sealed {
        passing = (stream, payloadLength)
        // The header may end exactly where the read does: the bytes come with the next one.
        if input.readableBytes > 0 {
          let piece = input.readSlice(length: input.readableBytes)!
          passing = (stream, payloadLength - piece.readableBytes)
          try emit(WireFrame(kind: .data, stream: stream, payload: piece))
        }
      } else {
        var p = Partial(
          kind: kind, stream: stream,
          payload: ByteBufferAllocator().buffer(capacity: payloadLength - (sealed ? FrameCipher.tagSize : 0)),
          remaining: payloadLength)
        try opener?.beginOpen(header: WireFrameEncoder.header(length: length, kind: kindByte, stream: stream))
        try absorb(input.readSlice(length: input.readableBytes)!, into: &p)
        partial = p
      }
    }
  }

  /// Takes `piece`, the next bytes of `p`'s payload: copied, or opened into it when sealed,
  /// the tag's bytes kept aside.
  private func absorb(_ piece: ByteBuffer, into p: inout Partial) throws {
    var piece = piece
    let n = piece.readableBytes
    if let opener {
      let ciphertext = min(n, max(0, p.remaining - FrameCipher.tagSize))
      try opener.openPiece(piece.readSlice(length: ciphertext)!, into: &p.payload)
      p.tag += piece.readableBytesView
    } else {
      p.payload.writeBuffer(&piece)
    }
    p.remaining -= n
  }

  /// The payload as the frame handler sees it: opened when frames are sealed.
  private func open(_ payload: ByteBuffer, _ length: Int, _ kind: UInt8, _ stream: UInt32) throws -> ByteBuffer {
    guard let cipher = opener else { return payload }
    return try cipher.open(
      payload, header: WireFrameEncoder.header(length: length, kind: kind, stream: stream),
      allocator: ByteBufferAllocator())
  }

  private func check(length: UInt32) throws {
    guard length >= 5 else { throw WireViolation.tooShort(length: Int(length)) }
    guard Int(length) <= maxFrame else { throw WireViolation.oversized(length: Int(length), limit: maxFrame) }
  }

  private static func u32(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
  }
}

/// Writes `WireFrame`s: a small payload goes out in one buffer with its header, a large one
/// as a separate buffer after it (a vector write, no copy). Once `sealer` is set (by the
/// frame handler, on the event loop, when the handshake ends), each payload goes out sealed
/// after its header, in one buffer.
///
/// Senders check sizes first (`Connection.call`, a served reply); a frame over
/// `WireLimits.maxFrame` that still gets here is not written: its promise fails and the
/// error goes up the pipeline, which closes the connection.
/// `@unchecked Sendable`: `sealer` is read and set only on the channel's event loop.
final class WireFrameEncoder: ChannelOutboundHandler, @unchecked Sendable {
  typealias OutboundIn = WireFrame
  typealias OutboundOut = ByteBuffer

  var sealer: FrameCipher?

  /// The 9 header bytes of a frame whose length field is `length`.
  static func header(length: Int, kind: UInt8, stream: UInt32) -> [UInt8] {
    let l = UInt32(length)
    return [
      UInt8(l >> 24), UInt8(l >> 16 & 255), UInt8(l >> 8 & 255), UInt8(l & 255), kind,
      UInt8(stream >> 24), UInt8(stream >> 16 & 255), UInt8(stream >> 8 & 255), UInt8(stream & 255),
    ]
  }

  func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
    let frame = unwrapOutboundIn(data)
    let tag = sealer == nil ? 0 : FrameCipher.tagSize
    guard frame.payload.readableBytes <= WireLimits.maxPayload else {
      let error = WireViolation.oversized(length: 5 + frame.payload.readableBytes + tag, limit: WireLimits.maxFrame)
      promise?.fail(error)
      context.fireErrorCaught(error)
      return
    }
    let small = frame.payload.readableBytes <= 4096
    var header = context.channel.allocator.buffer(
      capacity: WireLimits.headerSize + (small || tag > 0 ? frame.payload.readableBytes + tag : 0))
    header.writeInteger(UInt32(5 + frame.payload.readableBytes + tag))
    header.writeInteger(frame.kind.rawValue)
    header.writeInteger(frame.stream)
    if let sealer {
      do {
        try sealer.seal(frame.payload, appendingTo: &header)
      } catch {
        promise?.fail(error)
        context.fireErrorCaught(error)
        return
      }
      context.write(wrapOutboundOut(header), promise: promise)
    } else if small {
      var payload = frame.payload
      header.writeBuffer(&payload)
      context.write(wrapOutboundOut(header), promise: promise)
    } else {
      context.write(wrapOutboundOut(header), promise: nil)
      context.write(wrapOutboundOut(frame.payload), promise: promise)
    }
  }
}

// Payload layouts of the frames that carry more than raw bytes.

/// `call`: u16 method length, method (UTF-8), u8 flags (bit 0: the argument streams), argument.
struct CallHeader {
  static let streamsArgument: UInt8 = 1
  var method: String
  var flags: UInt8
  var argument: ByteBuffer

  /// The largest argument that fits in a call frame beside `method`.
  static func maxArgument(method: String) -> Int { WireLimits.maxPayload - 3 - method.utf8.count }

  /// The payload. `method` must be at most `WireLimits.maxMethodName` bytes (the caller checks).
  func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
    var b = allocator.buffer(capacity: 3 + method.utf8.count + argument.readableBytes)
    b.writeInteger(UInt16(method.utf8.count))
    b.writeString(method)
    b.writeInteger(flags)
    var a = argument
    b.writeBuffer(&a)
    return b
  }

  static func decode(_ payload: ByteBuffer) throws -> CallHeader {
    var p = payload
    guard let n = p.readInteger(as: UInt16.self), Int(n) <= WireLimits.maxMethodName,
      let method = p.readString(length: Int(n)), let flags = p.readInteger(as: UInt8.self)
    else { throw WireViolation.malformed("call header") }
    return CallHeader(method: method, flags: flags, argument: p)
  }
}

/// `reply`: u8 flags (bit 0: the reply streams), encoded reply.
struct ReplyHeader {
  static let streamsReply: UInt8 = 1
  var flags: UInt8
  var reply: ByteBuffer

  func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
    var b = allocator.buffer(capacity: 1 + reply.readableBytes)
    b.writeInteger(flags)
    var r = reply
    b.writeBuffer(&r)
    return b
  }

  static func decode(_ payload: ByteBuffer) throws -> ReplyHeader {
    var p = payload
    guard let flags = p.readInteger(as: UInt8.self) else { throw WireViolation.malformed("reply header") }
    return ReplyHeader(flags: flags, reply: p)
  }
}

/// `end`: u8 status (0 ok, 1 failed), then for a failure the JSON of a `WireError`. Both ends
/// bound the error's text (`wireText`), so the frame stays small whatever a method throws.
enum EndPayload {
  static func encode(_ error: WireError?, allocator: ByteBufferAllocator) -> ByteBuffer {
    var b = allocator.buffer(capacity: 1)
    if let error {
      b.writeInteger(UInt8(1))
      b.writeBytes((try? Payload.encode(error.bounded())) ?? [])
    } else {
      b.writeInteger(UInt8(0))
    }
    return b
  }

  /// Nil for a clean end; the error for a failed one.
  static func decode(_ payload: ByteBuffer) throws -> WireError? {
    var p = payload
    guard let status = p.readInteger(as: UInt8.self) else { throw WireViolation.malformed("end status") }
    if status == 0 { return nil }
    guard status == 1, let error = try? Payload.decode(WireError.self, from: p) else {
      throw WireViolation.malformed("end error")
    }
    return error.bounded()
  }
}

/// Text from a peer made fit to log and keep: at most `WireLimits.maxPeerText` Unicode
/// scalars (the last an ellipsis when cut), each control character (line breaks and terminal
/// escapes among them) replaced by U+FFFD. Cost: one pass over at most that many scalars.
func wireText<S: StringProtocol>(_ text: S) -> String {
  var out = String.UnicodeScalarView()
  var kept = 0
  var scalars = text.unicodeScalars.makeIterator()
  while let scalar = scalars.next() {
    let safe: Unicode.Scalar = scalar.properties.generalCategory == .control ? "\u{FFFD}" : scalar
    if kept == WireLimits.maxPeerText - 1 {
      // Room for one more: this scalar if it is the last, else the ellipsis.
      out.append(scalars.next() == nil ? safe : "\u{2026}")
      break
    }
    out.append(safe)
    kept += 1
  }
  return String(out)
}

/// `wireText` of a payload's bytes, invalid UTF-8 replaced. Decodes only a prefix long
/// enough for the scalars kept (at most four bytes each) and for an ellipsis to show the cut.
func wireText(_ payload: ByteBuffer) -> String {
  let bytes = payload.readableBytesView.prefix(4 * WireLimits.maxPeerText + 4)
  return wireText(String(decoding: bytes, as: UTF8.self))
}
