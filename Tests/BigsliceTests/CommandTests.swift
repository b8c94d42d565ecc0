import Bigmachine
import Foundation
import Testing

/// What a run of the `bigslice` binary printed, and how it exited.
struct CommandOutput {
  let status: Int32
  let out: String
  let err: String
}

/// Runs `executable` with `arguments` to its end. The status is the exit status, or 128 plus
/// the signal that killed it, as a shell reports it.
func run(_ executable: String, _ arguments: [String]) throws -> CommandOutput {
  let (raw, out, err) = try ChildProcess.runBlocking(executable, arguments)
  let signal = raw & 0x7f
  return CommandOutput(status: signal == 0 ? (raw >> 8) & 0xff : 128 + signal, out: out, err: err)
}

/// Runs the `bigslice` binary with `arguments`.
func bigslice(_ arguments: [String]) throws -> CommandOutput { try run(try bigsliceBinary(), arguments) }

@Suite(.engine) struct CommandTests {
  /// A file of six words, three distinct.
  func wordsFile() throws -> String {
    let path = NSTemporaryDirectory() + "/bigslice-words-\(UUID().uuidString).txt"
    try "a b a\nc a b\n".write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  @Test func wordcountCountsAFileAndItsTraceSummarizes() async throws {
    let words = try wordsFile()
    let trace = temporaryTracePath()
    defer {
      unlink(words)
      unlink(trace)
    }
    let run = try bigslice(["demo", "wordcount", words, "--shards", "2", "--no-status", "--trace", trace])
    #expect(run.status == 0, "\(run.err)")
    #expect(run.out.contains("6 words, 3 distinct"))
    #expect(run.out.contains("top 10: a:3,b:2,c:1"))
    #expect(run.err.isEmpty, "no status was asked for: \(run.err)")

    let summary = try bigslice(["trace", "summarize", trace])
    #expect(summary.status == 0, "\(summary.err)")
    let lines = summary.out.split(separator: "\n")
    #expect(lines.first == "machines: local")
    #expect(lines.count == 4)
    // The reduce: 2 tasks done, none failed, and the 3 distinct words as its rows.
    let reduce = try #require(lines.last?.split(separator: " "))
    #expect(reduce[0].hasPrefix("reduce@"))
    #expect(Array(reduce[1...2]) == ["2", "0"])
    #expect(reduce[5] == "3")
  }

  /// The shuffle demo on two worker processes (the binary re-run as its machines) gives the
  /// in-process answer, and its trace names both machines.
  @Test func theShuffleDemoRunsOnMachines() async throws {
    let trace = temporaryTracePath()
    defer { unlink(trace) }
    let args = ["demo", "shuffle", "--rows", "300000", "--keys", "5000", "--shards", "4", "--no-status"]
    /// The answer: rows, groups and sums, without the times and sizes that vary.
    func answer(_ run: CommandOutput) -> [Substring] {
      run.out.split(whereSeparator: \.isWhitespace).filter {
        ["rows=", "groups=", "sum=", "keysum="].contains(where: $0.hasPrefix)
      }
    }
    let local = try bigslice(args)
    #expect(local.status == 0, "\(local.err)")
    let machines = try run(
      try bigsliceBinary(), args + ["--machines", "2", "--procs", "1", "--trace", trace])
    #expect(machines.status == 0)
    #expect(answer(local).count == 4)
    #expect(answer(machines) == answer(local), "\(machines.out) against \(local.out)")
    let summary = try bigslice(["trace", "summarize", trace])
    #expect(summary.status == 0, "\(summary.err)")
    let names = try #require(summary.out.split(separator: "\n").first).dropFirst("machines: ".count)
      .split(separator: ", ")
    #expect(names.filter { $0.hasPrefix("127.0.0.1:") }.count == 2, "\(summary.out)")
    // The machines report their reads and writes: the reduce read what the map side wrote.
    let ops = summary.out.split(separator: "\n").dropFirst(2).map { $0.split(separator: " ") }
    let header = try #require(summary.out.split(separator: "\n").dropFirst().first).split(separator: " ")
    let read = try #require(header.firstIndex(of: "read_bytes"))
    let wrote = try #require(header.firstIndex(of: "write_bytes"))
    let map = try #require(ops.first { $0[0].hasPrefix("reader@") })
    let reduce = try #require(ops.first { $0[0].hasPrefix("reduce@") })
    #expect(Int(map[wrote])! > 0 && reduce[read] == map[wrote], "\(summary.out)")
  }

  @Test func theStatusGoesToStderrAsPlainLinesOffATerminal() async throws {
    let words = try wordsFile()
    defer { unlink(words) }
    let run = try bigslice(["demo", "wordcount", words, "--shards", "2"])
    #expect(run.status == 0)
    let lines = run.err.split(separator: "\n")
    #expect(!lines.isEmpty)
    #expect(lines.allSatisfy { $0.hasPrefix("status ") })
    #expect(!run.err.contains("\u{1B}"))
    #expect(lines.last?.contains("2/2 done, 0 running, 0 waiting, 0 lost, 0 failed, 3 rows") == true)
  }

  @Test(arguments: [
    ["--help"], ["demo", "--help"], ["demo", "wordcount", "--help"], ["demo", "shuffle", "--help"],
    ["trace", "--help"], ["trace", "summarize", "--help"],
  ])
  func everyCommandHasHelpWithExamples(_ arguments: [String]) async throws {
    let run = try bigslice(arguments)
    #expect(run.status == 0)
    #expect(run.out.contains("USAGE: bigslice"))
    #expect(run.out.contains("Examples:\n  bigslice "))
  }

  @Test func badArgumentsAreRefusedWithTheReason() async throws {
    let rows = try bigslice(["demo", "shuffle", "--rows", "0"])
    #expect(rows.status != 0)
    #expect(rows.err.contains("--rows must be positive"))
    let machines = try bigslice(["demo", "shuffle", "--machines", "0"])
    #expect(machines.status != 0)
    #expect(machines.err.contains("--machines must be positive"))
    let unknown = try bigslice(["demo", "wordcount", "--wrods", "5"])
    #expect(unknown.status != 0)
    #expect(unknown.err.contains("--wrods"))
    let notATrace = try bigslice(["trace", "summarize", "/nonexistent/trace.json"])
    #expect(notATrace.status != 0)
    #expect(notATrace.err.contains("/nonexistent/trace.json"))
  }
}
