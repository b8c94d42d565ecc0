import Frame
import SliceIO

extension Slice {
  /// The same rows in global key order: shard 0 holds the smallest keys, every key of shard
  /// `i` is at most every key of shard `i + 1`, and each shard is sorted by key (the prefix
  /// columns, in `Column.compare` order; equal keys in no particular order).
  ///
  /// How: each upstream task keeps its output and a sample of its keys; once every upstream
  /// task is done, the samples give `shards - 1` splitters, each upstream output is cut into
  /// key ranges, and each shard sorts its range (radix sort in memory, external merge sort
  /// beyond the memory limit).
  public func sorted(shards: Int? = nil, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    let n = shards ?? self.shards
    let schema = self.schema
    let node = SliceNode(
      op: "sorted", location: location(file, line), schema: schema, shards: max(n, 1),
      deps: [Dependency(node: node, shuffle: true, partitioner: .sampled(RangePartitioning()))],
      problem: n < 1 ? .invalidArgument("sorted needs at least 1 shard, got \(n)") : nil
    ) { _, deps, context in
      try context.sort(deps[0], schema: schema)
    }
    return Slice(node)
  }
}

/// Cuts a shuffle by key range: each upstream output gives an evenly spaced sample of its keys,
/// and the samples together give `shards - 1` splitters; range `i` holds the keys above
/// splitter `i - 1` and at most splitter `i`.
struct RangePartitioning: SampledPartitioning {
  /// Keys sampled per upstream task: enough that every range's bounds are close to even.
  func sampleSize(shards: Int) -> Int { 64 * shards + 256 }

  func partition(samples: [Frame], shards: Int) throws -> any RowPartitioner {
    guard let first = samples.first else { throw BigsliceError.invalidArgument("no key samples for sorted()") }
    let all = try samples.count == 1 ? first : Frame.concat(samples)
    let ordered = try all.sorted(.keys)
    let picks = (1..<shards).map { UInt32(min($0 * ordered.count / shards, ordered.count - 1)) }
    return Splitters(keys: ordered.gather(picks))
  }

  /// `shards - 1` key rows, sorted: a row goes to the first range whose splitter is at least
  /// its key.
  struct Splitters: RowPartitioner, @unchecked Sendable {
    let keys: Frame
    func partitionIDs(_ frame: Frame) throws -> [UInt32] { try frame.rangePartitionIDs(splitters: keys) }
  }

  /// An evenly spaced sample of the key columns of a stored output (at most `sampleSize`
  /// rows), read frame by frame.
  func sample(_ stored: TaskOutput, schema: Schema, shards: Int) throws -> Frame {
    let size = sampleSize(shards: shards)
    let total = stored.rows
    let keys = Schema(Array(schema.types.prefix(max(schema.prefix, 1))), prefix: max(schema.prefix, 1))
    guard total > 0 else { return try Frame.empty(keys) }
    let step = max(1, total / size)
    var picked: [Frame] = []
    var base = 0
    let reader = stored.reader(0) ?? FrameReader([])
    while let frame = try reader.read() {
      // Rows at global positions step/2, step/2 + step, …
      let first = ((base + step - step / 2 - 1) / step) * step + step / 2 - base
      let rows = stride(from: max(first, 0), to: frame.count, by: step).map { UInt32($0) }
      if !rows.isEmpty {
        let picks = frame.gather(rows)
        picked.append(try Frame(Array(picks.columns.prefix(keys.count)), prefix: keys.prefix))
      }
      base += frame.count
    }
    return picked.isEmpty ? try Frame.empty(keys) : try Frame.concat(picked)
  }
}

extension TaskContext {
  /// Every row of `input` sorted by key: in memory without a memory limit, else by an
  /// external sort whose buffer is one operator's share of the limit.
  func sort(_ input: any Reader, schema: Schema) throws -> any Reader {
    guard let store, store.isLimited else {
      var frames: [Frame] = []
      while let frame = try input.read() {
        if frame.count > 0 { frames.append(frame) }
      }
      let sorted = try Frame.sorted(frames, schema: schema)
      frames = []
      return FrameReader(sorted)
    }
    let sorter = ExternalSorter(
      schema: schema, order: .keys, budget: store.workingLimit, directory: try store.spillDirectory())
    while let frame = try input.read() { try sorter.add(frame) }
    let reader = try sorter.finish()
    store.spilled(SpillCounts(bytes: sorter.spilledBytes, runs: sorter.spilledRuns))
    return reader
  }
}
