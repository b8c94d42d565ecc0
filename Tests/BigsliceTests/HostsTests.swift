import Bigmachine
import Bigslice
import Foundation
import Testing
import Workloads

/// Two network namespaces, each joined to this (the driver's) namespace by a veth pair and
/// routed through it, with a `bigslice worker --join` in each: the hosts system across a
/// real network. Made with `ip` (iproute2) as root; without them the tests are skipped, and
/// the skip says why.
final class Namespaces {
  let names: [String]
  let hostLinks: [String]
  private let savedForwarding: String?
  private var workers: [ChildProcess] = []

  /// The address of namespace `i`'s end, and of the driver's end of its link.
  func workerAddress(_ i: Int) -> String { "10.78.\(i).2" }
  func driverAddress(_ i: Int) -> String { "10.78.\(i).1" }

  /// Why network namespaces cannot be made here (not root, no `ip`, no right to make them), or
  /// nil when they can: found once, by making one and removing it.
  static let unavailable: String? = {
    switch make(1, tag: "p") {
    case .success: return nil
    case .failure(let reason): return "network namespaces cannot be made here: \(reason)"
    }
  }()

  /// Makes `count` namespaces, or returns why it cannot.
  /// `tag` keeps the names of different sets apart.
  static func make(_ count: Int, tag suffix: String = "") -> Result<Namespaces, SkipReason> {
    guard getuid() == 0 else { return .failure(SkipReason("not root: network namespaces need root")) }
    guard
      FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
        || FileManager.default.isExecutableFile(atPath: "/sbin/ip")
    else { return .failure(SkipReason("no `ip` command (iproute2)")) }
    removeStale()
    let tag = String(getpid() % 100_000) + suffix
    let spaces = Namespaces(
      names: (0..<count).map { "bsn\(tag)-\($0)" }, hostLinks: (0..<count).map { "bsh\(tag)x\($0)" })
    do {
      for i in 0..<count {
        let (ns, host, inner) = (spaces.names[i], spaces.hostLinks[i], "bsw\(tag)x\(i)")
        try ip("netns", "add", ns)
        try ip("link", "add", host, "type", "veth", "peer", "name", inner)
        try ip("link", "set", inner, "netns", ns)
        try ip("addr", "add", "\(spaces.driverAddress(i))/24", "dev", host)
        try ip("link", "set", host, "up")
        try ip("netns", "exec", ns, "ip", "addr", "add", "\(spaces.workerAddress(i))/24", "dev", inner)
        try ip("netns", "exec", ns, "ip", "link", "set", inner, "up")
        try ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        try ip("netns", "exec", ns, "ip", "route", "add", "default", "via", spaces.driverAddress(i))
      }
      // Workers read each other's outputs through the driver's namespace.
      try "1".write(toFile: "/proc/sys/net/ipv4/ip_forward", atomically: false, encoding: .utf8)
    } catch {
      return .failure(SkipReason("cannot make network namespaces: \(error)"))
    }
    return .success(spaces)
  }

  private init(names: [String], hostLinks: [String]) {
    self.names = names
    self.hostLinks = hostLinks
    savedForwarding = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8)
  }

  /// Starts `bigslice worker --join` in namespace `i`.
  func startWorker(_ i: Int, binary: String, driverPort: Int, secretFile: String) throws {
    let worker = try ChildProcess.spawn(
      executable: "/usr/sbin/ip",
      arguments: [
        "netns", "exec", names[i], binary, "worker", "--join", "\(driverAddress(i)):\(driverPort)",
        "--secret-file", secretFile,
      ],
      environment: processEnvironment(), piped: false)
    workers.append(worker)
  }

  /// Cuts namespace `i`'s link: its worker can reach no one, and no one it.
  func cut(_ i: Int) throws { try Namespaces.ip("link", "set", hostLinks[i], "down") }

  deinit {
    for worker in workers {
      worker.kill()
      worker.reapBlocking()
    }
    for (ns, host) in zip(names, hostLinks) {
      _ = try? Namespaces.ip("link", "del", host)
      _ = try? Namespaces.ip("netns", "del", ns)
    }
    if let savedForwarding {
      try? savedForwarding.write(toFile: "/proc/sys/net/ipv4/ip_forward", atomically: false, encoding: .utf8)
    }
  }

  /// Removes the namespaces (and with them their links) that a test process which is gone
  /// left behind, killed before its deinit ran: their addresses would shadow this run's.
  static func removeStale() {
    guard let list = try? ip("netns", "list") else { return }
    for line in list.split(separator: "\n") {
      let name = String(line.split(separator: " ").first ?? "")
      guard name.hasPrefix("bsn"), let dash = name.firstIndex(of: "-") else { continue }
      let tag = name[name.index(name.startIndex, offsetBy: 3)..<dash].prefix { $0.isNumber }
      guard let pid = Int32(tag), pid != getpid() % 100_000, kill(pid, 0) != 0 else { continue }
      let host = "bsh" + name.dropFirst(3).replacingOccurrences(of: "-", with: "x")
      _ = try? ip("link", "del", host)
      _ = try? ip("netns", "del", name)
    }
  }

  /// Runs `ip` with `args` and returns what it printed.
  /// - Throws: a `SkipReason` with its error output when it fails.
  @discardableResult
  static func ip(_ args: String...) throws -> String {
    let (status, printed, message) = try ChildProcess.runBlocking("/usr/sbin/ip", args)
    guard status == 0 else {
      throw SkipReason("ip \(args.joined(separator: " ")): \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
    }
    return printed
  }

}

