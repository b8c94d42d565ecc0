import Bigmachine
import BigmachineTestSupport
import NIOCore
import Testing

@Suite struct StreamTests {
  @Test func anArgumentStreamArrivesWhole() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let bytes = PatternBytes(count: 16 << 20 | 12345, chunk: 300_000)
    let got = try await machines[0].call("Test.digest", true, input: bytes, returning: Digest.self)
    #expect(got == (try await bytes.digest()))
    await b.shutdown()
  }

  @Test func aReplyStreamArrivesWholeInChunksOfAtMostAFrame() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let count = 16 << 20 | 777
    var digest = StreamDigest()
    var largest = 0
    for try await chunk in try await machines[0].stream("Test.generate", count) {
      largest = max(largest, chunk.readableBytes)
      digest.add(chunk)
    }
    #expect(digest.result == (try await PatternBytes(count: count, stamped: false).digest()))
    #expect(largest <= 1 << 20)
    await b.shutdown()
  }

  @Test func bothDirectionsFlowAtOnce() async throws {
    let (b, _, machines) = try await inProcessCluster()
    // The echo writes each chunk back before it reads the next: with 48 MiB, far beyond both
    // windows, this only finishes if the reply is read while the argument is still sent.
    let bytes = PatternBytes(count: 48 << 20, chunk: 1 << 20)
    var digest = StreamDigest()
    for try await chunk in try await machines[0].stream("Test.echoStream", true, input: bytes) { digest.add(chunk) }
    #expect(digest.result == (try await bytes.digest()))
    await b.shutdown()
  }

  @Test func droppingAReplyStreamCancelsTheMethod() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let id = "drop-\(UInt64.random(in: 0...UInt64.max))"
    var received = 0
    for try await chunk in try await machines[0].stream("Test.generateUntilCancelled", id) {
      received += chunk.readableBytes
      if received > 1 << 20 { break }
    }
    // The stream is gone: the cancel frame reached the method, whose writes then failed.
    #expect(await eventually(within: 10) { await Probe.shared.saw("cancelled \(id)") })
    #expect(try await machines[0].call("Test.echo", "after", returning: String.self) == "m:after")
    await b.shutdown()
  }

  @Test func aStreamsErrorArrivesAtItsEnd() async throws {
    let (b, _, machines) = try await inProcessCluster()
    var received = 0
    do {
      for try await chunk in try await machines[0].stream("Test.generateThenFail", 5_000_000) {
        received += chunk.readableBytes
      }
      Issue.record("the stream ended cleanly")
    } catch let BigmachineError.remote(_, _, kind, message, _, _) {
      #expect(kind == "Truncated")
      #expect(message == "stopped after 5000000 bytes")
    }
    #expect(received == 5_000_000)
    await b.shutdown()
  }

  @Test func anArgumentStreamsErrorReachesTheMethod() async throws {
    struct Broken: AsyncSequence, Sendable {
      typealias Element = ByteBuffer
      struct AsyncIterator: AsyncIteratorProtocol {
        var n = 0
        mutating func next() async throws -> ByteBuffer? {
          n += 1
          if n > 3 { throw ServiceError(kind: "SourceFailed", message: "the file vanished") }
          return ByteBuffer(repeating: 1, count: 1000)
        }
      }
      func makeAsyncIterator() -> AsyncIterator { AsyncIterator() }
    }
    let (b, _, machines) = try await inProcessCluster()
    do {
      _ = try await machines[0].call("Test.digest", true, input: Broken(), returning: Digest.self)
      Issue.record("the call succeeded")
    } catch let BigmachineError.remote(_, _, kind, message, _, _) {
      #expect(kind == "SourceFailed")
      #expect(message == "the file vanished")
    }
    await b.shutdown()
  }
}
