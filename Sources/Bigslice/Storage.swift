import Frame
import SliceIO
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The bytes of task output a session may hold in memory; beyond it, outputs spill to disk.
final class MemoryBudget: Sendable {
  /// The limit in bytes; `Int.max` for none.
  let limit: Int
  private let used = Mutex(0)

  init(limit: Int) { self.limit = limit }

  /// Charges `bytes` if they fit under the limit; false (and nothing charged) if not.
  func charge(_ bytes: Int) -> Bool {
    used.withLock {
      guard $0 <= limit - bytes else { return false }
      $0 += bytes
      return true
    }
  }

  func release(_ bytes: Int) { used.withLock { $0 -= bytes } }

  var charged: Int { used.withLock { $0 } }
}

/// Frames held in memory, charged to a budget until they go.
final class HeldFrames: @unchecked Sendable {
  let frames: [Frame]
  private let bytes: Int
  private let budget: MemoryBudget?

  /// Frames whose `bytes` were charged to `budget` (nil: not charged).
  init(_ frames: [Frame], bytes: Int, budget: MemoryBudget?) {
    self.frames = frames
    self.bytes = bytes
    self.budget = budget
  }

  deinit { budget?.release(bytes) }
}

/// One partition of a task's output: frames in memory (charged to the budget), or a spill
/// file (compressed, checksummed blocks).
enum StoredPartition: @unchecked Sendable {
  case memory(HeldFrames)
  case spilled(SpillFile)

  /// A reader of the partition's frames.
  func reader() throws -> any Reader {
    switch self {
    case .memory(let held): return FrameReader(held.frames)
    case .spilled(let file): return try file.reader()
    }
  }

  /// False when the partition's spill file is no longer on disk.
  var isAvailable: Bool {
    if case .spilled(let file) = self { return access(file.path, F_OK) == 0 }
    return true
  }

  /// The frames held in memory; empty for a spilled partition.
  var frames: [Frame] {
    if case .memory(let held) = self { return held.frames }
    return []
  }
}

/// Where a session's executor keeps task outputs: in memory while the budget allows, else in
/// spill files under a private directory that is removed with the store.
final class OutputStore: @unchecked Sendable {
  let budget: MemoryBudget
  private let parent: String?
  private let directory = Mutex<SpillDirectory?>(nil)
  /// Bytes written to spill files so far.
  let spilledBytes = Mutex(0)
  /// Sorted combiner runs spilled so far.
  let spilledRuns = Mutex(0)

  /// Bytes one task's combiner may hold before it spills a sorted run: an eighth of the
  /// memory limit (several tasks combine at once, and their outputs need room too), and at
  /// least 64 KiB.
  let combinerLimit: Int

  init(memoryLimit: Int?, spillParent: String?) {
    budget = MemoryBudget(limit: memoryLimit ?? Int.max)
    parent = spillParent
    combinerLimit = memoryLimit.map { max($0 / 8, 64 << 10) } ?? Int.max
  }

  /// Writes one sorted run of a combiner to a spill file.
  func spillRun(_ frame: Frame, schema: Schema) throws -> SpillFile {
    let writer = try SpillWriter(directory: try spillDirectory(), schema: schema, prefix: "run")
    try writer.write(frame)
    let file = try writer.finish()
    spilledBytes.withLock { $0 += file.bytes }
    spilledRuns.withLock { $0 += 1 }
    return file
  }

  /// Stores the partitions of one task's output: in memory when they fit the budget (or
  /// when `pinned`, for results the user reads), else each non-empty one in a spill file.
  func store(_ partitions: [[Frame]], schema: Schema, pinned: Bool) throws -> [StoredPartition] {
    let sizes = partitions.map { $0.reduce(0) { $0 + $1.byteCount } }
    if pinned {
      return partitions.map { .memory(HeldFrames($0, bytes: 0, budget: nil)) }
    }
    if budget.charge(sizes.reduce(0, +)) {
      // Each partition gives its bytes back to the budget when it goes.
      return zip(partitions, sizes).map { .memory(HeldFrames($0, bytes: $1, budget: budget)) }
    }
    let dir = try spillDirectory()
    return try partitions.map { frames in
      guard !frames.isEmpty else { return .memory(HeldFrames([], bytes: 0, budget: nil)) }
      let writer = try SpillWriter(directory: dir, schema: schema, prefix: "partition")
      for frame in frames { try writer.write(frame) }
      let file = try writer.finish()
      spilledBytes.withLock { $0 += file.bytes }
      return .spilled(file)
    }
  }

  func spillDirectory() throws -> SpillDirectory {
    try directory.withLock { dir in
      if let dir { return dir }
      let made = try SpillDirectory(parent: parent, prefix: "bigslice-session")
      dir = made
      return made
    }
  }

  /// The spill directory's path, once one was made.
  var spillPath: String? { directory.withLock { $0?.path } }
}
