import Frame
import SliceIO

/// Takes one task's output as it is produced, frame by frame, each frame put in partition
/// order as it comes (one counting sort), so the output is a few large frames however many
/// partitions it has.
///
/// Frames stay in memory while the store's budget can be charged for them. The first frame
/// that does not fit turns the sink to disk: from then on frames gather in a run buffer of at
/// most the store's `runBytes`, and each full buffer goes to a run file, its partitions as sections in
/// order. At the end the runs are merged, section by section and without decoding, into one
/// `ShuffleFile`: a task makes one output file whatever its partition count. A result's
/// output is no exception: under a limit it spills like any other, so the limit bounds the
/// process however large the result.
final class OutputSink {
  private let store: OutputStore
  private let schema: Schema
  private let partitions: Int
  /// Frames in partition order, with where each partition starts: held in memory (charged
  /// to the budget), or gathering for the next run once on disk (not charged).
  private var chunks: [(frame: Frame, index: PartitionIndex?)] = []
  private var chunkBytes = 0
  private var onDisk = false
  private var runs: [ShuffleFile] = []
  /// One encoder for every file of the task.
  private lazy var encoder = FrameEncoder(options: store.codec)

  /// Outputs of one operation share files (`ShuffleFileWriter`'s `group`).
  private let group: String

  init(store: OutputStore, schema: Schema, partitions: Int, group: String) {
    self.store = store
    self.schema = schema
    self.partitions = partitions
    self.group = group
  }

  /// Budget charged for frames held in memory, given back if the sink goes unfinished.
  deinit { if !onDisk { store.budget.release(chunkBytes) } }

  /// Adds the rows of `frame`, row `i` to partition `ids[i]` (nil: all to partition 0).
  /// - Throws: `FrameError.invalidArgument` for an id not below the partition count;
  ///   `SliceIOError.io` when a file cannot be written.
  func write(_ frame: Frame, ids: UnsafeBufferPointer<UInt32>?) throws {
    guard frame.count > 0 else { return }
    let started = ContinuousClock.now
    defer { TaskContext.current?.io.wrote(frame, since: started) }
    let chunk: (frame: Frame, index: PartitionIndex?)
    if let ids, partitions > 1 {
      chunk = try Grouping.withOrder(groupIDs: ids, groups: partitions) { permutation, starts in
        (frame.gather(permutation, lasting: !onDisk), PartitionIndex(starts: starts))
      }
    } else {
      chunk = (frame, nil)
    }
    let bytes = chunk.frame.byteCount
    if !onDisk {
      if !store.budget.charge(bytes) {
        // Everything held so far becomes the first run's; its memory goes back.
        onDisk = true
        store.budget.release(chunkBytes)
      }
    }
    chunks.append(chunk)
    chunkBytes += bytes
    if onDisk && chunkBytes >= store.runBytes { runs.append(try writeRun(asRun: true)) }
  }

  /// The output.
  func finish() throws -> TaskOutput {
    let rows = chunks.reduce(0) { $0 + $1.frame.count }
    guard onDisk else {
      let held = HeldFrames(chunks, bytes: chunkBytes, budget: store.budget)
      let bytes = chunkBytes
      chunks = []
      chunkBytes = 0
      return TaskOutput(.memory(held), partitions: partitions, rows: rows, bytes: bytes)
    }
    let file: ShuffleFile
    if runs.isEmpty {
      file = try writeRun(asRun: false)
    } else if runs.count == 1 && chunks.isEmpty {
      // The rows filled exactly one run: it is the output, with nothing to merge.
      file = runs[0]
      file.endRun()
      runs = []
    } else {
      if !chunks.isEmpty { runs.append(try writeRun(asRun: true)) }
      let writer = try ShuffleFileWriter(
        directory: try store.spillDirectory(), schema: schema, partitions: partitions, prefix: "output",
        group: "output " + group, encoder: encoder, packBytes: store.packBytes(partitions: partitions))
      for p in 0..<partitions {
        for run in runs { try writer.copy(p, of: run) }
      }
      file = try writer.finish()
      // A machine writes every output to its store: only runs are spills there.
      if !store.outputsOnDisk { store.spilled(bytes: file.bytes) }
      runs = []
    }
    return TaskOutput(.file(file), partitions: partitions, rows: file.rows, bytes: file.bytes)
  }

  /// The rows of several chunks are merged into frames of about this size before they are
  /// written, partition by partition.
  static let mergeBytes = 1 << 20

  /// Writes the chunks gathered so far to a new file, partition by partition, and forgets them.
  private func writeRun(asRun: Bool) throws -> ShuffleFile {
    let writer = try ShuffleFileWriter(
      directory: try store.spillDirectory(), schema: schema, partitions: partitions,
      prefix: asRun ? "run" : "output", group: (asRun ? "run " : "output ") + group, encoder: encoder,
      packBytes: store.packBytes(partitions: partitions))
    if partitions == 1 {
      for chunk in chunks { try writer.write(chunk.frame, to: 0) }
    } else if chunks.count == 1 {
      let (frame, index) = chunks[0]
      for p in 0..<partitions {
        let range = index!.range(p)
        if !range.isEmpty { try writer.write(frame.slice(range), to: p) }
      }
    } else {
      // The chunks' rows in partition order, copied into frames of about `mergeBytes` that
      // each partition is a slice of (a concat per partition made thousands of small frames).
      let rowBytes = max(chunkBytes / max(chunks.reduce(0) { $0 + $1.frame.count }, 1), 1)
      var pieces: [(frame: Frame, rows: Range<Int>)] = []
      var ends: [(partition: Int, end: Int)] = []
      var rows = 0
      func flush() throws {
        guard !pieces.isEmpty else { return }
        let merged = try Frame.concat(ranges: pieces)
        var start = 0
        for (p, end) in ends where end > start {
          try writer.write(merged.slice(start..<end), to: p)
          start = end
        }
        pieces.removeAll(keepingCapacity: true)
        ends.removeAll(keepingCapacity: true)
        rows = 0
      }
      for p in 0..<partitions {
        for chunk in chunks {
          let range = chunk.index!.range(p)
          if !range.isEmpty {
            pieces.append((chunk.frame, range))
            rows += range.count
          }
        }
        ends.append((p, rows))
        if rows * rowBytes >= OutputSink.mergeBytes { try flush() }
      }
      try flush()
    }
    chunks = []
    chunkBytes = 0
    let file = try writer.finish(asRun: asRun)
    if asRun || !store.outputsOnDisk { store.spilled(bytes: file.bytes) }
    return file
  }
}
