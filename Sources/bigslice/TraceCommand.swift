import ArgumentParser
import Bigslice

/// `bigslice trace`: reading the Chrome traces that `Session(tracePath:)` writes.
struct TraceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "trace",
    abstract: "Reads bigslice traces.",
    discussion: """
      Examples:
        bigslice trace summarize /tmp/wc.json
      """,
    subcommands: [Summarize.self]
  )
}

/// `bigslice trace summarize FILE`.
struct Summarize: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Prints where the time of a traced job went, per operation.",
    discussion: """
      Prints a row per operation: its tasks done and failed, the seconds of its task runs added \
      up (task_s) and from first start to last end (wall_s), its output rows and bytes, the \
      bytes it read and wrote with the seconds spent on them, and the minimum, quartiles and \
      maximum of its task durations.

      Examples:
        bigslice demo wordcount --words 1000000 --trace /tmp/wc.json
        bigslice trace summarize /tmp/wc.json
      """
  )

  @Argument(help: "A trace file written by a session with a trace path.")
  var file: String

  func run() throws {
    let summary = try TraceSummary(path: file)
    print("machines: \(summary.machines.joined(separator: ", "))")
    print(summary.table, terminator: "")
  }
}
