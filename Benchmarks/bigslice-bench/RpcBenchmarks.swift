import Bigmachine
import Foundation
import NIOCore

/// The service the rpc benchmark's worker machines run.
struct BenchService: Service {
  static let name = "Bench"
  static let methods: [String: ServiceMethod<BenchService>] = [
    "echo": .unary { (_, x: Int, _) in x },
    "generate": .streaming { (_, bytes: Int, _, out) in
      let block = ByteBuffer(repeating: 0x5a, count: 1 << 20)
      var left = bytes
      while left > 0 {
        let n = min(left, block.readableBytes)
        try await out.write(block.getSlice(at: 0, length: n)!)
        left -= n
      }
    },
    "consume": .unary { (_, _: Bool, call) in
      var n = 0
      for try await chunk in call.input { n += chunk.readableBytes }
      return n
    },
  ]
}

/// `count` bytes as 1 MiB slices of one buffer: a source that costs nothing per byte.
struct Zeros: AsyncSequence, Sendable {
  typealias Element = ByteBuffer
  var count: Int
  struct AsyncIterator: AsyncIteratorProtocol {
    var left: Int
    let block = ByteBuffer(repeating: 0x5a, count: 1 << 20)
    mutating func next() async throws -> ByteBuffer? {
      guard left > 0 else { return nil }
      let n = Swift.min(left, block.readableBytes)
      left -= n
      return block.getSlice(at: 0, length: n)!
    }
  }
  func makeAsyncIterator() -> AsyncIterator { AsyncIterator(left: count) }
}

/// Small-call round trips and stream throughput between this driver and worker processes
/// of the local system, with sealed frames (the default) and with plain frames (the
/// loopback opt-out), each next to raw loopback TCP between two threads in the same run.
struct RpcBenchmarks {
  var calls: Int
  var bytes: Int
  var repeats: Int
  var report: Reporter
  var bigmachine: Bigmachine

  func run() async throws {
    report.header("rpc: driver ↔ local worker processes vs raw loopback TCP (median of \(repeats))")
    let plain = try await Bigmachine.start(
      system: LocalSystem(), services: [BenchService.self], options: .init(protection: .loopbackPlain))
    let sealedMachines = try await started(bigmachine)
    let plainMachines = try await started(plain)

    // Sequential round trips, then many in flight on the one connection across both machines.
    let depth = 64
    for inFlight in [1, depth] {
      let raw = medianSync(repeats) { RawLoopback.pingPong(messages: calls, depth: inFlight) }
      var sealedTimes: [Double] = []
      var plainTimes: [Double] = []
      for _ in 0..<max(1, repeats) {
        sealedTimes.append(try await timeCalls(sealedMachines, inFlight: inFlight))
        plainTimes.append(try await timeCalls(plainMachines, inFlight: inFlight))
      }
      let sealed = middle(sealedTimes)
      let clear = middle(plainTimes)
      let rawName = inFlight == 1 ? "raw TCP ping-pong, 1 in flight" : "raw TCP ping-pong, \(inFlight) pipelined"
      report.emit(
        Measurement(
          bench: "rpc small calls, \(inFlight) in flight, plain", rows: calls, seconds: clear, baseline: rawName,
          baselineSeconds: raw, notes: "\(Int(Double(calls) / clear)) calls/s"))
      report.emit(
        Measurement(
          bench: "rpc small calls, \(inFlight) in flight, protected", rows: calls, seconds: sealed,
          baseline: "the same calls, plain", baselineSeconds: clear,
          notes: "\(Int(Double(calls) / sealed)) calls/s"))
    }

    // Streams: worker → driver (a streamed reply) and driver → worker (a streamed argument).
    // Each repeat runs the baseline and every kind back to back, so that load from elsewhere
    // on the host falls on all alike.
    var raws: [Double] = []
    var times: [String: [Double]] = [:]
    for _ in 0..<max(1, repeats) {
      raws.append(medianSync(1) { RawLoopback.stream(bytes: bytes) })
      for (name, machines) in [("protected", sealedMachines), ("plain", plainMachines)] {
        let m = machines[0]
        times["worker→driver, \(name)", default: []].append(
          try await seconds {
            var n = 0
            for try await chunk in try await m.stream("Bench.generate", bytes) { n += chunk.readableBytes }
            precondition(n == bytes)
          })
        times["driver→worker, \(name)", default: []].append(
          try await seconds {
            let n = try await m.call("Bench.consume", true, input: Zeros(count: bytes), returning: Int.self)
            precondition(n == bytes)
          })
      }
    }
    let raw = middle(raws)
    for direction in ["worker→driver", "driver→worker"] {
      for kind in ["protected", "plain"] {
        let t = middle(times["\(direction), \(kind)"]!)
        report.emit(
          Measurement(
            bench: "rpc stream \(direction), \(kind)", rows: bytes, seconds: t, baseline: "raw TCP stream, 2 threads",
            baselineSeconds: raw, notes: "\(gbps(bytes, t)) GB/s vs \(gbps(bytes, raw)) GB/s"))
      }
    }
    await plain.shutdown()
    await bigmachine.shutdown()
  }

