import Frame

/// Sorts a stream of any size under a memory budget.
///
/// Frames are buffered until they hold half the budget (the sort itself needs a second copy
/// while it gathers), then concatenated, sorted (radix, see `Frame.sortPermutation`) and
/// spilled as a run. `finish` merges the runs, and the last, unspilled run from memory, with a
/// `MergeReader`. More than `maxFanIn` runs are first merged in groups, so the number of
/// files open at once stays bounded.
public final class ExternalSorter {
  public let schema: Schema
  public let order: SortOrder
  /// The memory the sorter may use for buffered rows, in bytes.
  public let budget: Int
  public let maxFanIn: Int
  private let directory: SpillDirectory
  private let options: CodecOptions
  private var buffered: [Frame] = []
  private var bufferedBytes = 0
  private var runs: [SpillFile] = []
  private let buffers = SortBuffers()

  /// Sorted runs spilled to disk so far.
  public var spilledRuns: Int { runs.count }
  /// Bytes written to spill files so far.
  public private(set) var spilledBytes = 0

  public init(
    schema: Schema, order: SortOrder, budget: Int, directory: SpillDirectory,
    options: CodecOptions = .default, maxFanIn: Int = 64
  ) {
    self.schema = schema
    self.order = order
    self.budget = max(budget, 1)
    self.directory = directory
    self.options = options
    self.maxFanIn = max(2, maxFanIn)
  }

  /// Adds the rows of `frame`.
  /// - Throws: `SliceIOError.schemaMismatch`, `SliceIOError.io` (a full spill disk).
  public func add(_ frame: Frame) throws {
    guard frame.schema.types == schema.types else {
      throw SliceIOError.schemaMismatch(
        source: "external sort", block: 0, expected: schema.description, found: frame.schema.description)
    }
    guard frame.count > 0 else { return }
    buffered.append(frame)
    bufferedBytes += frame.byteCount
    if bufferedBytes * 2 > budget { try spill() }
  }

  /// Every row added, in order. The sorter must not be used after this.
  public func finish() throws -> any Reader {
    let memory = try sortBuffered()
    if runs.isEmpty { return FrameReader(memory.map { [$0] } ?? []) }
    // Merge consecutive groups of runs, level by level, keeping their order (stability).
    while runs.count + (memory == nil ? 0 : 1) > maxFanIn {
      var level: [SpillFile] = []
      for start in stride(from: 0, to: runs.count, by: maxFanIn) {
        let group = Array(runs[start..<min(start + maxFanIn, runs.count)])
        level.append(group.count == 1 ? group[0] : try merge(group))
      }
      runs = level
    }
    var sources: [any Reader] = try runs.map { try $0.reader() }
    if let memory { sources.append(FrameReader(memory)) }
    runs = []
    return MergeReader(sources, order: order)
  }

  private func merge(_ group: [SpillFile]) throws -> SpillFile {
    let writer = try SpillWriter(directory: directory, schema: schema, options: options, prefix: "run")
    let merged = MergeReader(try group.map { try $0.reader() }, order: order)
    while let frame = try merged.read() { try writer.write(frame) }
    let run = try writer.finish()
    spilledBytes += run.bytes
    return run
  }

  private func spill() throws {
    guard let sorted = try sortBuffered() else { return }
    let writer = try SpillWriter(directory: directory, schema: schema, options: options, prefix: "run")
    try writer.write(sorted)
    let run = try writer.finish()
    spilledBytes += run.bytes
    runs.append(run)
  }

  private func sortBuffered() throws -> Frame? {
    guard !buffered.isEmpty else { return nil }
    defer {
      buffered = []
      bufferedBytes = 0
    }
    do {
      if order == .keys {
        let frames = buffered
        buffered = []
        return try Frame.sorted(frames, schema: schema, buffers: buffers)
      }
      let all = try Frame.concat(buffered)
      buffered = []
      return try all.sorted(order, buffers: buffers)
    } catch let error as FrameError {
      throw SliceIOError.frame(error)
    }
  }
}
