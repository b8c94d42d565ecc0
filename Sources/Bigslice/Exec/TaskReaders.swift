import CSupport
import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// Passes frames through, wrapping an error from a user closure or the data in
/// `BigsliceError.taskFailed` with the operation that raised it (the innermost one).
final class NamedReader: Reader {
  private let input: any Reader
  private let op: String
  private let shard: Int

  init(_ input: any Reader, op: String, shard: Int) {
    self.input = input
    self.op = op
    self.shard = shard
  }

  func read() throws -> Frame? {
    do {
      return try input.read()
    } catch let error as BigsliceError {
      throw error
    } catch let error as LostInput {
      throw error
    } catch {
      throw BigsliceError.taskFailed(op: op, shard: shard, cause: error)
    }
  }
}

/// A task's input that could not be read: the upstream output is gone (released, or its
/// spill file vanished) or damaged. Not fatal: the upstream tasks are computed again.
struct LostInput: Error, @unchecked Sendable {
  /// The task that was reading.
  let task: ShardTask
  /// The tasks whose output was lost.
  let upstream: [ShardTask]
  let cause: Error
}

/// Opens partition `p` of an upstream task's output; nil when the partition is known empty.
/// A worker opens its own store's files, or streams them from the peer holding them.
typealias PartitionOpener = (_ upstream: ShardTask, _ partition: Int) throws -> (any Reader)?

/// Opens the output `upstream` holds in this process.
/// - Throws: `BigsliceError.outputMissing` when it holds none (released, or never computed).
func openHeld(_ upstream: ShardTask, _ partition: Int) throws -> (any Reader)? {
  guard let output = upstream.output else {
    throw BigsliceError.outputMissing(op: upstream.op, shard: upstream.shard)
  }
  return output.reader(partition)
}

/// What reading `upstream`'s output for `task` failed with, as the task should throw it: a
/// lost input (the upstream task is computed again), unless the process ran out of something
/// (descriptors, disk, memory), which computing again would not fix.
func inputError(_ error: Error, task: ShardTask, upstream: ShardTask) -> Error {
  if error is LostInput { return error }
  if case .io(_, _, let code) = error as? SliceIOError, exhausted.contains(code) { return error }
  return LostInput(task: task, upstream: [upstream], cause: error)
}

/// The errnos of a process or disk out of room.
private let exhausted: Set<Int32> = [EMFILE, ENFILE, ENOSPC, EDQUOT, ENOMEM]

/// Reads one partition of an upstream task's output, opening it on the first read. Any
/// failure to open or read it means the input is lost (`LostInput`), unless the process is
/// out of descriptors, disk or memory.
final class DependencyReader: Reader {
  private let task: ShardTask
  private let upstream: ShardTask
  private let partition: Int
  private let open: PartitionOpener
  private var input: (any Reader)?
  private var done = false

  init(_ task: ShardTask, reading upstream: ShardTask, partition: Int, open: @escaping PartitionOpener) {
    self.task = task
    self.upstream = upstream
    self.partition = partition
    self.open = open
  }

  func read() throws -> Frame? {
    if done { return nil }
    let started = ContinuousClock.now
    do {
      if input == nil {
        guard let opened = try open(upstream, partition) else {
          done = true
          return nil
        }
        input = opened
      }
      let frame = try input!.read()
      TaskContext.current?.io.read(frame, since: started)
      if frame == nil {
        done = true
        input = nil
      }
      return frame
    } catch {
      throw inputError(error, task: task, upstream: upstream)
    }
  }
}

/// Reads partition `partition` of every upstream task of a shuffle, in upstream order, without
/// opening the partitions known empty. One upstream partition is open at a time, and it lets
/// go of its descriptor and buffers at its end, so a task holds a bounded number of
/// descriptors whatever the shard count. Small pieces (a many-way shuffle cuts each upstream
/// output into a few rows per partition) are gathered into frames of about
/// `Frame.defaultRows` rows, so what reads them pays per frame, not per piece.
final class ShuffleReader: Reader {
  private let task: ShardTask
  private let upstream: [ShardTask]
  private let partition: Int
  private let schema: Schema
  /// nil: the outputs held in this process, whose frames are taken without a reader.
  private let open: PartitionOpener?
  private var next = 0
  private var current: (any Reader)?
  private var currentTask: ShardTask?
  /// The chunks of a held output whose columns are boxed, being read, and the next one.
  private var held: [(frame: Frame, index: PartitionIndex?)] = []
  private var heldNext = 0
  /// A large piece met while gathering small ones, handed out next.
  private var stashed: Frame?
  /// Pieces gathered for the next frame: frames, and row ranges of held outputs copied from
  /// their raw pointers (the outputs kept alive in `alive` meanwhile).
  private var pieces: [(frame: Frame, rows: Range<Int>)] = []
  private var rawPieces: [(frame: RawFrame, rows: Range<Int>)] = []
  private var alive: [HeldFrames] = []
  private var rows = 0
  /// The held output whose chunks are being gathered, and its next chunk.
  private var rawOutput: HeldFrames?
  private var rawNext = 0
  /// Every upstream output as one table, when all are held with raw pointers, and its next entry.
  private let table: HeldTable?
  private var tableNext = 0
  /// Partition `partition`'s rows in the table's entries `walkFrom ..< walkFrom + walkCount`.
  private var walkStarts = UnsafeMutableBufferPointer<UInt32>(start: nil, count: 0)
  private var walkEnds = UnsafeMutableBufferPointer<UInt32>(start: nil, count: 0)
  private var walkFrom = 0
  private var walkCount = 0

