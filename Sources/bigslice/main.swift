import ArgumentParser

/// The `bigslice` tool: demo jobs and trace summaries.
struct BigsliceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bigslice",
    abstract: "Runs bigslice demo jobs and summarises their traces.",
    discussion: """
      Examples:
        bigslice demo wordcount --words 1000000
        bigslice demo shuffle --rows 30000000 --keys 3000000 --memory-limit 200000000
        bigslice demo wordcount --trace /tmp/wc.json
        bigslice trace summarize /tmp/wc.json
      """,
    subcommands: [Demo.self, TraceCommand.self]
  )
}

BigsliceCommand.main()
