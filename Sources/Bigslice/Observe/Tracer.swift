import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// Records what ran where and when as a Chrome trace (the JSON that `chrome://tracing` and
/// Perfetto open), from the task events of an executor: it is a `TaskObserver`.
///
/// Each machine is a process (`pid`), named after the machine ("local" in this process). A
/// task's run is a complete (`X`) event of category `task` named `OPERATION:SHARD`, on a
/// virtual thread of its machine: the lowest one free when it started, so a machine's threads
/// show how many tasks ran at once. Its `args` hold the operation, shard, task id, the state
/// it ended in (`done`, `failed`, or `waiting` when its input was lost), and its output rows
/// and bytes. Within it, a `read` event spans the time spent reading its inputs (placed at its
/// first read) and a `write` event the time spent storing its output (placed at its end),
/// each with the rows and bytes they moved. A lost output is an instant (`i`) event.
///
/// Each event costs a lock and a line of JSON; the trace is kept in memory until written.
public final class Tracer: TaskObserver, @unchecked Sendable {
  /// Time zero of the trace's timestamps.
  public let origin: ContinuousClock.Instant

  private struct Open {
    let start: ContinuousClock.Instant
    let pid: Int
    let tid: Int
  }

  private struct State {
    var events: [String] = []
    var pids: [String: Int] = [:]
    /// Per process, whether each virtual thread is busy.
    var busy: [Int: [Bool]] = [:]
    var open: [Int: Open] = [:]
  }

  private let state = Mutex(State())

  public init(origin: ContinuousClock.Instant = .now) { self.origin = origin }

  public func record(_ event: TaskEvent) {
    state.withLock { s in
      let pid = process(event.machine, &s)
      let key = event.task
      switch event.state {
      case .running:
        var threads = s.busy[pid]!
        let tid = threads.firstIndex(of: false) ?? threads.count
        if tid == threads.count {
          threads.append(true)
          s.events.append(
            #"{"name":"thread_name","ph":"M","pid":\#(pid),"tid":\#(tid),"args":{"name":"proc \#(tid)"}}"#)
        } else {
          threads[tid] = true
        }
        s.busy[pid] = threads
        s.open[key.id] = Open(start: event.time, pid: pid, tid: tid)
      case .done, .failed, .waiting:
        guard let open = s.open.removeValue(forKey: key.id) else { return }
        s.busy[open.pid]![open.tid] = false
        let place = #""pid":\#(open.pid),"tid":\#(open.tid)"#
        let task = #""operation":\#(jsonString(key.operation)),"shard":\#(key.shard),"task":\#(key.id)"#
        var args = #"\#(task),"state":"\#(event.state.rawValue)""#
        if event.state == .done { args += #","rows":\#(event.rows),"bytes":\#(event.bytes)"# }
        if let error = event.error { args += #","error":\#(jsonString(error))"# }
        s.events.append(
          #"{"name":\#(jsonString("\(key.operation):\(key.shard)")),"cat":"task","ph":"X",\#(span(open.start, event.time)),\#(place),"args":{\#(args)}}"#
        )
        guard let io = event.io else { return }
        if let first = io.firstRead {
          s.events.append(
            #"{"name":"read","cat":"read","ph":"X",\#(span(first, first + io.readTime)),\#(place),"args":{\#(task),"rows":\#(io.readRows),"bytes":\#(io.readBytes)}}"#
          )
        }
        if io.writeRows > 0 {
          s.events.append(
            #"{"name":"write","cat":"write","ph":"X",\#(span(event.time - io.writeTime, event.time)),\#(place),"args":{\#(task),"rows":\#(io.writeRows),"bytes":\#(io.writeBytes)}}"#
          )
        }
      case .lost:
        s.events.append(
          #"{"name":\#(jsonString("lost \(key.operation):\(key.shard)")),"cat":"lost","ph":"i","s":"p","ts":\#(micros(event.time)),"pid":\#(pid),"tid":0,"args":{"operation":\#(jsonString(key.operation)),"shard":\#(key.shard),"task":\#(key.id)}}"#
        )
      }
    }
  }

  /// The process of `machine`, named by a metadata event when first seen.
  private func process(_ machine: String, _ s: inout State) -> Int {
    if let pid = s.pids[machine] { return pid }
    let pid = s.pids.count
    s.pids[machine] = pid
    s.busy[pid] = []
    s.events.append(#"{"name":"process_name","ph":"M","pid":\#(pid),"args":{"name":\#(jsonString(machine))}}"#)
    return pid
  }

  /// `"ts":…,"dur":…` in whole microseconds, rounding both ends the same way so that a span
  /// inside another stays inside it.
  private func span(_ start: ContinuousClock.Instant, _ end: ContinuousClock.Instant) -> String {
    #""ts":\#(micros(start)),"dur":\#(micros(end) - micros(start))"#
  }

  private func micros(_ instant: ContinuousClock.Instant) -> Int {
    let d = instant - origin
    return Int(d.components.seconds) * 1_000_000 + Int(d.components.attoseconds / 1_000_000_000_000)
  }

  /// The trace so far, as a JSON object with `traceEvents`; spans of tasks still running are
  /// not in it yet.
  public var json: String { json(newest: Int.max) }

  /// The trace so far with at most its newest `limit` span events (the names of processes
  /// are all kept), and, when older ones were left out, an instant event at the start saying
  /// how many.
  public func json(newest limit: Int) -> String {
    var events = state.withLock { $0.events }
    let names = events.filter { $0.contains(#""ph":"M""#) }
    let spans = events.count - names.count
    if spans > limit {
      let kept = events.filter { !$0.contains(#""ph":"M""#) }.suffix(limit)
      let note =
        #"{"name":"\#(spans - limit) older events left out: the trace kept here is capped at the newest \#(limit)","ph":"i","s":"g","ts":0,"pid":0,"tid":0}"#
      events = names + [note] + kept
    }
    return #"{"displayTimeUnit":"ms","traceEvents":["# + "\n" + events.joined(separator: ",\n") + "\n]}\n"
  }

  /// Writes the trace so far to `path`, through a temporary file renamed over it, so a reader
  /// never sees half a trace.
  /// - Throws: `BigsliceError.traceFile` when the file cannot be written.
  public func write(to path: String) throws {
    let temporary = path + ".tmp"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw traceError(temporary) }
    let written = (try? FileDescriptor(rawValue: fd).writeAll(json.utf8)) != nil
    guard written, close(fd) == 0 else {
      let error = traceError(temporary)
      unlink(temporary)
      throw error
    }
    guard rename(temporary, path) == 0 else { throw traceError(path) }
  }

  private func traceError(_ path: String) -> BigsliceError {
    BigsliceError.traceFile(path: path, reason: "cannot write it: \(String(cString: strerror(errno)))")
  }
}

/// `text` as a JSON string literal.
func jsonString(_ text: String) -> String {
  var out = "\""
  for scalar in text.unicodeScalars {
    switch scalar {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\r": out += "\\r"
    case "\t": out += "\\t"
    case _ where scalar.value < 0x20:
      let hex = String(scalar.value, radix: 16)
      out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    default: out.unicodeScalars.append(scalar)
    }
  }
  return out + "\""
}
