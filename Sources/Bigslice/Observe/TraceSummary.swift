import Foundation

/// Where the time of a traced job went, per operation: read back from a trace that `Tracer`
/// wrote (`Session(tracePath:)`). `bigslice trace summarize FILE` prints its `table`.
public struct TraceSummary: Sendable {
  /// One operation's tasks, summed over the trace.
  public struct Operation: Sendable, Equatable {
    public let name: String
    /// Task runs that finished done, failed, or were cut short by a lost input.
    public var done = 0
    public var failed = 0
    public var interrupted = 0
    /// Outputs lost after they were done.
    public var lost = 0
    /// Seconds of all its task runs, added up (CPU-ish time).
    public var taskSeconds = 0.0
    /// Seconds from its first task starting to its last one ending.
    public var wallSeconds = 0.0
    /// Rows and bytes output by the runs that finished done.
    public var rows = 0
    public var bytes = 0
    /// Rows and bytes read from inputs and written to outputs, with the seconds spent doing so.
    public var readRows = 0
    public var readBytes = 0
    public var readSeconds = 0.0
    public var writeBytes = 0
    public var writeSeconds = 0.0
    /// Minimum, first quartile, median, third quartile and maximum of the seconds of its
    /// task runs.
    public var quartiles: [Double] = []

    public init(name: String) { self.name = name }
  }

  /// The operations, in the order their first task started.
  public let operations: [Operation]
  /// The machines (trace processes) the tasks ran on.
  public let machines: [String]

  private struct File: Decodable {
    let traceEvents: [Event]
  }

  private struct Event: Decodable {
    let name: String
    let cat: String?
    let ph: String
    let ts: Double?
    let dur: Double?
    let pid: Int?
    let args: Args?
  }

  private struct Args: Decodable {
    let name: String?
    let operation: String?
    let state: String?
    let rows: Int?
    let bytes: Int?
  }

  /// Reads the trace in `data`; `path` names it in errors.
  /// - Throws: `BigsliceError.traceFile` when it is not a Chrome trace in JSON.
  public init(data: Data, path: String = "trace") throws {
    let file: File
    do {
      file = try JSONDecoder().decode(File.self, from: data)
    } catch {
      throw BigsliceError.traceFile(path: path, reason: "not a Chrome trace in JSON: \(error)")
    }
    var byName: [String: Operation] = [:]
    var first: [String: Double] = [:]
    var last: [String: Double] = [:]
    var durations: [String: [Double]] = [:]
    var machines: [String] = []
    for event in file.traceEvents {
      if event.ph == "M", event.name == "process_name", let name = event.args?.name { machines.append(name) }
      guard let args = event.args, let name = args.operation, let cat = event.cat else { continue }
      var op = byName[name] ?? Operation(name: name)
      let ts = (event.ts ?? 0) / 1e6
      let dur = (event.dur ?? 0) / 1e6
      switch cat {
      case "task":
        switch args.state {
        case "done":
          op.done += 1
          op.rows += args.rows ?? 0
          op.bytes += args.bytes ?? 0
        case "failed": op.failed += 1
        default: op.interrupted += 1
        }
        op.taskSeconds += dur
        durations[name, default: []].append(dur)
        first[name] = min(first[name] ?? ts, ts)
        last[name] = max(last[name] ?? ts + dur, ts + dur)
      case "read":
        op.readRows += args.rows ?? 0
        op.readBytes += args.bytes ?? 0
        op.readSeconds += dur
      case "write":
        op.writeBytes += args.bytes ?? 0
        op.writeSeconds += dur
      case "lost":
        op.lost += 1
      default:
        continue
      }
      byName[name] = op
    }
    for (name, values) in durations {
      byName[name]!.quartiles = TraceSummary.quartiles(values)
      byName[name]!.wallSeconds = last[name]! - first[name]!
    }
    operations = byName.values.sorted {
      (first[$0.name] ?? .infinity, $0.name) < (first[$1.name] ?? .infinity, $1.name)
    }
    self.machines = machines
  }

  /// Reads the trace file at `path`.
  /// - Throws: `BigsliceError.traceFile` when it cannot be read or is not a trace.
  public init(path: String) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw BigsliceError.traceFile(path: path, reason: "cannot read it")
    }
    try self.init(data: data, path: path)
  }

  /// Minimum, quartiles and maximum of `values` (linear between the nearest ranks); empty for
  /// no values.
  static func quartiles(_ values: [Double]) -> [Double] {
    guard !values.isEmpty else { return [] }
    let sorted = values.sorted()
    return [0, 0.25, 0.5, 0.75, 1].map { p in
      let position = p * Double(sorted.count - 1)
      let low = Int(position.rounded(.down))
      let high = min(low + 1, sorted.count - 1)
      return sorted[low] + (sorted[high] - sorted[low]) * (position - Double(low))
    }
  }

  /// A table with a row per operation: its tasks, task and wall seconds, output rows and bytes,
  /// bytes read and written with the seconds spent on them, and the quartiles of its task
  /// durations.
  public var table: String {
    let header = [
      "operation", "tasks", "failed", "task_s", "wall_s", "rows", "bytes", "read_bytes", "read_s", "write_bytes",
      "write_s", "min_s", "q1_s", "median_s", "q3_s", "max_s",
    ]
    var rows = [header]
    for op in operations {
      var row = [
        op.name, "\(op.done)", "\(op.failed)", fixed(op.taskSeconds), fixed(op.wallSeconds), "\(op.rows)",
        "\(op.bytes)", "\(op.readBytes)", fixed(op.readSeconds), "\(op.writeBytes)", fixed(op.writeSeconds),
      ]
      row += op.quartiles.map(fixed)
      rows.append(row)
    }
    let widths = header.indices.map { column in rows.map { $0.count > column ? $0[column].count : 0 }.max()! }
    return rows.map { row in
      row.enumerated().map { column, cell in
        let pad = String(repeating: " ", count: widths[column] - cell.count)
        return column == 0 ? cell + pad : pad + cell
      }.joined(separator: "  ")
    }.joined(separator: "\n") + "\n"
  }

  private func fixed(_ x: Double) -> String { String(format: "%.3f", x) }
}
