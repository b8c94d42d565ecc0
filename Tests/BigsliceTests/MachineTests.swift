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