  private func started(_ b: Bigmachine) async throws -> [Machine] {
    let machines = try await b.start(count: 2, services: [BenchService()])
    for m in machines {
      guard await m.wait(for: .running) == .running else {
        throw m.error ?? BigmachineError.fatal(address: m.address, kind: .startFailed, message: "did not start")
      }
    }
    _ = try await machines[0].call("Bench.echo", 1, returning: Int.self)
    return machines
  }

  /// Seconds for `calls` echo calls, `inFlight` at a time spread over `machines`.
  private func timeCalls(_ machines: [Machine], inFlight: Int) async throws -> Double {
    try await seconds {
      try await withThrowingTaskGroup(of: Void.self) { group in
        for lane in 0..<inFlight {
          let target = machines[inFlight == 1 ? 0 : lane % machines.count]
          group.addTask {
            for i in stride(from: lane, to: calls, by: inFlight) {
              _ = try await target.call("Bench.echo", i, returning: Int.self)
            }
          }
        }
        try await group.waitForAll()
      }
    }
  }

  private func seconds(_ body: () async throws -> Void) async rethrows -> Double {
    let start = ContinuousClock.now
    try await body()
    return elapsedSeconds(since: start)
  }

  private func middle(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

  private func gbps(_ bytes: Int, _ seconds: Double) -> String { fmt(Double(bytes) / seconds / 1e9, 2) }

  private func medianSync(_ repeats: Int, _ body: () -> Void) -> Double {
    median(repeats, body)
  }
}

/// Plain blocking sockets on loopback between two threads: what the wire could do with no
/// framing, authentication, multiplexing or async hand-offs.
enum RawLoopback {
  /// `messages` 16-byte requests echoed back, `depth` outstanding at a time.
  static func pingPong(messages: Int, depth: Int) {
    let (client, server) = connectedPair()
    let done = DispatchSemaphore(value: 0)
    Thread {
      var buf = [UInt8](repeating: 0, count: 16 * depth)
      var left = messages * 16
      while left > 0 {
        let n = read(server, &buf, min(buf.count, left))
        if n <= 0 { break }
        writeFully(server, buf, n)
        left -= n
      }
      done.signal()
    }.start()
    var sent = 0
    var msg = [UInt8](repeating: 1, count: 16 * depth)
    while sent < messages {
      let batch = min(depth, messages - sent)
      writeFully(client, msg, batch * 16)
      readFully(client, &msg, batch * 16)
      sent += batch
    }
    done.wait()
    close(client)
    close(server)
  }

  /// `bytes` written in 1 MiB writes by one thread and read by another.
  static func stream(bytes: Int) {
    let (client, server) = connectedPair()
    let done = DispatchSemaphore(value: 0)
    Thread {
      let block = [UInt8](repeating: 0x5a, count: 1 << 20)
      var left = bytes
      while left > 0 {
        let n = min(left, block.count)
        writeFully(server, block, n)
        left -= n
      }
      done.signal()
    }.start()
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    var got = 0
    while got < bytes {
      let n = read(client, &buf, buf.count)
      if n <= 0 { break }
      got += n
    }
    precondition(got == bytes)
    done.wait()
    close(client)
    close(server)
  }

  private static func connectedPair() -> (Int32, Int32) {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        precondition(bind(listener, $0, len) == 0)
        precondition(getsockname(listener, $0, &len) == 0)
      }
    }
    precondition(listen(listener, 1) == 0)
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    withUnsafeMutablePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { precondition(connect(client, $0, len) == 0) }
    }
    let server = accept(listener, nil, nil)
    close(listener)
    var one: Int32 = 1
    for fd in [client, server] {
      setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    return (client, server)
  }

  private static func writeFully(_ fd: Int32, _ bytes: [UInt8], _ count: Int) {
    bytes.withUnsafeBytes { raw in moveFully(count) { write(fd, raw.baseAddress! + $0, count - $0) } }
  }

  private static func readFully(_ fd: Int32, _ bytes: inout [UInt8], _ count: Int) {
    bytes.withUnsafeMutableBytes { raw in moveFully(count) { read(fd, raw.baseAddress! + $0, count - $0) } }
  }

  /// Calls `step` (a `read` or `write` of the bytes from the offset it is given on, which
  /// returns how many it moved) until `count` bytes have moved.
  private static func moveFully(_ count: Int, _ step: (Int) -> Int) {
    var off = 0
    while off < count {
      let n = step(off)
      precondition(n > 0)
      off += n
    }
  }
}
