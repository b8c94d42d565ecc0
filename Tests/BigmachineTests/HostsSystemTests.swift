import BigmachineTestSupport
import Crypto
import Foundation
import NIOCore
import Testing

@testable import Bigmachine

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

@Suite struct HostsSystemTests {
  /// Starts a test worker that dials `driver` with `secret`, as a scheduler would.
  func startWorker(driver: String, secretHex: String) throws -> ChildProcess {
    try ChildProcess.spawn(
      executable: try testWorkerPath(), arguments: [],
      environment: [
        "PATH": "/usr/bin:/bin", WorkerEnvironment.mode: "worker", WorkerEnvironment.system: "hosts",
        WorkerEnvironment.driver: driver, WorkerEnvironment.secret: secretHex,
      ])
  }

  @Test func workersThatDialInAreHandedOutAndServe() async throws {
    let lines = LogLines()
    let output = LogLines()
    let system = HostsSystem(
      listen: "127.0.0.1:0", fingerprint: .exactly(try await BinaryFingerprint.ofFile(try testWorkerPath())),
      output: MachineOutput { output.log.sink($0) })
    let b = try await Bigmachine.start(system: system, services: testServiceTypes, options: .init(log: lines.log))
    let address = try #require(system.address)

    // An impostor with the wrong secret is refused and never handed out; it exits.
    let impostor = try startWorker(driver: address, secretHex: ClusterSecret.random().hex)
    let impostorStatus = await impostor.reap()
    #expect(ChildProcess.describe(impostorStatus) == "exit status 2")
    #expect(await eventually(within: 5) { lines.count(containing: "refused connection") >= 1 })
    #expect(system.waitingWorkers == 0)

    let workers = try (0..<2).map { _ in try startWorker(driver: address, secretHex: b.secret.hex) }
    let machines = try await b.start(count: 2, services: [TestService(tag: "hosted")])
    for m in machines { #expect(await m.wait(for: .running) == .running) }
    #expect(Set(machines.map(\.processID)) == Set(workers.map(\.pid)))
    for m in machines {
      #expect(try await m.call("Test.echo", "x", returning: String.self) == "hosted:x")
      #expect(try await m.call("Test.environment", "BIGMACHINE_SECRET", returning: String?.self) == nil)
    }
    // Their output comes to the driver, prefixed with each one's address, to the last line.
    _ = try await machines[0].call("Test.print", ["joined"], returning: Bool.self)
    #expect(await eventually(within: 20) { output.all.contains("\(machines[0].address): out joined") })
    #expect(output.all.contains("\(machines[0].address): err joined"))
    _ = try await machines[1].call("Test.print", ["last words"], returning: Bool.self)

    // Waiting for workers that never come ends when the waiting task is cancelled.
    let waiting = Task { try await b.start(count: 1, services: [TestService()]) }
    try await Task.sleep(for: .milliseconds(50))
    waiting.cancel()
    let outcome = await waiting.result
    #expect(throws: CancellationError.self) { try outcome.get() }

    await b.shutdown()
    for w in workers {
      #expect(ChildProcess.describe(await w.reap()) == "exit status 0")
      close(w.stdout)
      close(w.stderr)
    }
    #expect(output.all.contains("\(machines[1].address): out last words"), "\(output.all)")
    #expect(!output.all.contains { $0.contains("worker done") })
    close(impostor.stdout)
    close(impostor.stderr)
  }

  /// Workers dial a driver listening on IPv6 loopback, bracketed as addresses are written.
  @Test func workersJoinADriverOnIPv6() async throws {
    let probe = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
    var any = sockaddr_in6()
    any.sin6_family = sa_family_t(AF_INET6)
    any.sin6_addr = in6addr_loopback
    let bound = withUnsafePointer(to: &any) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(probe, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
      }
    }
    close(probe)
    guard bound == 0 else {
      print("skipped: this host has no IPv6 loopback (bind to [::1] failed, errno \(errno))")
      return
    }
    let system = HostsSystem(
      listen: "[::1]:0", fingerprint: .exactly(try await BinaryFingerprint.ofFile(try testWorkerPath())))
    let b = try await Bigmachine.start(system: system, services: testServiceTypes, options: .init(log: .discard))
    let address = try #require(system.address)
    #expect(address.hasPrefix("[::1]:"))
    let workers = try (0..<2).map { _ in try startWorker(driver: address, secretHex: b.secret.hex) }
    let machines = try await b.start(count: 2, services: [TestService(tag: "v6")])
    for m in machines {
      #expect(await m.wait(for: .running) == .running)
      #expect(try await m.call("Test.echo", "x", returning: String.self) == "v6:x")
    }
    await b.shutdown()
    for w in workers {
      #expect(ChildProcess.describe(await w.reap()) == "exit status 0")
      close(w.stdout)
      close(w.stderr)
    }
  }

