import Bigmachine
import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// Shows a job's status on stderr while it runs, from a thread of its own.
///
/// On a terminal, a line per operation (a progress bar, the tasks waiting, running, done,
/// lost and failed, rows and rows/s) is redrawn in place a few times a second. On a pipe or a
/// file (CI logs), one plain line with every operation is printed every `interval` (default
/// 5 s) and once at the end.
final class StatusDisplay: @unchecked Sendable {
  private let job: JobStatus
  private let terminal: Bool
  private let interval: Duration
  private let output: @Sendable (String) -> Void
  private let stop = DispatchSemaphore(value: 0)
  private let stopped = DispatchSemaphore(value: 0)
  /// Lines drawn last on the terminal, to move back over. Touched by the drawing thread, and
  /// by `finish` only once that thread has stopped.
  private var drawn = 0

  /// A display of `job`; `terminal` (default: whether stderr is one) chooses redrawing in
  /// place, `output` takes the text (default: written to stderr).
  init(
    job: JobStatus, terminal: Bool = isatty(2) != 0, interval: Duration? = nil,
    output: @escaping @Sendable (String) -> Void = writeStandardError
  ) {
    self.job = job
    self.terminal = terminal
    self.interval = interval ?? (terminal ? .milliseconds(250) : .seconds(5))
    self.output = output
  }

  /// Starts drawing every `interval`.
  func start() {
    let nanoseconds = Int(seconds(interval) * 1e9)
    let caller = pthread_self()
    ThreadPool.detach {
      // With no thread to be had, the body runs here, in the caller: draw only at the end.
      if pthread_equal(pthread_self(), caller) != 0 {
        self.stopped.signal()
        return
      }
      while self.stop.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .timedOut { self.draw() }
      self.stopped.signal()
    }
  }

  /// Stops the drawing thread and draws the final status.
  func finish() {
    stop.signal()
    stopped.wait()
    draw()
  }

  private func draw() {
    if terminal {
      let lines = StatusDisplay.lines(job, width: terminalWidth())
      let back = drawn > 0 ? "\u{1B}[\(drawn)F\u{1B}[J" : ""
      drawn = lines.count
      output(back + lines.joined(separator: "\n") + "\n")
    } else {
      output(StatusDisplay.line(job) + "\n")
    }
  }

  /// The terminal's status: a heading line, then a line per operation, each cut to `width`
  /// (rows and rows/s come before the counts of running, waiting, lost and failed tasks, so a
  /// narrow terminal loses those first). `lost` counts the times an output was lost.
  static func lines(_ job: JobStatus, width: Int = 120, now: ContinuousClock.Instant = .now) -> [String] {
    let ops = job.operations(now: now)
    let done = ops.reduce(0) { $0 + $1.done }
    let tasks = ops.reduce(0) { $0 + $1.tasks }
    var heading = "\(job.name): \(done)/\(tasks) tasks done, \(format(seconds: job.elapsed(now: now)))"
    if let error = job.error { heading += ", failed: \(error)" }
    let nameWidth = min(ops.map(\.name.count).max() ?? 0, 48)
    var lines = [heading]
    for op in ops {
      let name = op.name.count > nameWidth ? "…" + op.name.suffix(nameWidth - 1) : op.name
      let padded = name + String(repeating: " ", count: nameWidth - name.count)
      lines.append(
        "  \(padded) \(bar(op)) \(op.done)/\(op.tasks) \(format(count: op.rows)) rows "
          + "\(format(count: Int(op.rowsPerSecond)))/s, \(op.running) running, \(op.waiting) waiting, "
          + "\(op.losses) lost, \(op.failed) failed")
    }
    return lines.map { $0.count > width ? String($0.prefix(max(width - 1, 1))) + "…" : $0 }
  }

  /// The plain status line: the job, then each operation's counts.
  static func line(_ job: JobStatus, now: ContinuousClock.Instant = .now) -> String {
    var text = "status \(job.name) \(format(seconds: job.elapsed(now: now)))"
    if let error = job.error { text += " failed: \(error)" }
    let ops = job.operations(now: now)
    return text + ": " + ops.map { "\($0.name) \(counts($0))" }.joined(separator: "; ")
  }

  /// `done/tasks done, N running, N waiting, N lost, N failed, rows, rows/s`.
  static func counts(_ op: OperationStatus) -> String {
    "\(op.done)/\(op.tasks) done, \(op.running) running, \(op.waiting) waiting, \(op.losses) lost, \(op.failed) failed, "
      + "\(format(count: op.rows)) rows, \(format(count: Int(op.rowsPerSecond))) rows/s"
  }

  /// `[#####.....]`, filled by the fraction of tasks done.
  static func bar(_ op: OperationStatus, width: Int = 20) -> String {
    let filled = op.tasks == 0 ? 0 : op.done * width / op.tasks
    return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
  }

  /// 1234 → "1234", 12345 → "12.3K", 1234567 → "1.2M".
  static func format(count n: Int) -> String {
    let units: [(Double, String)] = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "K")]
    for (scale, unit) in units where Double(n) >= scale {
      let divided = scale == 1e4 ? 1e3 : scale
      return tenths(Double(n) / divided) + unit
    }
    return "\(n)"
  }

  /// Seconds to one decimal: "3.2 s".
  static func format(seconds s: Double) -> String { tenths(s) + " s" }

  private static func tenths(_ x: Double) -> String {
    let t = Int((x * 10).rounded())
    return "\(t / 10).\(t % 10)"
  }

  private func terminalWidth() -> Int {
    var size = winsize()
    guard ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 120 }
    return Int(size.ws_col)
  }
}

/// Writes `text` to stderr in one call.
@Sendable func writeStandardError(_ text: String) {
  var text = text
  text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
