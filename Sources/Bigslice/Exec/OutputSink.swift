import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// Takes one task's output as it is produced, frame by frame and partition by partition.
///
/// Frames stay in memory while the store's budget can be charged for them. The first frame
/// that does not fit turns the sink to disk: every partition held so far goes to its spill
/// file (giving its memory back) and the rest of the output follows it there, in blocks of
/// at least `blockBytes`. A pinned output (a result the user reads) is held whatever the
/// budget says, and charged to it so that other outputs spill sooner.
final class OutputSink {
  private let store: OutputStore
  private let schema: Schema
  private let pinned: Bool
  private var held: [[Frame]]
  private var heldBytes: [Int]
  private var writers: [SpillWriter?]
  /// Frames waiting to be written together as one block, per partition (on disk only).
  private var pending: [[Frame]]
  private var pendingBytes: [Int]
  private var onDisk = false
  /// One encoder for every partition file of the task.
  private lazy var encoder = FrameEncoder(options: store.codec)
  /// Frames smaller than this are gathered before they go to a spill file.
  static let blockBytes = 256 << 10

  init(store: OutputStore, schema: Schema, partitions: Int, pinned: Bool) {
    self.store = store
    self.schema = schema
    self.pinned = pinned
    held = Array(repeating: [], count: partitions)
    heldBytes = Array(repeating: 0, count: partitions)
    writers = Array(repeating: nil, count: partitions)
    pending = Array(repeating: [], count: partitions)
    pendingBytes = Array(repeating: 0, count: partitions)
  }

  /// Budget charged for frames held in memory, given back if the sink goes unfinished.
  deinit { store.budget.release(heldBytes.reduce(0, +)) }

  /// Adds `frame` to partition `p`.
  /// - Throws: `SliceIOError.io` when a spill file cannot be written.
  func write(_ frame: Frame, to p: Int) throws {
    guard frame.count > 0 else { return }
    let started = ContinuousClock.now
    defer { TaskContext.current?.io.wrote(frame, since: started) }
    let bytes = frame.byteCount
    if !onDisk {
      if pinned {
        store.budget.forceCharge(bytes)
      } else if !store.budget.charge(bytes) {
        try moveToDisk()
        return try append(frame, bytes: bytes, to: p)
      }
      held[p].append(frame)
      heldBytes[p] += bytes
      return
    }
    try append(frame, bytes: bytes, to: p)
  }

  /// The stored partitions.
  func finish() throws -> [StoredPartition] {
    var out: [StoredPartition] = []
    for p in held.indices {
      try flush(p)
      if let writer = writers[p] {
        let file = try writer.finish()
        store.spilled(file)
        out.append(.spilled(file))
      } else {
        // Each partition gives its bytes back to the budget when it goes.
        out.append(.memory(HeldFrames(held[p], bytes: heldBytes[p], budget: store.budget)))
        heldBytes[p] = 0
      }
    }
    writers = []
    return out
  }

  /// Writes every held partition to its spill file and releases its memory.
  private func moveToDisk() throws {
    onDisk = true
    for p in held.indices {
      let frames = held[p]
      held[p] = []
      for frame in frames { try append(frame, bytes: frame.byteCount, to: p) }
      store.budget.release(heldBytes[p])
      heldBytes[p] = 0
    }
  }

  private func append(_ frame: Frame, bytes: Int, to p: Int) throws {
    pending[p].append(frame)
    pendingBytes[p] += bytes
    if pendingBytes[p] >= OutputSink.blockBytes { try flush(p) }
  }

  private func flush(_ p: Int) throws {
    guard !pending[p].isEmpty else { return }
    if writers[p] == nil {
      writers[p] = try SpillWriter(
        directory: try store.spillDirectory(), schema: schema, prefix: "partition", encoder: encoder)
    }
    let frames = pending[p]
    pending[p] = []
    pendingBytes[p] = 0
    try writers[p]!.write(frames.count == 1 ? frames[0] : try Frame.concat(frames))
  }
}
