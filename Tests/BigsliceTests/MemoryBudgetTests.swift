import Bigslice
import Foundation
import Frame
import Testing

/// The `bigslice` binary beside the test bundle.
func bigsliceBinary() throws -> String {
  let exe = try #require(Bundle.main.executablePath.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
  let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("bigslice").path
  try #require(FileManager.default.isExecutableFile(atPath: path), "no bigslice binary at \(path)")
  return path
}

/// Runs `bigslice demo shuffle` with `arguments` and returns its key=value report; with
/// `descriptors`, under that limit on open files (`ulimit -n`).
func shuffleDemo(_ arguments: [String], descriptors: Int? = nil) throws -> [String: Int] {
  let command = [try bigsliceBinary(), "demo", "shuffle", "--procs", "2"] + arguments
  let result =
    if let descriptors {
      try run("/bin/sh", ["-c", "ulimit -n \(descriptors) && exec \"$@\"", "sh"] + command)
    } else {
      try run(command[0], Array(command.dropFirst()))
    }
  try #require(
    result.status == 0, "bigslice demo shuffle \(arguments) exited \(result.status): \(result.err.suffix(2000))")
  var report: [String: Int] = [:]
  for pair in result.out.split(whereSeparator: \.isWhitespace) {
    let parts = pair.split(separator: "=", maxSplits: 1)
    if parts.count == 2, let value = Int(parts[1]) { report[String(parts[0])] = value }
  }
  return report
}

@Suite(.engine) struct MemoryBudgetTests {
  /// W4's shape scaled down: 12M rows over 1.2M keys (192 MB of rows, and about 16 of every
  /// 20 keys survive each map task's combining) under an 8 MB limit, in a process of its own
  /// so its peak RSS is the job's. The answer must equal a naive pass over the same rows, and
  /// the peak must stay within the limit and `Session.memoryOverhead`, far below the rows'
  /// size, which an unbounded run holds several times over.
  @Test func aW4ShapedJobUnderATinyBudgetIsRightAndStaysSmall() async throws {
    let rows = 12_000_000
    let keys = 1_200_000
    let limit = 8 << 20
    let got = try shuffleDemo(["--rows", "\(rows)", "--keys", "\(keys)", "--memory-limit", "\(limit)"])

    // The reference: the generator of Workloads.table, row by row.
    var seen = [Bool](repeating: false, count: keys)
    var groups = 0
    var sum = 0
    var keySum = 0
    for i in 0..<UInt64(rows) {
      let key = Int(splitmix64(i) % UInt64(keys))
      let value = Int(splitmix64(i &+ (1 << 40)) % 1000)
      if !seen[key] {
        seen[key] = true
        groups += 1
      }
      sum &+= value
      keySum &+= key &* value
    }
    #expect(got["groups"] == groups)
    #expect(got["sum"] == sum)
    #expect(got["keysum"] == keySum)
    #expect((got["spilled"] ?? 0) > 0, "nothing spilled under an 8 MB limit")

    let peak = try #require(got["peak_rss"])
    let bound = limit + Session.memoryOverhead(procs: 2)
    #expect(peak < bound, "peak RSS \(peak >> 20) MiB over the bound \(bound >> 20) MiB")
    #expect(bound < rows * 16 * 3 / 4, "the bound must be well below the data for the test to mean anything")
  }
}
