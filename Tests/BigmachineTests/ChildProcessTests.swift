import Testing

@testable import Bigmachine

@Suite struct ChildProcessTests {
  /// Both streams are read as they fill, so a child that writes more than a pipe holds to each
  /// does not stall; a status says how the child ended.
  @Test func aBlockingRunReadsBothStreamsAndTellsHowTheChildEnded() throws {
    let (status, output, errors) = try ChildProcess.runBlocking(
      "/bin/sh", ["-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2; kill -9 $$"])
    #expect(output.utf8.count == 300_000)
    #expect(errors.utf8.count == 200_000)
    #expect(ChildProcess.describe(status) == "killed by signal 9")
    let exited = try ChildProcess.runBlocking("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])
    #expect(exited.output == "out\n" && exited.errors == "err\n")
    #expect(ChildProcess.describe(exited.status) == "exit status 3")
  }

  /// Children that end at once, many in a row: each is reaped and its status returned (where
  /// Foundation's `Process.waitUntilExit` could miss such an exit and wait forever).
  @Test func childrenThatEndAtOnceAreEachReaped() throws {
    for i in 0..<200 {
      let (status, output, _) = try ChildProcess.runBlocking("/bin/sh", ["-c", "exit \(i % 2)"])
      #expect(status >> 8 == Int32(i % 2) && output.isEmpty)
    }
  }

  /// A program that cannot start is an error that names it, not a status.
  @Test func aMissingProgramIsAnErrorNamingIt() {
    #expect {
      try ChildProcess.runBlocking("/nonexistent/program", [])
    } throws: { "\($0)".contains("/nonexistent/program") }
  }
}