  /// Rows of an upstream file's partition taken from the section cache, and the next.
  private var queued: [(frame: Frame, rows: Range<Int>, bytes: Int)] = []
  private var queuedNext = 0

  /// The files of upstream outputs on disk, read through the cache the reading tasks share,
  /// and which of them hold rows of each partition.
  private let sections: SectionCache?
  private let holding: UpstreamHolding?

  /// Reads partition `partition` of `dependency`'s tasks, once they are all done; `store` is
  /// the one their outputs are in when they are in this process (`open` nil).
  init(
    _ task: ShardTask, reading dependency: TaskDependency, partition: Int, open: PartitionOpener?, store: OutputStore
  ) {
    self.task = task
    upstream = dependency.tasks
    self.partition = partition
    self.open = open
    schema = upstream.first?.chain.first?.schema ?? Schema([])
    table = open == nil ? dependency.heldTable() : nil
    // The table stands for every upstream output.
    if table != nil { next = upstream.count }
    sections = open == nil && table == nil ? dependency.sectionCache(limit: store.sectionCacheBytes) : nil
    holding = sections == nil ? nil : dependency.upstreamHolding()
  }

  deinit {
    walkStarts.deallocate()
    walkEnds.deallocate()
  }

  func read() throws -> Frame? {
    let target = Frame.defaultRows
    if let frame = stashed {
      stashed = nil
      return frame
    }
    pieces.removeAll(keepingCapacity: true)
    rows = 0
    gathering: while rows < target {
      if open == nil {
        switch gatherHeld(until: target) {
        case .full: continue
        case .large(let frame):
          if rows == 0 { return frame }
          stashed = frame
          break gathering
        case .notHeld: break
        }
      }
      guard let piece = try nextPiece() else { break }
      if piece.rows.count >= ShuffleReader.largeRows {
        // Large enough to go on its own, without a copy.
        let frame = piece.rows.count == piece.frame.count ? piece.frame : piece.frame.slice(piece.rows)
        if rows == 0 { return frame }
        stashed = frame
        break
      }
      try flushRaw()
      pieces.append(piece)
      rows += piece.rows.count
    }
    if pieces.isEmpty, !rawPieces.isEmpty {
      defer { clearRaw() }
      return try RawFrame.concat(rawPieces, schema: schema)
    }
    try flushRaw()
    if pieces.count <= 1 {
      guard let (frame, range) = pieces.first else { return nil }
      return range.count == frame.count ? frame : frame.slice(range)
    }
    do {
      return try Frame.concat(ranges: pieces)
    } catch let error as FrameError {
      throw SliceIOError.frame(error)
    }
  }

  /// Pieces of at least this many rows are handed out as they are, not copied into a frame
  /// with others.
  static let largeRows = Frame.defaultRows / 8

  private enum Gathered {
    /// `target` rows are gathered.
    case full
    /// A piece large enough to hand out on its own.
    case large(Frame)
    /// The next upstream output is not held in memory with raw pointers.
    case notHeld
  }

  /// Takes the rows of the next upstream outputs while they are held in memory with raw
  /// pointers, until `target` rows are gathered or a large piece comes.
  private func gatherHeld(until target: Int) -> Gathered {
    if let table { return gather(table, until: target) }
    while rows < target {
      guard let output = rawOutput else {
        guard heldNext >= held.count, current == nil, next < upstream.count,
          case .memory(let frames)? = upstream[next].output?.storage, frames.isRaw
        else { return .notHeld }
        next += 1
        rawOutput = frames
        rawNext = 0
        continue
      }
      let raw = output.raw
      while rawNext < raw.count, rows < target {
        let chunk = raw[rawNext]
        rawNext += 1
        let range = chunk.range(partition)
        if range.isEmpty { continue }
        TaskContext.current?.io.read(rows: range.count, bytes: range.count * output.bytes / max(output.rowCount, 1))
        if range.count >= ShuffleReader.largeRows {
          let frame = output.chunks[rawNext - 1].frame
          return .large(range.count == frame.count ? frame : frame.slice(range))
        }
        if alive.last !== output { alive.append(output) }
        rawPieces.append((chunk.frame, range))
        rows += range.count
      }
      if rawNext >= raw.count { rawOutput = nil }
    }
    return .full
  }

