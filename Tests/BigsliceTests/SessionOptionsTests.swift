import ArgumentParser
import Bigslice
import BigsliceOptions
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The standard options: flags over environment variables over the config file over the
/// defaults, and every bad value named with where it came from.
@Suite struct SessionOptionsTests {
  let file = temporaryFile(
    #"{"bigslice": {"procs": 5, "memoryLimit": "1G", "machines": 3, "retries": 7, "status": false, "#
      + #""tracePath": "/tmp/file-trace", "system": "in-process"}}"#)

  @Test func flagsOverEnvironmentOverFileOverDefaults() async throws {
    defer { unlink(file) }
    let environment = ["BIGSLICE_CONFIG": file, "BIGSLICE_PROCS": "4", "BIGSLICE_MEMORY_LIMIT": "64M"]
    let flagged = try await SessionOptions.parse(["--procs", "3", "--trace", "/tmp/flag-trace"]).settings(
      environment: environment)
    #expect(flagged.procs == 3)
    #expect(flagged.tracePath == "/tmp/flag-trace")
    #expect(flagged.memoryLimit == 64 << 20)
    #expect(flagged.machines == 3 && flagged.executor == .machines && flagged.system == .inProcess)
    #expect(flagged.retries == 7 && flagged.status == false)
    #expect(flagged.spillDirectory == nil && flagged.debugAddress == nil)

    let fromEnvironment = try await SessionOptions.parse([]).settings(environment: environment)
    #expect(fromEnvironment.procs == 4 && fromEnvironment.tracePath == "/tmp/file-trace")

    let fromFile = try await SessionOptions.parse(["--config", file]).settings(environment: [:])
    #expect(fromFile.procs == 5 && fromFile.memoryLimit == 1 << 30)

    var defaults = SessionSettings()
    defaults.status = true
    let fromDefaults = try await SessionOptions.parse([]).settings(defaults: defaults, environment: [:])
    #expect(fromDefaults == defaults)
    #expect(fromDefaults.executor == .local && fromDefaults.procs == 2 && fromDefaults.retries == 3)
  }

  @Test func aBadValueIsNamedWithWhereItCameFrom() async throws {
    defer { unlink(file) }
    let badFile = temporaryFile(#"{"bigslice": {"executor": "cloud"}}"#)
    defer { unlink(badFile) }
    let cases: [([String], [String: String], String)] = [
      ([], ["BIGSLICE_PROCS": "abc"], "BIGSLICE_PROCS (bigslice.procs): not a positive whole number: abc"),
      ([], ["BIGSLICE_MEMORY_LIMIT": "lots"], "BIGSLICE_MEMORY_LIMIT (bigslice.memoryLimit): not a size like 2G: lots"),
      ([], ["BIGSLICE_STATUS": "maybe"], "BIGSLICE_STATUS (bigslice.status): not true or false: maybe"),
      (["--config", badFile], [:], "\(badFile) (bigslice.executor): not one of local, machines: cloud"),
      (["--config", "/nonexistent/bigslice.json"], [:], "/nonexistent/bigslice.json: cannot be read"),
    ]
    for (flags, environment, says) in cases {
      let error = await #expect(throws: SessionOptionsError.self) {
        _ = try await SessionOptions.parse(flags).settings(environment: environment)
      }
      #expect("\(error.map { "\($0)" } ?? "no error")".contains(says), "\(error.map { "\($0)" } ?? "")")
    }
    for (flags, says) in [
      (["--memory-limit", "lots"], "--memory-limit: not a size: lots"), (["--procs", "0"], "--procs must be positive"),
      (["--executor", "cloud"], "cloud"),
    ] {
      #expect(throws: (any Error).self, "\(says)") { _ = try SessionOptions.parse(flags) }
      #expect(SessionOptions.message(for: SessionOptions.parseError(flags)).contains(says))
    }
  }

  @Test func theSettingsMakeAWorkingSession() async throws {
    defer { unlink(file) }
    let settings = try await SessionOptions.parse(["--procs", "1", "--memory-limit", "512M", "--no-status"]).settings(
      environment: [:])
    let session = settings.session()
    defer { session.shutdown() }
    let slice: Slice<Int, Int> = const(2, [1, 2, 3, 1], [10, 20, 30, 5]).reduce(.sum)
    let result = try await session.run(slice)
    var sums: [Int: Int] = [:]
    var reader = result.makeRowReader()
    while let (key, sum) = try reader.next() { sums[key] = sum }
    #expect(sums == [1: 15, 2: 20, 3: 30])
  }
}

extension SessionOptions {
  /// The error that parsing `flags` throws (a validation error, or an unknown value).
  fileprivate static func parseError(_ flags: [String]) -> any Error {
    do {
      _ = try parse(flags)
      return ValidationError("no error")
    } catch {
      return error
    }
  }
}
