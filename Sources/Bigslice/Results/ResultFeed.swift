import Bigmachine
import Dispatch
import Frame
import Logging
import Synchronization

/// A result's frames, in shard order, read ahead of the caller: the next `window` shards are
/// each read up to `FrameAhead.depth` frames ahead on a thread of their own. On machines,
/// frames are streamed from their machines, decompressed and decoded on those threads (two
/// shards at once) while the caller iterates. So at most a few frames per open shard wait, and
/// the result is never all in memory.
@usableFromInline
final class ResultFeed {
  private let tasks: [ShardTask]
  private let recompute: () throws -> Void
  private let logger: Logger
  /// The shards being read, in order, and the next shard to open.
  private var open: [OpenShard] = []
  private var nextShard = 0
  /// The frames handed out by the last two calls, with the shard that read them.
  private var previous: (Frame, OpenShard)?
  private var current: (Frame, OpenShard)?
  /// Shared by the open shards' readers (see `ShardFrames.outputs`).
  private let outputs = DispatchSemaphore(value: 1)
  static let window = 2

  /// A shard's frames and the thread reading them ahead, until it hands over the end or an
  /// error and stops; after that the feed reads the shard on its own thread.
  private final class OpenShard {
    let frames: ShardFrames
    let ahead: FrameAhead
    var finished = false
    init(_ frames: ShardFrames) {
      self.frames = frames
      ahead = FrameAhead(frames)
    }
    deinit { ahead.close() }

    func next() throws -> Frame? {
      if finished { return try frames.next() }
      let result = ahead.take()
      if case .success(.some) = result {} else { finished = true }
      return try result.get()
    }
  }

  init(tasks: [ShardTask], result recompute: @escaping () throws -> Void, logger: Logger) {
    self.tasks = tasks
    self.recompute = recompute
    self.logger = logger
  }

  /// The next frame (never empty), or nil at the end.
  /// - Throws: what computing a shard again throws, or a read error that persists.
  @usableFromInline
  func next() throws -> Frame? {
    // The caller has let go of the frame before the one it holds: its reader frees it.
    if let (frame, shard) = previous { shard.ahead.release(frame) }
    previous = current
    current = nil
    while true {
      while open.count < ResultFeed.window && nextShard < tasks.count {
        open.append(
          OpenShard(ShardFrames(task: tasks[nextShard], result: recompute, logger: logger, outputs: outputs)))
        nextShard += 1
      }
      guard let shard = open.first else { return nil }
      if let frame = try shard.next() {
        if !shard.finished { current = (frame, shard) }
        return frame
      }
      open.removeFirst()
    }
  }
}

/// The thread that reads a shard's frames ahead for a `ResultFeed`. It stops after handing
/// over the end or an error (so the feed may then read on its own thread), or when the feed
/// closes it.
private final class FrameAhead: @unchecked Sendable {
  private struct State {
    /// Frames read and not yet taken, oldest first (the end or an error comes last).
    var frames: [Result<Frame?, Error>] = []
    var closed = false
    /// Frames the caller is done with, freed by this thread before it reads the next.
    var spent: [Frame] = []
  }
  private let state = Mutex(State())
  private let ready = DispatchSemaphore(value: 0)
  /// Room for frames read ahead beyond the one being read.
  private let room = DispatchSemaphore(value: FrameAhead.depth - 1)
  /// Frames a shard's thread reads ahead of the caller: enough that the next shard's thread
  /// keeps decoding while the caller reads the current shard.
  static let depth = 4

  init(_ frames: ShardFrames) {
    ThreadPool.detach { [self] in
      while true {
        let result = Result { try frames.next() }
        state.withLock { $0.frames.append(result) }
        ready.signal()
        guard case .success(.some) = result else { return }
        room.wait()
        let (closed, spent) = state.withLock { s in
          defer { s.spent = [] }
          return (s.closed, s.spent)
        }
        withExtendedLifetime(spent) {}
        if closed { return }
      }
    }
  }

  /// Hands back a frame the caller is done with: the thread that decoded it frees it (its
  /// lists were allocated there), not the caller's thread, which would contend for the
  /// allocator's lock of another thread's arena for every list.
  func release(_ frame: Frame) { state.withLock { $0.spent.append(frame) } }

  /// The frame read ahead, once it is there; the thread starts on the next.
  func take() -> Result<Frame?, Error> {
    ready.wait()
    let result = state.withLock { $0.frames.removeFirst() }
    if case .success(.some) = result { room.signal() }
    return result
  }

  /// Stops the thread once its current read is done.
  func close() {
    state.withLock { $0.closed = true }
    room.signal()
  }
}
