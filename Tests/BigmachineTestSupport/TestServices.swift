import Bigmachine
import Crypto
import NIOCore
import Synchronization

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// Every service type the tests use, for `Bigmachine.start(system:services:)` in the test
/// process and in the worker binary alike.
public let testServiceTypes: [any Service.Type] = [TestService.self, FailingSetUp.self]

/// Events service methods record, so a test in the same process can await them.
public actor Probe {
  public static let shared = Probe()
  private var events: Set<String> = []

  public func record(_ event: String) { events.insert(event) }
  public func saw(_ event: String) -> Bool { events.contains(event) }
}

/// Holds calls until `n` of them are in flight at once.
actor Barrier {
  static let shared = Barrier()
  private var waiting: [String: [CheckedContinuation<Int, Never>]] = [:]

  func arrive(_ key: String, _ n: Int) async -> Int {
    await withCheckedContinuation { cont in
      waiting[key, default: []].append(cont)
      if waiting[key]!.count == n {
        for c in waiting.removeValue(forKey: key)! { c.resume(returning: n) }
      }
    }
  }
}

/// Counts the calls of `flaky` per key.
actor Attempts {
  static let shared = Attempts()
  private var counts: [String: Int] = [:]
  func next(_ key: String) -> Int {
    counts[key, default: 0] += 1
    return counts[key]!
  }
}

/// The typed detail `failWithDetail` throws back.
public struct FailureDetail: Codable, Sendable, Equatable {
  public var items: [String]
  public init(items: [String]) { self.items = items }
}

/// What `digest` and the stream tests agree on: byte count and SHA-256.
public struct Digest: Codable, Sendable, Equatable {
  public var bytes: Int
  public var sha256: String
  public init(bytes: Int, sha256: String) {
    self.bytes = bytes
    self.sha256 = sha256
  }
}

/// Deterministic test bytes: `count` bytes in chunks of `chunk`, each chunk a fixed
/// pattern with its index in the first 8 bytes.
public struct PatternBytes: AsyncSequence, Sendable {
  public typealias Element = ByteBuffer
  public var count: Int
  public var chunk: Int
  /// Whether each chunk starts with its index (a copy per chunk) or all share one buffer.
  public var stamped: Bool
  public init(count: Int, chunk: Int = 1 << 20, stamped: Bool = true) {
    self.count = count
    self.chunk = chunk
    self.stamped = stamped
  }

  public struct AsyncIterator: AsyncIteratorProtocol {
    var sent = 0
    var index: UInt64 = 0
    let count: Int
    let stamped: Bool
    var base: ByteBuffer
    public mutating func next() async throws -> ByteBuffer? {
      guard sent < count else { return nil }
      let n = Swift.min(base.readableBytes, count - sent)
      var b = base.getSlice(at: base.readerIndex, length: n)!
      if stamped && n >= 8 {
        // A fresh copy so the index does not alter the shared base.
        var c = ByteBuffer()
        c.reserveCapacity(n)
        c.writeInteger(index)
        c.writeImmutableBuffer(b.getSlice(at: b.readerIndex + 8, length: n - 8)!)
        b = c
      }
      index += 1
      sent += n
      return b
    }
  }

  public func makeAsyncIterator() -> AsyncIterator {
    AsyncIterator(count: count, stamped: stamped, base: PatternBytes.base(chunk))
  }

  /// The shared pattern of `size` bytes, built once per size with block copies (byte-by-byte
  /// writes in a debug build would hold a cooperative thread for a second).
  static func base(_ size: Int) -> ByteBuffer {
    bases.withLock { cache in
      if let b = cache[size] { return b }
      let period = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
      var b = ByteBuffer()
      b.reserveCapacity(size)
      while b.readableBytes < size { b.writeBytes(period.prefix(size - b.readableBytes)) }
      cache[size] = b
      return b
    }
  }
  private static let bases = Mutex<[Int: ByteBuffer]>([:])

  /// The digest of these bytes.
  public func digest() async throws -> Digest {
    var d = StreamDigest()
    for try await b in self { d.add(b) }
    return d.result
  }
}

/// Incremental byte count and SHA-256.
public struct StreamDigest {
  var hash = SHA256()
  var bytes = 0
  public init() {}
  public mutating func add(_ b: ByteBuffer) {
    bytes += b.readableBytes
    b.withUnsafeReadableBytes { hash.update(bufferPointer: $0) }
  }
  public var result: Digest {
    Digest(bytes: bytes, sha256: hash.finalize().map { String($0, radix: 16) }.joined(separator: "."))
  }
}

/// The methods the tests call.
public struct TestService: Service {
  public var tag: String
  public init(tag: String = "t") { self.tag = tag }