  @Test func addressesSplitAndJoinWithIPv6Brackets() {
    #expect(splitHostPort("[::1]:7070")! == ("::1", 7070))
    #expect(splitHostPort("[fe80::1%eth0]:0")! == ("fe80::1%eth0", 0))
    #expect(splitHostPort("10.0.0.2:80")! == ("10.0.0.2", 80))
    #expect(splitHostPort("node7.cluster:7070")! == ("node7.cluster", 7070))
    for bad in ["::1:7070", "[::1]", "[::1:7070", ":7070", "host", "host:70000", "host:-1", "[]:80"] {
      #expect(splitHostPort(bad) == nil, "\(bad) was accepted")
    }
    #expect(joinHostPort("::1", 7070) == "[::1]:7070")
    #expect(joinHostPort("10.0.0.2", 80) == "10.0.0.2:80")
  }

  /// A bootstrap of another build joins, receives the driver's worker binary, checks its
  /// digest and runs it in its own place: the same process then serves as a worker of the
  /// driver's build, and the file it received is gone.
  @Test func aBootstrapReceivesTheWorkerBinaryAndRunsIt() async throws {
    let binary = try testWorkerPath()
    let system = HostsSystem(
      listen: "127.0.0.1:0", fingerprint: .exactly(try await BinaryFingerprint.ofFile(binary)),
      output: MachineOutput { _ in }, binary: binary)
    let b = try await Bigmachine.start(system: system, services: testServiceTypes, options: .init(log: .discard))
    let bootstrap = try ChildProcess.spawn(
      executable: binary, arguments: [],
      environment: [
        "PATH": "/usr/bin:/bin", WorkerEnvironment.mode: "worker", WorkerEnvironment.system: "hosts",
        WorkerEnvironment.driver: try #require(system.address), WorkerEnvironment.secret: b.secret.hex,
        WorkerEnvironment.bootstrap: "1", BinaryFingerprint.overrideVariable: "sha256:an-older-build",
      ])
    let machines = try await b.start(count: 1, services: [TestService(tag: "shipped")])
    let m = machines[0]
    #expect(await m.wait(for: .running) == .running)
    #expect(try await m.call("Test.echo", "x", returning: String.self) == "shipped:x")
    #expect(try await m.call("Test.pid", true, returning: Int32.self) == bootstrap.pid)
    let running = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(bootstrap.pid)/exe")
    #expect(running.contains("bigmachine-binary-") && running.hasSuffix("(deleted)"), "\(running)")
    await b.shutdown()
    #expect(ChildProcess.describe(await bootstrap.reap()) == "exit status 0")
    close(bootstrap.stdout)
    close(bootstrap.stderr)
  }

  @Test func aBinaryWhoseDigestOrSizeIsWrongIsRefusedAndLeavesNoFile() async throws {
    let bytes = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
    func chunks() -> AsyncStream<ByteBuffer> {
      AsyncStream { c in
        for start in stride(from: 0, to: bytes.count, by: 65536) {
          c.yield(ByteBuffer(bytes: bytes[start..<min(bytes.count, start + 65536)]))
        }
        c.finish()
      }
    }
    let digest = "sha256:" + SHA256.hash(data: bytes).map { String($0, radix: 16).leftPadded(2) }.joined()
    func leftovers() throws -> [String] {
      try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter {
        $0.hasPrefix("bigmachine-binary-\(getpid())-")
      }
    }
    let before = try leftovers()
    for request in [
      Bootstrap.Request(digest: "sha256:" + String(repeating: "0", count: 64), size: bytes.count),
      Bootstrap.Request(digest: digest, size: bytes.count + 1),
      Bootstrap.Request(digest: digest, size: bytes.count - 1),
    ] {
      do {
        _ = try await Bootstrap.receive(chunks(), request)
        Issue.record("\(request) was accepted")
      } catch let error as ServiceError {
        #expect(error.kind == "BadBinary")
      }
    }
    #expect(try leftovers() == before)
    let path = try await Bootstrap.receive(chunks(), Bootstrap.Request(digest: digest, size: bytes.count))
    defer { unlink(path) }
    #expect(FileManager.default.contents(atPath: path) == Data(bytes))
    var info = stat()
    #expect(stat(path, &info) == 0 && info.st_mode & 0o777 == 0o700)
  }
}
