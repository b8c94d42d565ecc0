import Bigmachine
import NIOCore
import SliceIO
import Synchronization

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// One partition of one stored output.
struct PartRef: Hashable, Codable, Sendable, CustomStringConvertible {
  var output: OutputRef
  var partition: Int
  var description: String { "\(output.task) partition \(partition)" }
}

/// A batched read (`Bigslice.readMany`): whole partitions of outputs a machine holds, in one
/// stream. The reply is an entry per part, in the order asked, until `budget` bytes are sent
/// (the first part always goes): a kind byte (`BatchedPart.Kind`), a 4-byte big-endian
/// length, and that many bytes (the partition's blocks, or why it is missing).
struct ReadManyRequest: Codable, Sendable {
  var parts: [PartRef]
  var budget: Int
  /// A part with more bytes than this is only marked `large`: the reader streams it alone.
  var partLimit: Int

  init(parts: [PartRef], budget: Int, partLimit: Int) {
    self.parts = parts
    self.budget = budget
    self.partLimit = partLimit
  }

  // The parts travel packed, four little-endian 64-bit numbers each (invocation, task,
  // attempt, partition): a thousand JSON objects cost more to code than the rows they fetch.
  private enum CodingKeys: String, CodingKey { case parts, budget, partLimit }

  func encode(to encoder: any Encoder) throws {
    var packed = [UInt8]()
    packed.reserveCapacity(parts.count * 32)
    for p in parts {
      for n in [p.output.task.invocation, p.output.task.index, p.output.attempt, p.partition] {
        withUnsafeBytes(of: Int64(n).littleEndian) { packed += $0 }
      }
    }
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(Data(packed), forKey: .parts)
    try c.encode(budget, forKey: .budget)
    try c.encode(partLimit, forKey: .partLimit)
  }

  init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let packed = try c.decode(Data.self, forKey: .parts)
    guard packed.count % 32 == 0, packed.count / 32 <= Self.maxParts else {
      throw DecodingError.dataCorruptedError(
        forKey: .parts, in: c,
        debugDescription: "\(packed.count) bytes of parts: not whole parts of 32 bytes, or over \(Self.maxParts)")
    }
    parts = packed.withUnsafeBytes { raw in
      (0..<packed.count / 32).map { i in
        func n(_ k: Int) -> Int {
          Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 32 + k * 8, as: Int64.self)))
        }
        return PartRef(output: OutputRef(task: TaskRef(invocation: n(0), index: n(1)), attempt: n(2)), partition: n(3))
      }
    }
    budget = try c.decode(Int.self, forKey: .budget)
    partLimit = try c.decode(Int.self, forKey: .partLimit)
  }

  static let maxParts = 1024
  static let maxBudget = 64 << 20

  /// The most bytes an honest reply holds.
  var maxReply: Int { budget + partLimit + parts.count * (5 + BatchedPart.maxMessage) }

  /// The reply: each part as `lookup` finds it, until the budget is spent, handed to `emit`
  /// in chunks of about `chunk` bytes.
  func reply(
    chunk: Int, _ lookup: (PartRef) -> BatchedPart, emit: (ByteBuffer) async throws -> Void
  ) async rethrows {
    var sent = 0
    var out = ByteBufferAllocator().buffer(capacity: 0)
    for part in parts {
      let entry = lookup(part)
      if case .bytes(let bytes) = entry {
        if sent > 0 && sent + bytes.readableBytes > budget { break }
        sent += bytes.readableBytes
      }
      entry.append(to: &out)
      if out.readableBytes >= chunk {
        try await emit(out)
        out = ByteBufferAllocator().buffer(capacity: 0)
      }
    }
    if out.readableBytes > 0 { try await emit(out) }
  }
}

/// What a batched read says of one part.
enum BatchedPart: Equatable {
  case bytes(ByteBuffer)
  case large
  case missing(String)

  enum Kind: UInt8 {
    case bytes = 0
    case large = 1
    case missing = 2
  }

  /// Longest reason a `missing` entry carries.
  static let maxMessage = 4096

