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

  /// Charges `bytes` whether or not they fit: memory the user asked to hold (a result), which
  /// leaves that much less for everything else.
  func forceCharge(_ bytes: Int) { used.withLock { $0 += bytes } }

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

/// Where a session's executor keeps task outputs: in memory while the budget allows, else in
/// spill files under a private directory that is removed with the store.
final class OutputStore: @unchecked Sendable {
  /// What task outputs held in memory may take: the memory limit less every task's working
  /// share.
  let budget: MemoryBudget
  private let parent: String?
  private let directory = Mutex<SpillDirectory?>(nil)
  /// Bytes written to spill files so far.
  let spilledBytes = Mutex(0)
  /// Spills of reduce-side combiners (into buckets) and sorts (sorted runs) so far.
  let spilledRuns = Mutex(0)
  /// Map-side combiners given up because they barely reduced their rows.
  let combinerBypasses = Mutex(0)

  /// Whether task outputs are always written to files (a worker's store, which peers read).
  let outputsOnDisk: Bool
  /// How task output files are compressed.
  let codec: CodecOptions

  /// Bytes one running task may hold for its own work (a combiner's table, a sort buffer)
  /// before it spills: half the memory limit split between the `procs` tasks that run at
  /// once, and at least 256 KiB (a combiner starts at about 56 KiB and needs room to grow). The other half holds task outputs.
  let workingLimit: Int

  /// A store under `memoryLimit` for `procs` tasks at once. With `outputsOnDisk`, every
  /// non-empty output partition goes to a file of its own under a directory named
  /// `prefix-XXXXXX` (a machine's store), compressed as `codec` says; else outputs stay in
  /// memory while the budget allows.
  init(
    memoryLimit: Int?, spillParent: String?, procs: Int, outputsOnDisk: Bool = false,
    codec: CodecOptions = .default, prefix: String = "bigslice-session"
  ) {
    parent = spillParent
    self.outputsOnDisk = outputsOnDisk
    self.codec = codec
    self.prefix = prefix
    guard let memoryLimit else {
      budget = MemoryBudget(limit: outputsOnDisk ? 0 : Int.max)
      workingLimit = Int.max
      return
    }
    workingLimit = max(memoryLimit / (2 * max(procs, 1)), 256 << 10)
    budget = MemoryBudget(limit: outputsOnDisk ? 0 : max(memoryLimit - workingLimit * max(procs, 1), 0))
  }

  private let prefix: String

  /// Removes the spill directory and everything in it (a machine's store at shutdown). Files
  /// still referenced are gone from disk; reading them fails as a lost input.
  func removeDirectory() {
    directory.withLock { $0 }?.remove()
  }

  /// Whether the session has a memory limit.
  var isLimited: Bool { workingLimit != Int.max }

  /// Counts bytes written to a spill file.
  func spilled(_ file: SpillFile) { spilledBytes.withLock { $0 += file.bytes } }

  func spillDirectory() throws -> SpillDirectory {
    try directory.withLock { dir in
      if let dir { return dir }
      let made = try SpillDirectory(parent: parent, prefix: prefix)
      dir = made
      return made
    }
  }

  /// The spill directory's path, once one was made.
  var spillPath: String? { directory.withLock { $0?.path } }
}

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
