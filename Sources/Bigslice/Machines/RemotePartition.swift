import Bigmachine
import Frame
import NIOCore
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// A stream's iterator, shared by the tasks that take its chunks one at a time.
private final class ChunkIterator: @unchecked Sendable {
  var iterator: ByteStream.AsyncIterator
  init(_ stream: ByteStream) { iterator = stream.makeAsyncIterator() }
  func next() async throws -> ByteBuffer? { try await iterator.next() }
}

/// The bytes of a stored partition on another machine, read through a byte stream from a
/// byte offset on. After a transient error (the connection dropped, the peer is busy) it asks
/// again from the first byte it has not handed out, up to `attempts` times with a growing
/// wait: the reader above sees one unbroken stream, and checks its blocks as always. Anything
/// else (the partition is gone, the machine stopped) is thrown.
final class RemoteSource: ByteSource {
  let name: String
  private let open: @Sendable (_ offset: Int) async throws -> ByteStream
  private var chunks: ChunkIterator?
  private var chunk: ByteBuffer?
  /// Bytes handed out so far: where a resumed stream starts.
  private(set) var offset = 0
  /// Streams opened again after a transient error.
  private(set) var resumes = 0
  private let attempts: Int
  private let firstWait: Duration

  init(
    name: String, attempts: Int = 5, firstWait: Duration = .milliseconds(100),
    open: @escaping @Sendable (_ offset: Int) async throws -> ByteStream
  ) {
    self.name = name
    self.open = open
    self.attempts = attempts
    self.firstWait = firstWait
  }

  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    while true {
      if var c = chunk, c.readableBytes > 0 {
        let n = min(count, c.readableBytes)
        c.withUnsafeReadableBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
        c.moveReaderIndex(forwardBy: n)
        chunk = c
        offset += n
        return n
      }
      let next = try retryingTransientErrors(
        attempts: attempts, firstWait: firstWait,
        retry: {
          chunks = nil
          resumes += 1
        }
      ) { () -> ByteBuffer? in
        if chunks == nil {
          let open = self.open
          let from = offset
          chunks = ChunkIterator(try ThreadPool.shared.blockingAwait { try await open(from) })
        }
        let source = chunks!
        return try ThreadPool.shared.blockingAwait { try await source.next() }
      }
      guard let next else { return 0 }
      chunk = next
    }
  }
}

/// What `body` returns, calling it again after a transient error from a machine (the
/// connection dropped, the peer is busy), `retry` first, up to `attempts` times in all, with a
/// wait that starts at `firstWait` and doubles. Any other error, and the last, is thrown.
func retryingTransientErrors<T>(
  attempts: Int = 5, firstWait: Duration = .milliseconds(100), retry: () -> Void = {}, _ body: () throws -> T
) throws -> T {
  var wait = firstWait
  var failures = 0
  while true {
    do {
      return try body()
    } catch let error as BigmachineError where error.isTemporary && failures + 1 < attempts {
      failures += 1
      retry()
      nanosleep(milliseconds: Int(wait / .milliseconds(1)))
      wait = wait * 2
    }
  }
}

/// A machine that holds task outputs, as the driver sees it.
protocol OutputHolder: AnyObject, Sendable {
  /// The machine's address.
  var address: String { get }
  /// False once the machine stopped: its outputs are lost.
  var isAlive: Bool { get }
  /// Streams partition `partition` of `output` from byte `offset` on.
  func read(_ output: OutputRef, partition: Int, offset: Int) async throws -> ByteStream
  /// Deletes `outputs` (nothing is waited for).
  func discard(_ outputs: [OutputRef])
}

/// One task's output in a machine's store, with the partitions holding rows. Deleted there when
/// the driver lets it go.
final class RemoteOutput: @unchecked Sendable {
  let worker: any OutputHolder
  let ref: OutputRef
  let schema: Schema
  let holding: PartitionBits

  init(worker: any OutputHolder, ref: OutputRef, schema: Schema, holding: PartitionBits) {
    self.worker = worker
    self.ref = ref
    self.schema = schema
    self.holding = holding
  }

  deinit { worker.discard([ref]) }

  /// Streams partition `p`'s blocks from the machine, checking each; nil when it has no rows.
  func reader(_ p: Int) -> (any Reader)? {
    guard holding[p] else { return nil }
    let ref = self.ref
    let worker = self.worker
    let source = RemoteSource(name: "\(ref.task) partition \(p) on \(worker.address)") { offset in
      try await worker.read(ref, partition: p, offset: offset)
    }
    return BlockFileReader(source: source, schema: schema, owner: self)
  }
}