  /// Appends the entry to `out`.
  func append(to out: inout ByteBuffer) {
    switch self {
    case .bytes(var b):
      out.writeInteger(Kind.bytes.rawValue)
      out.writeInteger(UInt32(b.readableBytes))
      out.writeBuffer(&b)
    case .large:
      out.writeInteger(Kind.large.rawValue)
      out.writeInteger(UInt32(0))
    case .missing(let message):
      let text = Array(message.utf8.prefix(Self.maxMessage))
      out.writeInteger(Kind.missing.rawValue)
      out.writeInteger(UInt32(text.count))
      out.writeBytes(text)
    }
  }

  /// The entries of a reply to a request for `parts` with `partLimit`, checking every kind
  /// and length before it trusts it.
  /// - Throws: `BatchedReadError.malformed` on a reply no honest machine sends.
  static func parse(_ reply: ByteBuffer, parts: Int, partLimit: Int, from machine: String) throws -> [BatchedPart] {
    var r = reply
    var entries: [BatchedPart] = []
    while r.readableBytes > 0 {
      func bad(_ why: String) -> BatchedReadError { .malformed(machine: machine, why) }
      guard entries.count < parts else { throw bad("more entries than the \(parts) parts asked for") }
      guard let kindByte = r.readInteger(as: UInt8.self), let length = r.readInteger(as: UInt32.self) else {
        throw bad("a cut entry header")
      }
      guard let kind = Kind(rawValue: kindByte) else { throw bad("an entry of unknown kind \(kindByte)") }
      let n = Int(length)
      switch kind {
      case .bytes:
        guard n <= partLimit else { throw bad("a part of \(n) bytes, over the limit of \(partLimit)") }
        // A slice of the reply: no copy.
        guard let bytes = r.readSlice(length: n) else { throw bad("a part cut at \(r.readableBytes) of \(n) bytes") }
        entries.append(.bytes(bytes))
      case .large:
        guard n == 0 else { throw bad("a large entry with \(n) bytes") }
        entries.append(.large)
      case .missing:
        guard n <= maxMessage, let text = r.readString(length: n) else { throw bad("a missing entry's reason") }
        entries.append(.missing(text))
      }
    }
    return entries
  }
}

/// The whole of a batched read's reply.
/// - Throws: `BatchedReadError.malformed` once it runs over what an honest reply holds.
func gatherReply(
  _ stream: some AsyncSequence<ByteBuffer, any Error>, to request: ReadManyRequest, from machine: String
) async throws -> ByteBuffer {
  var all = ByteBufferAllocator().buffer(capacity: 0)
  for try await var chunk in stream {
    guard all.readableBytes + chunk.readableBytes <= request.maxReply else {
      throw BatchedReadError.malformed(machine: machine, "more bytes than the \(request.budget) asked for")
    }
    all.writeBuffer(&chunk)
  }
  return all
}

/// A batched read's reply that no honest machine sends.
enum BatchedReadError: Error, CustomStringConvertible {
  case malformed(machine: String, String)

  var description: String {
    switch self {
    case .malformed(let machine, let why): "a batched read from \(machine) was malformed: \(why)"
    }
  }
}

/// The small remote partitions one task reads, fetched many to a stream. A task of a shuffle
/// with thousands of upstream outputs reads a few rows from each; a stream per partition then
/// costs more than its rows. Here, opening a part that is not fetched yet asks its machine for
/// it and the parts after it (in the order the task reads them) in one `Bigslice.readMany`,
/// up to `budget` bytes; the rest wait in memory for their turn. A part larger than
/// `partLimit` comes back marked, and is streamed on its own.
final class BatchedReads: @unchecked Sendable {
  private struct State {
    /// Each machine's parts, in the order the task reads them, and where each part is.
    var queues: [String: [PartRef]] = [:]
    var places: [PartRef: (machine: String, index: Int)] = [:]
    var fetched: [PartRef: BatchedPart] = [:]
    /// Parts handed out (or being fetched), never asked for again.
    var taken: Set<PartRef> = []
    var counts = RemoteReadCounts()
  }
  private let state = Mutex(State())
  private let budget: Int
  private let partLimit: Int
  private let batchParts: Int
  private let fetch: @Sendable (_ machine: String, _ request: ReadManyRequest) async throws -> ByteBuffer