  /// `gatherHeld` from the table of every upstream output: `.notHeld` once it is all read.
  private func gather(_ table: HeldTable, until target: Int) -> Gathered {
    let entries = table.entries
    let pieces = table.pieces(of: partition)
    let count = pieces?.count ?? entries.count
    var taken = 0
    var bytes = 0
    defer { if taken > 0 { TaskContext.current?.io.read(rows: taken, bytes: bytes) } }
    while rows < target, tableNext < count {
      let i: Int
      let range: Range<Int>
      if let pieces {
        (i, range) = pieces[tableNext]
      } else {
        i = tableNext
        range = walked(table, i)
      }
      tableNext += 1
      if range.isEmpty { continue }
      let entry = entries[i]
      taken += range.count
      bytes += range.count * entry.outputBytes / max(entry.outputRows, 1)
      if range.count >= ShuffleReader.largeRows {
        let frame = table.frames[i]
        return .large(range.count == frame.count ? frame : frame.slice(range))
      }
      rawPieces.append((entry.chunk.frame, range))
      rows += range.count
    }
    return rows >= target ? .full : .notHeld
  }

  /// Partition `partition`'s rows in `table`'s entry `i`, looked up a batch of entries at a
  /// time (entries are asked for in order).
  private func walked(_ table: HeldTable, _ i: Int) -> Range<Int> {
    if i - walkFrom >= walkCount {
      let n = min(ShuffleReader.walkBatch, table.entries.count - i)
      if walkStarts.isEmpty {
        walkStarts = .allocate(capacity: ShuffleReader.walkBatch)
        walkEnds = .allocate(capacity: ShuffleReader.walkBatch)
      }
      let status = bs_partition_ranges(
        UnsafePointer(table.indexes.baseAddress! + i), n, UInt32(partition), walkStarts.baseAddress,
        walkEnds.baseAddress)
      precondition(status == BS_OK, "bs_partition_ranges refused its arguments")
      walkFrom = i
      walkCount = n
    }
    return Int(walkStarts[i - walkFrom])..<Int(walkEnds[i - walkFrom])
  }

  /// Entries looked up at once by `walked`.
  private static let walkBatch = 256

  /// Copies the raw pieces gathered so far into a frame piece.
  private func flushRaw() throws {
    guard !rawPieces.isEmpty else { return }
    let frame = try RawFrame.concat(rawPieces, schema: schema)
    pieces.append((frame, 0..<frame.count))
    clearRaw()
  }

  private func clearRaw() {
    rawPieces.removeAll(keepingCapacity: true)
    alive.removeAll(keepingCapacity: true)
  }

  /// The rows of the next non-empty piece of the next upstream partition.
  private func nextPiece() throws -> (frame: Frame, rows: Range<Int>)? {
    while true {
      if queuedNext < queued.count {
        let (frame, range, bytes) = queued[queuedNext]
        queuedNext += 1
        TaskContext.current?.io.read(rows: range.count, bytes: bytes)
        return (frame, range)
      }
      while heldNext < held.count {
        let (frame, index) = held[heldNext]
        heldNext += 1
        let range = index?.range(partition) ?? (partition == 0 ? 0..<frame.count : 0..<0)
        if range.isEmpty { continue }
        TaskContext.current?.io.read(rows: range.count, bytes: frame.byteCount * range.count / max(frame.count, 1))
        return (frame, range)
      }
      if let reader = current, let source = currentTask {
        let started = ContinuousClock.now
        let frame: Frame?
        do {
          frame = try reader.read()
        } catch {
          throw inputError(error, task: task, upstream: source)
        }
        if let frame {
          TaskContext.current?.io.read(frame, since: started)
          if frame.count > 0 { return (frame, 0..<frame.count) }
          continue
        }
        current = nil
        currentTask = nil
      }
      if let holding { next = holding.next(partition, from: next) }
      guard next < upstream.count else { return nil }
      let source = upstream[next]
      next += 1
      do {
        if let open {
          current = try open(source, partition)
          currentTask = current == nil ? nil : source
        } else {
          guard let output = source.output else {
            throw BigsliceError.outputMissing(op: source.op, shard: source.shard)
          }
          if case .memory(let frames) = output.storage {
            held = frames.chunks
            heldNext = 0
            continue
          }
          if case .file(let file) = output.storage, let sections {
            let place = file.place(partition)
            if place.isEmpty { continue }
            if place.isShared {
              // The common piece of a many-way shuffle on disk: one, taken with no list made.
              let (frame, rows, bytes) = try sections.packedPiece(
                file, at: place, upstream: next - 1, partition: partition)
              TaskContext.current?.io.read(rows: rows.count, bytes: bytes)
              return (frame, rows)
            }
            if file.sectionRange(place.section).count <= SectionCache.largestSection {
              queued = try sections.pieces(file, at: place, upstream: next - 1, partition: partition)
              queuedNext = 0
              continue
            }
          }
          current = output.reader(partition)
          currentTask = current == nil ? nil : source
        }
      } catch {
        throw inputError(error, task: task, upstream: source)
      }
    }
  }
}
