import Dispatch
import Frame
import Logging
import SliceIO

/// Reads the frames of one shard of a result, computing it again when its output was
/// discarded or is lost while it is read. Tasks must be deterministic: the rows already read
/// are skipped, and checked against a running hash of what was handed out, so a shard that
/// comes back with other rows is an error, not duplicated or missing rows.
final class ShardFrames: @unchecked Sendable {
  private let task: ShardTask
  private let recompute: () throws -> Void
  private let logger: Logger
  /// Held while a feed's thread reads or clears a task's output and computes it again: the
  /// threads of one feed (one per open shard) then never touch outputs at the same time as
  /// each other, or as the evaluation that one of them started.
  private let outputs: DispatchSemaphore
  private var reader: (any Reader)?
  private var done = false
  /// Rows handed out, and rows to skip after reopening the shard.
  private var delivered = 0
  private var skip = 0
  /// Order-sensitive hashes of the rows handed out and of those skipped since reopening; nil
  /// when a column cannot be hashed, or the shard is held in memory (then only the count is
  /// checked).
  private var deliveredHash: UInt64? = 0
  private var skippedHash: UInt64? = 0
  private var failures = 0
  /// Times the shard may fail to read before the error is thrown.
  static let attempts = 5

  init(task: ShardTask, result recompute: @escaping () throws -> Void, logger: Logger, outputs: DispatchSemaphore) {
    self.task = task
    self.recompute = recompute
    self.logger = logger
    self.outputs = outputs
  }

  private func guarded<T>(_ body: () throws -> T) rethrows -> T {
    outputs.wait()
    defer { outputs.signal() }
    return try body()
  }

  /// The next frame (never empty), or nil at the end.
  /// - Throws: what computing the shard again throws, or a read error that persists.
  func next() throws -> Frame? {
    while !done {
      do {
        if reader == nil {
          let output = try guarded {
            if !task.isComputed { try recompute() }
            guard let output = task.output else {
              throw BigsliceError.outputMissing(op: task.op, shard: task.shard)
            }
            return output
          }
          reader = output.reader(0) ?? FrameReader([])
          skip = delivered
          skippedHash = 0
          // Frames held in this process cannot fail half-read: only a shard on disk or on a
          // machine is ever read again, so only those rows are hashed as they go out.
          if case .memory = output.storage, delivered == 0 { deliveredHash = nil }
        }
        guard var frame = try reader!.read() else {
          if skip > 0 { throw changed("\(delivered - skip) rows where \(delivered) were read before") }
          done = true
          reader = nil
          return nil
        }
        if skip > 0 {
          let skipped = min(frame.count, skip)
          ShardFrames.fold(frame.slice(0..<skipped), into: &skippedHash)
          skip -= skipped
          if skip == 0, let skippedHash, let deliveredHash, skippedHash != deliveredHash {
            throw changed("the first \(delivered) rows differ from those read before")
          }
          if skipped == frame.count { continue }
          frame = frame.slice(skipped..<frame.count)
        }
        guard frame.count > 0 else { continue }
        delivered += frame.count
        ShardFrames.fold(frame, into: &deliveredHash)
        return frame
      } catch let error as BigsliceError {
        // A failure to compute is final.
        throw error
      } catch {
        failures += 1
        reader = nil
        if failures >= ShardFrames.attempts { throw error }
        // The stored shard is damaged or its machine is gone: compute it again.
        logger.notice(
          "cannot read shard \(task.shard) of the result (\(error)); computing it again and skipping the \(delivered) rows read"
        )
        guarded { task.output = nil }
      }
    }
    return nil
  }

  private func changed(_ detail: String) -> BigsliceError {
    BigsliceError.nondeterministic(op: task.op, shard: task.shard, detail: detail)
  }

  /// Folds the hashes of `frame`'s rows, in order, into `hash`; makes it nil when a column
  /// cannot be hashed.
  private static func fold(_ frame: Frame, into hash: inout UInt64?) {
    guard var h = hash, frame.count > 0 else { return }
    let rows = UnsafeMutablePointer<UInt64>.allocate(capacity: frame.count)
    defer { rows.deallocate() }
    do {
      try Column.hashRows(frame.columns, count: frame.count, seed: 0x5eed, into: rows)
    } catch {
      hash = nil
      return
    }
    for i in 0..<frame.count { h = (h ^ rows[i]) &* 0x100_0000_01b3 }
    hash = h
  }
}
