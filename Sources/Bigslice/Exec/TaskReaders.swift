import Frame
import SliceIO

/// Passes frames through, wrapping an error from a user closure or the data in
/// `BigsliceError.taskFailed` with the operation that raised it (the innermost one).
final class NamedReader: Reader {
  private let input: any Reader
  private let op: String
  private let shard: Int

  init(_ input: any Reader, op: String, shard: Int) {
    self.input = input
    self.op = op
    self.shard = shard
  }

  func read() throws -> Frame? {
    do {
      return try input.read()
    } catch let error as BigsliceError {
      throw error
    } catch let error as LostInput {
      throw error
    } catch {
      throw BigsliceError.taskFailed(op: op, shard: shard, cause: error)
    }
  }
}

/// A task's input that could not be read: the upstream output is gone (released, or its
/// spill file vanished) or damaged. Not fatal: the upstream tasks are computed again.
struct LostInput: Error, @unchecked Sendable {
  /// The task that was reading.
  let task: ShardTask
  /// The tasks whose output was lost.
  let upstream: [ShardTask]
  let cause: Error
}

/// Reads one partition of an upstream task's output, opening it on the first read. Any
/// failure to open or read it means the input is lost (`LostInput`).
final class DependencyReader: Reader {
  private let task: ShardTask
  private let upstream: ShardTask
  private let partition: Int
  private let open: (ShardTask, Int) throws -> any Reader
  private var input: (any Reader)?

  init(
    _ task: ShardTask, reading upstream: ShardTask, partition: Int,
    open: @escaping (ShardTask, Int) throws -> any Reader
  ) {
    self.task = task
    self.upstream = upstream
    self.partition = partition
    self.open = open
  }

  /// Opens the output `upstream` holds.
  static func openHeld(_ upstream: ShardTask, _ partition: Int) throws -> any Reader {
    guard let output = upstream.output else {
      throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
    }
    return try output[partition].reader()
  }

  func read() throws -> Frame? {
    let started = ContinuousClock.now
    let frame = try readInput()
    TaskContext.current?.io.read(frame, since: started)
    return frame
  }

  private func readInput() throws -> Frame? {
    do {
      if input == nil { input = try open(upstream, partition) }
      return try input!.read()
    } catch let error as LostInput {
      throw error
    } catch {
      throw LostInput(task: task, upstream: [upstream], cause: error)
    }
  }
}
