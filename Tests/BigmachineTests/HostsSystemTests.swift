import BigmachineTestSupport
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
    let system = HostsSystem(
      listen: "127.0.0.1:0", fingerprint: .exactly(try await BinaryFingerprint.ofFile(try testWorkerPath())))
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
    for m in machines { #expect(try await m.call("Test.echo", "x", returning: String.self) == "hosted:x") }

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
    close(impostor.stdout)
    close(impostor.stderr)
  }
}