struct SkipReason: Error, CustomStringConvertible {
  let description: String
  init(_ d: String) { description = d }
}

@Suite(.serialized, .engine) struct HostsTests {
  /// W1 and W3 (small) through the hosts system on two workers in their own network
  /// namespaces, against references computed here; then W1 again with one namespace's
  /// link cut mid-job.
  @Test(.enabled(if: Namespaces.unavailable == nil, Comment(rawValue: Namespaces.unavailable ?? "")))
  func jobsRunOnWorkersInOtherNetworkNamespaces() async throws {
    let spaces = try Namespaces.make(2).get()
    Workloads.register()
    let secretFile = FileManager.default.temporaryDirectory.appendingPathComponent(
      "bigslice-hosts-\(UUID().uuidString)"
    )
    .path
    let keepalive = KeepaliveConfig(
      period: .milliseconds(300), timeout: .seconds(2), rpcTimeout: .seconds(1), lease: .seconds(5))
    let hosts = HostsSystem(listen: "0.0.0.0:0", keepalive: keepalive, fingerprint: .any, secretFile: secretFile)
    let session = Session(executor: .machines(system: .system(hosts), count: 2, procs: 1))
    defer { session.shutdown() }
    var port: Int?
    for _ in 0..<500 where port == nil {
      port = hosts.address.flatMap { Int($0.split(separator: ":").last ?? "") }
      try await Task.sleep(for: .milliseconds(10))
    }
    let driverPort = try #require(port, "the driver never listened")
    let binary = try bigsliceBinary()
    for i in 0..<2 { try spaces.startWorker(i, binary: binary, driverPort: driverPort, secretFile: secretFile) }

    try await expectW1(session, rows: 400_000, keys: 5_000, shards: 6)
    let addresses = session.machines.map(\.address).sorted()
    #expect(addresses.count == 2)
    #expect(addresses.allSatisfy { $0.hasPrefix("10.78.") }, "machines are named by their peer addresses: \(addresses)")
    try await expectW3(session, rows: 100_000, keys: 20_000, shards: 6)

    // W1 again, larger, with namespace 1's link cut once map tasks have run: its machine is
    // declared stopped (keepalive), what it held and ran is computed again on the other.
    let cut = try await expectW1(session, rows: 3_000_000, keys: 5_000, shards: 12) { try spaces.cut(1) }
    #expect(cut, "the job ended before the link was cut")
    let left = session.machines.map(\.address)
    #expect(left.count == 1 && left[0].hasPrefix(spaces.workerAddress(0) + ":"), "\(left)")
  }
}

/// Runs `job` on `session`; with `fault`, calls it once the job's first operation has
/// finished two tasks. Returns the job's value and whether the fault came before it ended.
func withFault<R: Sendable>(
  _ session: Session, _ fault: (() async throws -> Void)?, _ job: @escaping @Sendable () async throws -> R
) async throws -> (R, Bool) {
  let jobs = session.jobs.count
  let running = Task { try await job() }
  var faulted = false
  if let fault {
    for _ in 0..<3000 where !faulted {
      if session.jobs.count > jobs, let ops = session.jobs.last?.operations(), ops.contains(where: { $0.done >= 2 }) {
        try await fault()
        faulted = true
      }
      try await Task.sleep(for: .milliseconds(5))
    }
  }
  return (try await running.value, faulted)
}

/// Runs W1 (`rows` rows, sums by key over `keys` keys) on `session` and expects the sums a
/// loop here computes, each key once. With `fault`, calls it once the job's first
/// operation has finished two tasks, and returns whether it did before the job ended.
@discardableResult
func expectW1(
  _ session: Session, rows: Int, keys: Int, shards: Int, fault: (() async throws -> Void)? = nil
) async throws -> Bool {
  var sums = [Int?](repeating: nil, count: keys)
  for i in 0..<rows {
    let (k, v) = Workloads.row(i, keys: keys, seed: 0)
    sums[k] = (sums[k] ?? 0) + v
  }
  let (result, faulted) = try await withFault(session, fault) {
    try await session.run(Workloads.w1, rows, keys, shards)
  }
  var got = [Int?](repeating: nil, count: keys)
  var duplicates = 0
  for (k, v) in try result.rows() {
    if got[k] != nil { duplicates += 1 }
    got[k] = v
  }
  #expect(got == sums && duplicates == 0)
  return faulted
}

/// Runs W3 (per key, the rows of two inputs of `rows` rows over `keys` keys) on `session`
/// and expects the counts a loop here computes; `fault` as for `expectW1`.
@discardableResult
func expectW3(
  _ session: Session, rows: Int, keys: Int, shards: Int, fault: (() async throws -> Void)? = nil
) async throws -> Bool {
  var counts = [[Int]](repeating: [0, 0], count: keys)
  for i in 0..<rows {
    counts[Workloads.row(i, keys: keys, seed: 0).key][0] += 1
    counts[Workloads.row(i, keys: keys, seed: 1 << 50).key][1] += 1
  }
  let (result, faulted) = try await withFault(session, fault) {
    try await session.run(Workloads.w3, rows, keys, shards)
  }
  var seen = 0
  var wrong = 0
  for (k, a, b) in try result.rows() {
    seen += 1
    if counts[k] != [a.count, b.count] { wrong += 1 }
  }
  #expect(seen == counts.filter { $0 != [0, 0] }.count && wrong == 0)
  return faulted
}
