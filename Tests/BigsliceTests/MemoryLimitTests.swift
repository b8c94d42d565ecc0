import Bigslice
import Foundation
import Frame
import Testing
import Workloads

/// What `bigslice-testworker memory …` printed: one job under a memory limit in a process of
/// its own (and, with machines, in worker processes of their own).
struct MemoryReport: Decodable {
  var groups: Int
  var keysum: Int?
  var pairs: Int?
  var hotRows: Int?
  var heldOverLimit: Int?
  var peakRss: Int
  var startRss: Int
  var spilled: Int
  var machinePeakRss: [Int]
}

/// Runs `bigslice-testworker memory` with `arguments`.
func memoryRun(_ arguments: [String]) throws -> MemoryReport {
  let result = try run(try testWorkerBinary(), ["memory"] + arguments)
  try #require(result.status == 0, "memory \(arguments) exited \(result.status): \(result.out.suffix(2000))")
  let decoder = JSONDecoder()
  decoder.keyDecodingStrategy = .convertFromSnakeCase
  return try decoder.decode(MemoryReport.self, from: Data(result.out.utf8))
}

/// The memory limit bounds each process's peak RSS (`VmHWM`) by the limit plus
/// `Session.memoryOverhead`, whatever the data, in one process and on every worker of two.
/// Each job runs in a process of its own, so its peak is the job's.
@Suite(.serialized, .engine) struct MemoryLimitTests {
  static let rows = 30_000_000
  static let keys = 3_000_000

  /// W4's answer for `rows` over `keys`, by a plain pass over the generator.
  static let w4Reference = w4Answer(rows: rows, keys: keys)

  static func w4Answer(rows: Int, keys: Int) -> (groups: Int, keysum: Int) {
    var sums = [Int](repeating: -1, count: keys)
    for i in 0..<rows {
      let (key, value) = Workloads.row(i, keys: keys, seed: 0)
      sums[key] = sums[key] < 0 ? value : sums[key] + value
    }
    var (groups, keysum) = (0, 0)
    for (key, sum) in sums.enumerated() where sum >= 0 {
      groups += 1
      keysum &+= key &* sum
    }
    return (groups, keysum)
  }

  /// W4's shape at 30M rows and 3M keys, at limits of 64, 256 and 1024 MiB: the same answer as
  /// the plain pass, and every process under its bound.
  @Test(arguments: [64, 256, 1024])
  func w4ShapeStaysUnderTheLimit(mebibytes: Int) throws {
    let limit = mebibytes << 20
    for machines in [0, 2] {
      let procs = machines == 0 ? 2 : 1
      let got = try memoryRun(
        ["shuffle", "\(Self.rows)", "\(Self.keys)", "16", "\(limit)", "\(machines)", "\(procs)"])
      #expect(got.groups == Self.w4Reference.groups)
      #expect(got.keysum == Self.w4Reference.keysum)
      let bound = limit + Session.memoryOverhead(procs: procs)
      let place = machines == 0 ? "in one process" : "on the driver"
      #expect(got.peakRss <= bound, "\(place): peak RSS \(got.peakRss >> 20) MiB over \(bound >> 20) MiB")
      #expect(got.machinePeakRss.count == machines)
      for (i, peak) in got.machinePeakRss.enumerated() {
        #expect(peak > 0 && peak <= bound, "machine \(i): peak RSS \(peak >> 20) MiB over \(bound >> 20) MiB")
      }
      if mebibytes == 64 { #expect(got.spilled > 0, "nothing spilled at 64 MiB") }
    }
  }

  /// A result larger than the limit: 10M rows over 10M keys make 6.3M groups, 100 MB, which
  /// spill like any output instead of staying in memory for the reader.
  @Test func aResultLargerThanTheLimitStaysUnderIt() throws {
    let (rows, keys, limit) = (10_000_000, 10_000_000, 64 << 20)
    let reference = Self.w4Answer(rows: rows, keys: keys)
    let got = try memoryRun(["shuffle", "\(rows)", "\(keys)", "16", "\(limit)", "0", "2"])
    #expect(got.groups == reference.groups)
    #expect(got.keysum == reference.keysum)
    let bound = limit + Session.memoryOverhead(procs: 2)
    #expect(got.peakRss <= bound, "peak RSS \(got.peakRss >> 20) MiB over \(bound >> 20) MiB")
  }

  /// The join of two 10M-row inputs, as `Workloads.skewedJoin` makes them, by a plain pass.
  static func joinReference(rows: Int, keys: Int, hotPercent: Int) -> (groups: Int, pairs: Int, hot: Int) {
    var counts = [[Int]](repeating: [Int](repeating: 0, count: keys), count: 2)
    for (side, seed) in [UInt64(0), 1 << 50].enumerated() {
      for i in 0..<rows {
        let hot = Int(splitmix64(UInt64(i) &+ seed &+ (1 << 41)) % 100) < hotPercent
        counts[side][hot ? 0 : Workloads.row(i, keys: keys, seed: seed).key] += 1
      }
    }
    var (groups, pairs) = (0, 0)
    for key in 0..<keys where counts[0][key] + counts[1][key] > 0 {
      groups += 1
      pairs += counts[0][key] * counts[1][key]
    }
    return (groups, pairs, counts[0][0] + counts[1][0])
  }

  /// A cogroup of two 10M-row inputs under 64 MiB: with keys spread evenly it stays under the
  /// bound. With one key holding a tenth of the rows (2M rows, 32 MB), that group is held
  /// whole: the one exception, which the session reports, and which costs no more than three
  /// times the group's bytes over the bound.
  @Test(arguments: [0, 10])
  func aJoinStaysUnderTheLimitSaveForOneHotKey(hotPercent: Int) throws {
    let (rows, keys, limit) = (10_000_000, 1_000_000, 64 << 20)
    let reference = Self.joinReference(rows: rows, keys: keys, hotPercent: hotPercent)
    for machines in [0, 2] {
      let procs = machines == 0 ? 2 : 1
      let got = try memoryRun(
        ["join", "\(rows)", "\(keys)", "\(hotPercent)", "16", "\(limit)", "\(machines)", "\(procs)"])
      #expect(got.groups == reference.groups)
      #expect(got.pairs == reference.pairs)
      #expect(got.hotRows == reference.hot)
      var bound = limit + Session.memoryOverhead(procs: procs)
      if hotPercent == 0 {
        #expect(got.heldOverLimit == 0)
      } else {
        #expect((got.heldOverLimit ?? 0) >= 1, "the hot key's group was not reported")
        bound += 3 * reference.hot * 16
      }
      let peaks = (machines == 0 ? [got.peakRss] : got.machinePeakRss)
      #expect(peaks.count == max(machines, 1))
      for (i, peak) in peaks.enumerated() {
        #expect(peak > 0 && peak <= bound, "process \(i): peak RSS \(peak >> 20) MiB over \(bound >> 20) MiB")
      }
      #expect(got.peakRss <= bound, "the driver's peak RSS \(got.peakRss >> 20) MiB over \(bound >> 20) MiB")
    }
  }
}
