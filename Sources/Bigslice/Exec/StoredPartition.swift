import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

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
  /// In the store of the machine that computed it.
  case remote(RemotePartition)

  /// A reader of the partition's frames.
  func reader() throws -> any Reader {
    switch self {
    case .memory(let held): return FrameReader(held.frames)
    case .spilled(let file): return try file.reader()
    case .remote(let remote): return remote.reader()
    }
  }

  /// False when the partition's spill file is no longer on disk, or the machine holding it
  /// stopped.
  var isAvailable: Bool {
    switch self {
    case .memory: return true
    case .spilled(let file): return access(file.path, F_OK) == 0
    case .remote(let remote): return remote.output.worker.isAlive
    }
  }

  /// The number of rows.
  var rows: Int {
    switch self {
    case .memory(let held): return held.frames.reduce(0) { $0 + $1.count }
    case .spilled(let file): return file.rows
    case .remote(let remote): return remote.rows
    }
  }

  /// The frames held in memory; empty for a spilled partition.
  var frames: [Frame] {
    if case .memory(let held) = self { return held.frames }
    return []
  }
}