  public static let name = "Test"
  public static let methods: [String: ServiceMethod<TestService>] = [
    "echo": .unary { (s, x: String, _) in "\(s.tag):\(x)" },
    "add": .unary { (_, xs: [Int], _) in xs.reduce(0, +) },
    "bigReply": .unary { (_, count: Int, _) in String(repeating: "x", count: count) },
    "failCounting": .unary { (_, key: String, _) -> Int in
      let n = await Attempts.shared.next(key)
      throw ServiceError(kind: "Permanent", message: "attempt \(n)")
    },
    "fail": .unary { (_, message: String, _) -> Int in
      throw ServiceError(kind: "TestFailure", message: message)
    },
    "failWithDetail": .unary { (_, detail: FailureDetail, _) -> Int in
      throw try ServiceError(kind: "TestFailure", message: "with a detail", detail: detail)
    },
    "flaky": .unary { (_, key: String, _) -> Int in
      let n = await Attempts.shared.next(key)
      if n < 3 { throw ServiceError(kind: "Busy", message: "attempt \(n)", temporary: true) }
      return n
    },
    "barrier": .unary { (_, arg: BarrierArgument, _) in await Barrier.shared.arrive(arg.key, arg.count) },
    "block": .unary { (_, id: String, _) -> Bool in
      await Probe.shared.record("started \(id)")
      do {
        try await Task.sleep(for: .seconds(600))
      } catch {
        await Probe.shared.record("cancelled \(id)")
        throw error
      }
      return true
    },
    "digest": .unary { (_, _: Bool, call) in
      var d = StreamDigest()
      for try await b in call.input { d.add(b) }
      return d.result
    },
    "generate": .streaming { (_, count: Int, _, out) in
      for try await b in PatternBytes(count: count, stamped: false) { try await out.write(b) }
    },
    "generateThenFail": .streaming { (_, count: Int, _, out) in
      for try await b in PatternBytes(count: count) { try await out.write(b) }
      throw ServiceError(kind: "Truncated", message: "stopped after \(count) bytes")
    },
    "generateUntilCancelled": .streaming { (_, id: String, _, out) in
      await Probe.shared.record("started \(id)")
      do {
        while true { try await out.write(PatternBytes.base(1 << 16)) }
      } catch {
        await Probe.shared.record("cancelled \(id)")
        throw error
      }
    },
    "echoStream": .streaming { (_, _: Bool, call, out) in
      for try await b in call.input { try await out.write(b) }
    },
    "print": .unary { (_, lines: [String], _) -> Bool in
      for line in lines {
        print("out \(line)")
        writeAll(2, "err \(line)\n")
      }
      return true
    },
    "printAndExit": .unary { (_, lines: [String], _) -> Bool in
      for line in lines {
        print("out \(line)")
        writeAll(2, "err \(line)\n")
      }
      exit(0)
    },
    "pid": .unary { (_, _: Bool, _) in getpid() },
    "environment": .unary { (_, name: String, _) -> String? in getenv(name).map { String(cString: $0) } },
  ]
}

public struct BarrierArgument: Codable, Sendable {
  public var key: String
  public var count: Int
  public init(key: String, count: Int) {
    self.key = key
    self.count = count
  }
}

/// A service whose setUp fails, to show that the machine stops fast with the cause.
public struct FailingSetUp: Service {
  public init() {}
  public static let name = "FailingSetUp"
  public static let methods: [String: ServiceMethod<FailingSetUp>] = [:]
  public func setUp(_ worker: WorkerContext) async throws {
    throw ServiceError(kind: "SetUpBroken", message: "the scratch database is unreachable")
  }
}

func writeAll(_ fd: Int32, _ text: String) {
  var text = text
  text.withUTF8 { buf in
    var off = 0
    while off < buf.count {
      let n = write(fd, buf.baseAddress! + off, buf.count - off)
      if n <= 0 { return }
      off += n
    }
  }
}

/// A blocking TCP socket connected to `port` on 127.0.0.1, for tests that speak to a server
/// from outside NIO; -1 (with `errno` set) when it cannot be made or connected.
public func connectLoopback(port: Int) -> Int32 {
  let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
  guard fd >= 0 else { return -1 }
  var address = sockaddr_in()
  address.sin_family = sa_family_t(AF_INET)
  address.sin_port = in_port_t(UInt16(port).bigEndian)
  address.sin_addr.s_addr = inet_addr("127.0.0.1")
  let connected = withUnsafePointer(to: &address) {
    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
  }
  guard connected == 0 else {
    let code = errno
    close(fd)
    errno = code
    return -1
  }
  return fd
}

/// Polls `condition` every `interval` until it holds or `seconds` pass; returns whether it held.
public func eventually(
  within seconds: Double, every interval: Duration = .milliseconds(10), _ condition: () async throws -> Bool
) async rethrows -> Bool {
  let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
  while ContinuousClock.now < deadline {
    if try await condition() { return true }
    try? await Task.sleep(for: interval)
  }
  return try await condition()
}
