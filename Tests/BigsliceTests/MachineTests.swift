import Bigmachine
import Bigslice
import BigsliceTestFuncs
import Foundation
import Testing

/// The `bigslice-testworker` binary, built beside the test bundle.
func testWorkerBinary() throws -> String {
  let exe = try #require(Bundle.main.executablePath.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
  let path = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("bigslice-testworker").path
  try #require(FileManager.default.isExecutableFile(atPath: path), "no bigslice-testworker binary at \(path)")
  return path
}

@Suite(.serialized) struct MachineTests {
  /// Sessions made, used and shut down one after another on one in-process machine: each
  /// session's worker state, compiled tasks and store come and go with it.
  @Test func sessionsComeAndGoOnInProcessMachines() throws {
    TestFuncs.register()
    let (k, v) = randomPairs(20_000, keys: 500, seed: 11)
    var sums: [Int: Int] = [:]
    for (key, value) in zip(k, v) { sums[key, default: 0] += value }
    for round in 0..<4 {
      let session = Session(executor: .machines(system: .inProcess, count: 1, procs: 1))
      for shards in [1, 3] {
        let result = try session.run(TestFuncs.reduceSum, shards, k, v)
        var got: [Int: Int] = [:]
        for (key, sum) in result { got[key] = sum }
        #expect(got == sums, "round \(round), \(shards) shards")
      }
      session.shutdown()
    }
  }
}
