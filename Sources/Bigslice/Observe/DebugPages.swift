import Bigmachine
import Foundation
import NIOCore
import NIOHTTP1

/// What the debug pages show: the session's recent jobs, its trace and its machines.
struct DebugPages: Sendable {
  let jobs: JobHistory
  let tracer: Tracer?
  /// The session's machines, on the machine executor (beside this process, "local").
  var machines: MachineExecutor? = nil

  /// The most span events `/debug/trace` shows: the newest.
  static let traceEvents = 100_000

  /// The status, content type and body for a request of `uri`.
  func respond(method: HTTPMethod, uri: String) -> (HTTPResponseStatus, String, String) {
    guard method == .GET || method == .HEAD else { return (.methodNotAllowed, "text/plain", "GET only\n") }
    let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
    switch path {
    case "/debug", "/debug/", "/":
      return (.ok, "text/html; charset=utf-8", index)
    case "/debug/status":
      return (.ok, "text/html; charset=utf-8", statusPage(now: .now))
    case "/debug/tasks":
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
      let body = (try? encoder.encode(tasks(now: .now))).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
      return (.ok, "application/json", body + "\n")
    case "/debug/trace":
      guard let tracer else { return (.notFound, "text/plain", "this session keeps no trace\n") }
      return (.ok, "application/json", tracer.json(newest: Self.traceEvents))
    default:
      return (.notFound, "text/plain", "no page \(path); see /debug\n")
    }
  }

  private var index: String {
    page(
      title: "bigslice debug", refresh: false,
      body: """
        <ul><li><a href="/debug/status">/debug/status</a>: jobs, operations and machines</li>
        <li><a href="/debug/tasks">/debug/tasks</a>: the same as JSON</li>
        <li><a href="/debug/trace">/debug/trace</a>: the Chrome trace so far</li></ul>
        """)
  }

  /// Everything `/debug/tasks` shows.
  func tasks(now: ContinuousClock.Instant) -> DebugTasks {
    let jobs = self.jobs.all.reversed().map { job in
      DebugTasks.Job(
        name: job.name, state: job.error != nil ? "failed" : job.isFinished ? "done" : "running", error: job.error,
        seconds: job.elapsed(now: now), operations: job.operations(now: now), tasks: job.tasks(now: now))
    }
    return DebugTasks(jobs: jobs, machines: [.local] + (machines?.stats ?? []))
  }

  /// The HTML status page, latest job first.
  func statusPage(now: ContinuousClock.Instant) -> String {
    let snapshot = tasks(now: now)
    var body = "<h2>Machines</h2>\n<table><tr><th>machine</th><th>memory available</th><th>resident</th>"
    body += "<th>disk available</th><th>load (1, 5, 15 min)</th></tr>\n"
    for m in snapshot.machines {
      body += "<tr class=\"machine\"><td>\(html(m.name))</td><td>\(bytes(m.memory.availableBytes)) of "
      body += "\(bytes(m.memory.totalBytes))</td><td>\(bytes(m.memory.processResidentBytes))</td>"
      body += "<td>\(bytes(m.disk.availableBytes)) of \(bytes(m.disk.totalBytes)) (\(html(m.disk.path)))</td>"
      body += "<td>\(m.load.one), \(m.load.five), \(m.load.fifteen)</td></tr>\n"
    }
    body += "</table>\n"
    if snapshot.jobs.isEmpty { body += "<p>No job has run yet.</p>\n" }
    for job in snapshot.jobs {
      body += "<h2 class=\"job \(job.state)\">\(html(job.name)): \(job.state), "
      body += "\(StatusDisplay.format(seconds: job.seconds))</h2>\n"
      if let error = job.error { body += "<pre class=\"error\">\(html(error))</pre>\n" }
      body += "<table><tr><th>operation</th><th>reads</th><th>tasks</th><th>waiting</th><th>running</th><th>done</th>"
      body += "<th>lost</th><th>failed</th><th>rows</th><th>rows/s</th><th>by shard</th></tr>\n"
      let byOperation = Dictionary(grouping: job.tasks, by: \.operation)
      for op in job.operations {
        body += "<tr class=\"operation\" data-operation=\"\(html(op.name))\"><td>\(html(op.name))</td>"
        body += "<td class=\"inputs\">\(op.inputs.map(html).joined(separator: "<br>"))</td>"
        body += "<td class=\"tasks\">\(op.tasks)</td><td class=\"waiting\">\(op.waiting)</td>"
        body += "<td class=\"running\">\(op.running)</td><td class=\"done\">\(op.done)</td>"
        body += "<td class=\"lost\">\(op.losses)</td><td class=\"failed\">\(op.failed)</td>"
        body += "<td>\(op.rows)</td><td>\(StatusDisplay.format(count: Int(op.rowsPerSecond)))</td><td class=\"grid\">"
        for task in (byOperation[op.name] ?? []).prefix(1024) {
          body +=
            "<span class=\"t \(task.state.rawValue)\" title=\"shard \(task.shard): \(task.state.rawValue)\"></span>"
        }
        body += "</td></tr>\n"
      }
      body += "</table>\n"
    }
    return page(title: "bigslice status", refresh: true, body: body)
  }

  private func page(title: String, refresh: Bool, body: String) -> String {
    """
    <!doctype html>
    <html><head><meta charset="utf-8">\(refresh ? "<meta http-equiv=\"refresh\" content=\"2\">" : "")
    <title>\(title)</title>
    <style>
    body { font-family: sans-serif; margin: 1em 2em; }
    table { border-collapse: collapse; margin-bottom: 1em; }
    th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
    td:first-child, th:first-child { text-align: left; font-family: monospace; }
    td.inputs { text-align: left; font-family: monospace; font-size: smaller; }
    td.grid { text-align: left; max-width: 40em; line-height: 8px; }
    .t { display: inline-block; width: 8px; height: 8px; margin: 1px; background: #ddd; }
    .t.running { background: #4a90e2; } .t.done { background: #5cb85c; }
    .t.lost { background: #f0ad4e; } .t.failed { background: #d9534f; }
    h2.failed { color: #d9534f; }
    </style></head>
    <body><h1>\(title)</h1>
    \(body)</body></html>

    """
  }

  private func bytes(_ n: Int) -> String { StatusDisplay.format(count: n) + "B" }
}

/// The body of `/debug/tasks`: the recent jobs, latest first, and the machines.
struct DebugTasks: Codable, Sendable {
  struct Job: Codable, Sendable {
    let name: String
    /// `running`, `done` or `failed`.
    let state: String
    let error: String?
    let seconds: Double
    let operations: [OperationStatus]
    let tasks: [TaskStatus]
  }

  struct Machine: Codable, Sendable {
    let name: String
    let memory: MemoryInfo
    let disk: DiskInfo
    let load: LoadInfo

    /// This process's machine, measured now.
    static var local: Machine {
      Machine(name: "local", memory: .current(), disk: .current(), load: .current())
    }
  }

  let jobs: [Job]
  let machines: [Machine]
}
