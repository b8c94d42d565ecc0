import Frame
import SliceIO

/// Frames held in memory, charged to a budget until they go.
final class HeldFrames: @unchecked Sendable {
  /// The frames, each with where its partitions are (nil: the frame is all partition 0).
  let chunks: [(frame: Frame, index: PartitionIndex?)]
  let bytes: Int
  private let budget: MemoryBudget?

  /// Chunks whose `bytes` were charged to `budget` (nil: not charged).
  init(_ chunks: [(frame: Frame, index: PartitionIndex?)], bytes: Int, budget: MemoryBudget?) {
    self.chunks = chunks
    self.bytes = bytes
    self.budget = budget
  }

  /// Frames of one partition each, charged to `budget`.
  convenience init(_ frames: [Frame], bytes: Int, budget: MemoryBudget?) {
    self.init(frames.map { ($0, nil) }, bytes: bytes, budget: budget)
  }

  deinit { budget?.release(bytes) }

  /// The rows of partition `p`: zero-copy slices of the chunks.
  func frames(_ p: Int) -> [Frame] {
    var out: [Frame] = []
    for chunk in chunks {
      guard let index = chunk.index else {
        if p == 0 { out.append(chunk.frame) }
        continue
      }
      let range = index.range(p)
      if !range.isEmpty { out.append(range.count == chunk.frame.count ? chunk.frame : chunk.frame.slice(range)) }
    }
    return out
  }
}

/// Where each partition's rows are in a frame whose rows are in partition order: dense (one
/// start per partition) when most partitions have rows, else only the partitions that do,
/// so a small frame cut many ways costs its rows, not the partition count.
struct PartitionIndex: Sendable {
  /// Dense: partition `p` is `starts[p] ..< starts[p + 1]`. Sparse: `ids` are the non-empty
  /// partitions in order, and `ids[i]` is `starts[i] ..< starts[i + 1]`.
  private let starts: [UInt32]
  private let ids: [UInt32]?

  /// From the `partitions + 1` starts of a counting sort.
  init(starts all: [UInt64]) {
    let partitions = all.count - 1
    var nonEmpty = 0
    for p in 0..<partitions where all[p + 1] > all[p] { nonEmpty += 1 }
    if nonEmpty * 2 >= partitions {
      starts = all.map { UInt32($0) }
      ids = nil
      return
    }
    var ids: [UInt32] = []
    var starts: [UInt32] = []
    ids.reserveCapacity(nonEmpty)
    starts.reserveCapacity(nonEmpty + 1)
    for p in 0..<partitions where all[p + 1] > all[p] {
      ids.append(UInt32(p))
      starts.append(UInt32(all[p]))
    }
    starts.append(UInt32(all[partitions]))
    self.ids = ids
    self.starts = starts
  }

  /// The rows of partition `p`.
  func range(_ p: Int) -> Range<Int> {
    guard let ids else { return Int(starts[p])..<Int(starts[p + 1]) }
    var lo = 0
    var hi = ids.count
    while lo < hi {
      let mid = (lo + hi) >> 1
      if Int(ids[mid]) < p { lo = mid + 1 } else { hi = mid }
    }
    guard lo < ids.count, Int(ids[lo]) == p else { return 0..<0 }
    return Int(starts[lo])..<Int(starts[lo + 1])
  }
}

/// A task's output, cut into the partitions of the shuffle that reads it (one partition when
/// nothing shuffles): frames in memory (charged to the budget), one shuffle file with a
/// section per partition, or a file in the store of the machine that computed it.
///
/// Whether it is there is known without asking the disk: a file that vanished is found when it
/// is read, as a lost input.
final class TaskOutput: @unchecked Sendable {
  enum Storage {
    case memory(HeldFrames)
    case file(ShuffleFile)
    case remote(RemoteOutput)
  }

  let storage: Storage
  let partitions: Int
  /// Rows and bytes of the whole output.
  let rows: Int
  let bytes: Int

  init(_ storage: Storage, partitions: Int, rows: Int, bytes: Int) {
    self.storage = storage
    self.partitions = partitions
    self.rows = rows
    self.bytes = bytes
  }

  /// A reader of partition `p`'s frames; nil when it certainly holds no rows (so a reader
  /// need not open it).
  func reader(_ p: Int) -> (any Reader)? {
    switch storage {
    case .memory(let held):
      let frames = held.frames(p)
      return frames.isEmpty ? nil : FrameReader(frames)
    case .file(let file): return file.range(p).isEmpty ? nil : file.reader(p)
    case .remote(let remote): return remote.reader(p)
    }
  }

  /// The bytes of each partition (0: no rows).
  var partitionBytes: [Int] {
    switch storage {
    case .memory(let held): return (0..<partitions).map { held.frames($0).reduce(0) { $0 + $1.byteCount } }
    case .file(let file): return (0..<partitions).map { file.range($0).count }
    case .remote(let remote): return remote.partitionBytes
    }
  }

  /// False when the machine holding the output stopped.
  var isAvailable: Bool {
    if case .remote(let remote) = storage { return remote.worker.isAlive }
    return true
  }

  /// The frames of partition `p` held in memory; empty for an output on disk.
  func frames(_ p: Int) -> [Frame] {
    if case .memory(let held) = storage { return held.frames(p) }
    return []
  }
}
