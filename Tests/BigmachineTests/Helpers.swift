import Bigmachine
import BigmachineTestSupport
import NIOConcurrencyHelpers
import Testing

/// Log lines collected for assertions.
final class LogLines: Sendable {
  private let lines = NIOLockedValueBox<[String]>([])
  var log: BigmachineLog { BigmachineLog { [lines] line in lines.withLockedValue { $0.append(line) } } }
  var all: [String] { lines.withLockedValue { $0 } }
  func count(containing s: String) -> Int { all.filter { $0.contains(s) }.count }
}

/// Seconds `body` took.
func timed(_ body: () async throws -> Void) async rethrows -> Double {
  let start = ContinuousClock.now
  try await body()
  let d = ContinuousClock.now - start
  return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// An in-process cluster of `count` running machines with the test service.
func inProcessCluster(
  _ count: Int = 1, keepalive: KeepaliveConfig = .standard, log: BigmachineLog = .discard
) async throws -> (Bigmachine, InProcessSystem, [Machine]) {
  let system = InProcessSystem(keepalive: keepalive)
  let b = try await Bigmachine.start(system: system, services: testServiceTypes, options: .init(log: log))
  let machines = try await b.start(count: count, services: [TestService(tag: "m")])
  for m in machines {
    let state = await m.wait(for: .running)
    try #require(state == .running, "machine failed to start: \(String(describing: m.error))")
  }
  return (b, system, machines)
}

/// Starts a machine with a failing `setUp` next to a healthy one, at the same moment, and
/// returns the failing machine with the seconds each took to settle (stopped, running).
///
/// "Fast" is judged against the healthy machine rather than a wall-clock bound: in the full
/// `swift test` run, synchronous tests of other targets can hold both cooperative threads for
/// tens of seconds, which delays both machines alike.
func startFailingBesideHealthy(_ b: Bigmachine) async throws -> (
  failing: Machine, failSeconds: Double, okSeconds: Double
) {
  let start = ContinuousClock.now
  func since() -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }
  async let failing: (Machine, Double) = {
    let m = try await b.start(count: 1, services: [TestService(), FailingSetUp()])[0]
    await m.wait(for: .running)
    return (m, since())
  }()
  async let healthy: Double = {
    let m = try await b.start(count: 1, services: [TestService()])[0]
    #expect(await m.wait(for: .running) == .running)
    return since()
  }()
  let (m, failSeconds) = try await failing
  return (m, failSeconds, try await healthy)
}
