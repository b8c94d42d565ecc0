import Frame

/// A duration in seconds.
func seconds(_ d: Duration) -> Double {
  Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// What a running task reads and writes, counted by its readers and its output sink. A task
/// runs on one thread, so the meter needs no lock; the executor reads it after the task.
final class TaskIOMeter: @unchecked Sendable {
  var io = TaskIO()
  /// What the task spilled.
  var spills = SpillCounts()
  /// The rows written, for the status while the task runs.
  let progress = TaskProgress()

  /// Counts a frame read (nil at the end) by a read that started at `start`.
  func read(_ frame: Frame?, since start: ContinuousClock.Instant) {
    let now = ContinuousClock.now
    if io.firstRead == nil { io.firstRead = start }
    io.readTime += now - start
    guard let frame else { return }
    io.readRows += frame.count
    io.readBytes += frame.byteCount
  }

  /// Counts `rows` of about `bytes` taken from an output held in memory (no time spent).
  func read(rows: Int, bytes: Int) {
    if io.firstRead == nil { io.firstRead = .now }
    io.readRows += rows
    io.readBytes += bytes
  }

  /// Counts `frame` written to the task's output by a write that started at `start`.
  func wrote(_ frame: Frame, since start: ContinuousClock.Instant) {
    io.writeTime += ContinuousClock.now - start
    io.writeRows += frame.count
    progress.wrote(rows: frame.count)
    io.writeBytes += frame.byteCount
  }
}
