import ArgumentParser
import Bigmachine
import Bigslice
import Workloads

/// The `bigslice` tool: demo jobs, the hosts system's workers, and trace summaries.
struct BigsliceCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bigslice",
    abstract: "Runs bigslice demo jobs, joins a driver as a worker, and summarises traces.",
    discussion: """
      Examples:
        bigslice demo wordcount --words 1000000
        bigslice demo shuffle --rows 30000000 --keys 3000000 --memory-limit 200000000
        bigslice demo shuffle --rows 30000000 --machines 2 --procs 1
        bigslice demo wordcount --trace /tmp/wc.json
        bigslice trace summarize /tmp/wc.json
        BIGMACHINE_SECRET_FILE=/shared/secret bigslice worker --join driver.example:7070
      """,
    subcommands: [Demo.self, WorkerCommand.self, TraceCommand.self]
  )
}

// A demo run with --machines re-runs this binary as its workers: in them this call serves
// the demo funcs until the driver is done (it returns only in any other process).
Workloads.register()
if Bigmachine.isWorker {
  _ = try await Bigmachine.start(system: LocalSystem(), services: Session.machineServices)
}
BigsliceCommand.main()