  /// Reads that ask `fetch` for the reply to a request, whole.
  init(
    budget: Int, partLimit: Int, batchParts: Int = 256,
    fetch: @escaping @Sendable (_ machine: String, _ request: ReadManyRequest) async throws -> ByteBuffer
  ) {
    self.budget = budget
    self.partLimit = partLimit
    self.batchParts = min(batchParts, ReadManyRequest.maxParts)
    self.fetch = fetch
  }

  /// The reads made so far.
  var counts: RemoteReadCounts { state.withLock { $0.counts } }

  /// Counts a part streamed on its own.
  func streamed() { state.withLock { $0.counts.streamedParts += 1 } }

  /// Adds `part`, held by `machine`, after the parts added before it.
  func add(_ part: PartRef, on machine: String) {
    state.withLock { s in
      s.places[part] = (machine, s.queues[machine, default: []].count)
      s.queues[machine, default: []].append(part)
    }
  }

  /// What was fetched of `part`, fetching it (and the parts after it) first if need be; nil
  /// for a part never added. Each part is handed out once.
  /// - Throws: the fetch's error (the machine stopped, the reply was malformed).
  func take(_ part: PartRef) throws -> BatchedPart? {
    let (ready, batch, machine) = state.withLock { s -> (BatchedPart?, [PartRef], String) in
      if let got = s.fetched.removeValue(forKey: part) { return (got, [], "") }
      guard let (machine, index) = s.places[part], !s.taken.contains(part) else { return (nil, [], "") }
      let queue = s.queues[machine]!
      var batch: [PartRef] = []
      for next in queue[index...] where !s.taken.contains(next) && s.fetched[next] == nil {
        batch.append(next)
        s.taken.insert(next)
        if batch.count == batchParts { break }
      }
      return (nil, batch, machine)
    }
    if let ready { return ready }
    if batch.isEmpty { return nil }
    let entries: [BatchedPart]
    do {
      entries = try fetchWithRetries(batch, from: machine)
    } catch {
      // Parts not handed out may be asked for again, each when its turn comes.
      state.withLock { s in for p in batch.dropFirst() { s.taken.remove(p) } }
      throw error
    }
    return state.withLock { s -> BatchedPart in
      s.counts.fetches += 1
      s.counts.batchedParts += entries.filter { if case .large = $0 { false } else { true } }.count
      for (p, entry) in zip(batch.dropFirst(), entries.dropFirst()) { s.fetched[p] = entry }
      // Parts past the budget were not sent: each is asked for when its turn comes.
      for p in batch.dropFirst(entries.count) { s.taken.remove(p) }
      return entries[0]
    }
  }

  /// Fetches `batch` from `machine`, asking again after a transient error (the connection
  /// dropped, the peer is busy), as `retryingTransientErrors` does.
  private func fetchWithRetries(_ batch: [PartRef], from machine: String) throws -> [BatchedPart] {
    let request = ReadManyRequest(parts: batch, budget: budget, partLimit: partLimit)
    let fetch = self.fetch
    let reply = try retryingTransientErrors {
      try ThreadPool.shared.blockingAwait { try await fetch(machine, request) }
    }
    let entries = try BatchedPart.parse(reply, parts: batch.count, partLimit: partLimit, from: machine)
    guard !entries.isEmpty else {
      throw BatchedReadError.malformed(machine: machine, "no entry for the \(batch.count) parts asked for")
    }
    return entries
  }
}

/// The bytes of a buffer as a byte source.
final class BufferSource: ByteSource {
  let name: String
  private var buffer: ByteBuffer

  init(_ buffer: ByteBuffer, name: String) {
    self.buffer = buffer
    self.name = name
  }

  func read(into destination: UnsafeMutableRawPointer, count: Int) throws -> Int {
    let n = min(count, buffer.readableBytes)
    buffer.withUnsafeReadableBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: n) }
    buffer.moveReaderIndex(forwardBy: n)
    return n
  }
}
