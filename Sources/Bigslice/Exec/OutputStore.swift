import SliceIO
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Where a session's executor keeps task outputs: in memory while the budget allows, else in
/// spill files under a private directory that is removed with the store.
final class OutputStore: @unchecked Sendable {
  /// What task outputs held in memory may take: the memory limit less every task's working
  /// share.
  let budget: MemoryBudget
  private let parent: String?
  private let directory = Mutex<SpillDirectory?>(nil)
  /// What the session's tasks spilled so far, here and (on a driver) on its machines.
  let spills = Mutex(SpillCounts())

  /// Whether task outputs are always written to files (a worker's store, which peers read).
  let outputsOnDisk: Bool
  /// How task output files are compressed.
  let codec: CodecOptions

  /// Bytes one running task may hold for its own work (a combiner's table, a sort buffer)
  /// before it spills: half the memory limit split between the `procs` tasks that run at
  /// once, and at least 256 KiB (a combiner starts at about 56 KiB and needs room to grow). The other half holds task outputs.
  let workingLimit: Int
  /// Bytes of output a task gathers in memory before it writes them as a run, once its output
  /// goes to disk: a quarter of its working share, between 1 and 64 MiB.
  let runBytes: Int
  /// The most bytes a shuffle's section cache holds.
  let sectionCacheBytes: Int
  /// The most bytes of other machines' partitions a task on a machine fetches at once
  /// (`BatchedReads`): half its read buffers under a memory limit.
  let readBatchBytes: Int

  /// A store under `memoryLimit` for `procs` tasks at once. With `outputsOnDisk`, every
  /// task's output goes to a file of its own under a directory named
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
      runBytes = 64 << 20
      sectionCacheBytes = 64 << 20
      readBatchBytes = 8 << 20
      return
    }
    workingLimit = max(memoryLimit / (2 * max(procs, 1)), 256 << 10)
    runBytes = min(max(workingLimit / 4, 1 << 20), 64 << 20)
    sectionCacheBytes = min(OutputStore.sectionCacheShare * max(procs, 1), memoryLimit / 4)
    readBatchBytes = OutputStore.readBuffers / 2
    // Each running task also holds its output's run buffer and its input's read buffers, the
    // tasks reading a shuffle share a section cache, and the allocator keeps freed buffers for
    // reuse.
    let perTask = workingLimit + runBytes + OutputStore.readBuffers
    let reserved =
      perTask * max(procs, 1) + sectionCacheBytes + Allocator.held(toFit: memoryLimit, threads: max(procs, 1))
    budget = MemoryBudget(limit: outputsOnDisk ? 0 : max(memoryLimit - reserved, 0))
  }

  private let prefix: String

  /// Partitions whose rows take fewer bytes share packed sections in a task's output file of
  /// `partitions`: small enough that the section cache holds a few packed sections of every
  /// upstream file when a shuffle has about as many upstream tasks as partitions, at most
  /// 64 KiB. 0 (no packing) for one partition, or when the cache has no room for sections of
  /// `smallestPack` bytes: each task would decode its neighbours' rows with its own.
  func packBytes(partitions: Int) -> Int {
    let share = sectionCacheBytes / (OutputStore.packedSectionsKept * max(partitions, 1))
    return partitions < 2 || share < OutputStore.smallestPack ? 0 : min(share, 64 << 10)
  }

  /// The smallest packed section worth making (a section's framing takes about 100 bytes).
  static let smallestPack = 128

  /// The packed sections of each upstream file that `packBytes` leaves room for in the cache.
  static let packedSectionsKept = 2

  /// The read buffers a running task may hold: a streamed section's read-ahead and the
  /// thread's scratch for small sections.
  static let readBuffers = 2 << 20

  /// The bytes of upstream file sections that each running task adds to a shuffle's section
  /// cache (`SectionCache`), which takes at most a quarter of the memory limit.
  static let sectionCacheShare = 2 << 20

  /// Removes the spill directory and everything in it (a machine's store at shutdown). Files
  /// still referenced are gone from disk; reading them fails as a lost input.
  func removeDirectory() {
    directory.withLock { $0 }?.remove()
  }

  /// Whether the session has a memory limit.
  var isLimited: Bool { workingLimit != Int.max }

  /// Counts bytes written to a spill file.
  func spilled(_ file: SpillFile) { spilled(SpillCounts(bytes: file.bytes)) }

  /// Counts `bytes` written to spill or output files.
  func spilled(bytes: Int) { spilled(SpillCounts(bytes: bytes)) }

  /// Counts what a task spilled, into the session's figures and the running task's (a worker
  /// reports its tasks' spills to the driver with their results).
  func spilled(_ counts: SpillCounts) {
    spills.withLock { $0.add(counts) }
    TaskContext.current?.io.spills.add(counts)
  }

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

/// What tasks spilled: bytes written to spill and output files, spills of reduce-side
/// combiners (into buckets) and sorts (sorted runs), map-side combiners given up because
/// they barely reduced their rows, and cogroup buckets held whole over the task's share
/// because their rows share one key.
struct SpillCounts: Codable, Sendable, Equatable {
  var bytes = 0
  var runs = 0
  var bypasses = 0
  var heldOverLimit = 0

  mutating func add(_ other: SpillCounts) {
    bytes += other.bytes
    runs += other.runs
    bypasses += other.bypasses
    heldOverLimit += other.heldOverLimit
  }
}
