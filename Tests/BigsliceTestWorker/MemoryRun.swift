import Bigmachine
import Bigslice
import Foundation
import Workloads

/// One job under a memory limit, in a process of its own, for the memory tests:
///
///     memory shuffle ROWS KEYS SHARDS LIMIT MACHINES PROCS
///     memory join ROWS KEYS HOT_PERCENT SHARDS LIMIT MACHINES PROCS
///
/// `shuffle` is W4's reduce, `join` the skewed join (`Workloads.skewedJoin`); LIMIT is in
/// bytes; MACHINES 0 runs in this process. Prints one line of JSON: the job's checksums
/// (`groups`, and `keysum` or `pairs`), this process's RSS before the session and its peak,
/// and each machine's peak RSS.
struct MemoryRun {
  let job: String
  let numbers: [Int]

  init(_ arguments: [String]) throws {
    guard let job = arguments.first, ["shuffle", "join"].contains(job) else {
      throw BigsliceError.invalidArgument("memory: the job is shuffle or join")
    }
    let numbers = arguments.dropFirst().compactMap { Int($0) }
    guard numbers.count == arguments.count - 1, numbers.count == (job == "join" ? 7 : 6) else {
      throw BigsliceError.invalidArgument("memory \(job): wrong arguments \(arguments)")
    }
    self.job = job
    self.numbers = numbers
  }

  func run() throws -> String {
    let start = MemoryInfo.current().processResidentBytes
    let (limit, machines, procs) = (numbers[numbers.count - 3], numbers[numbers.count - 2], numbers[numbers.count - 1])
    let session = Session(
      executor: machines > 0 ? .machines(system: .local, count: machines, procs: procs) : .local(procs: procs),
      memoryLimit: limit)
    defer { session.shutdown() }
    var figures: [String: Int] = [:]
    if job == "shuffle" {
      let result = try session.run(Workloads.w4, numbers[0], numbers[1], numbers[2])
      var rows = result.makeRowReader()
      var (groups, keysum) = (0, 0)
      while let (key, sum) = try rows.next() {
        groups += 1
        keysum &+= key &* sum
      }
      figures = ["groups": groups, "keysum": keysum]
    } else {
      let result = try session.run(Workloads.skewedJoin, numbers[0], numbers[1], numbers[2], numbers[3])
      var rows = result.makeRowReader()
      var (groups, pairs, hot) = (0, 0, 0)
      while let (key, a, b) = try rows.next() {
        groups += 1
        pairs &+= a.count * b.count
        if key == 0 { hot = a.count + b.count }
      }
      figures = ["groups": groups, "pairs": pairs, "hot_rows": hot, "held_over_limit": session.groupsHeldOverLimit]
    }
    let peaks = session.machinePeakResidentBytes().map { $0 ?? -1 }
    figures["start_rss"] = start
    figures["peak_rss"] = MemoryInfo.current().processPeakResidentBytes
    figures["spilled"] = session.spilledBytes
    var object: [String: Any] = figures
    object["machine_peak_rss"] = peaks
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    return String(decoding: data, as: UTF8.self)
  }
}
