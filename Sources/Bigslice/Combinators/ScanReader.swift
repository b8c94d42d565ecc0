import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// The lines of text files as a one-column slice of strings (without their line endings).
///
/// Every file is cut into `shards` byte ranges; shard `s` reads the lines that start in range
/// `s` of each file, so the shards split the work without reading anything twice. Lines are
/// copied straight from the read buffer into the column (no `String` per line).
///
/// A gzip or zstd file (recognised by its first bytes, not its name) is decompressed as it is
/// read, by ISA-L or zstd; it cannot be cut, so file `i` of the list goes whole to shard
/// `i % shards`.
///
/// Each of `paths` is a file, a directory (the files in it, not in its subdirectories, and
/// not those whose names start with a dot) or a pattern with `*`, `?` or `[…]` (`glob(3)`),
/// each directory's and pattern's files sorted by name. They are expanded once per run, by
/// the driver before any task starts, and a job on machines reads the driver's list.
/// - Throws (when run): `BigsliceError.invalidArgument` for a pattern or directory with no
///   file, or one that cannot be read; `SliceIOError.io` naming a file that cannot be opened
///   or read; `SliceIOError.compressed` naming a compressed file and the byte where it is
///   corrupt or ends too soon.
public func scanReader(
  _ shards: Int, paths: [String], file: StaticString = #fileID, line: UInt = #line
) -> Slice<String> {
  let input = InputFiles(op: "scanReader", paths: paths)
  return Slice(
    inputSlice(
      "scan", shards, schema: Schema([.string]), problem: shardsProblem("scanReader", shards), input: input,
      file: file, line: line
    ) { shard, index, list in
      guard index < list.count else { return nil }
      return try LineRangeReader(path: list[index], shard: shard, of: shards, fileIndex: index)
    })
}

/// The lines of the byte inputs that `openers` open, as a one-column slice of strings: input
/// `i` is opened and read whole by shard `i % shards`, when that shard's task runs (on a
/// machine, on that machine), and decompressed when its first bytes are gzip's or zstd's.
///
///     scanReader(1, openers: [{ FileDescriptorInput(fd: 0, name: "stdin", closing: false) }])
///
/// - Throws (when run): what an opener or its input throws; `SliceIOError.compressed` for a
///   corrupt or truncated compressed input, naming it and the byte.
public func scanReader(
  _ shards: Int, openers: [@Sendable () throws -> any ByteInput], file: StaticString = #fileID,
  line: UInt = #line
) -> Slice<String> {
  let problem = shardsProblem("scanReader", shards)
  return Slice(
    inputSlice("scan", shards, schema: Schema([.string]), problem: problem, file: file, line: line) {
      shard, index, _ in
      guard index < openers.count else { return nil }
      guard index % shards == shard else { return .some(nil) }
      return try LineRangeReader(stream: openers[index]())
    })
}

func shardsProblem(_ op: String, _ shards: Int) -> BigsliceError? {
  shards < 1 ? .invalidArgument("\(op) needs at least 1 shard, got \(shards)") : nil
}

/// The node of a slice of the rows that `open(shard, i, files)` reads for inputs i = 0, 1, …
/// until it returns nil (an input the shard does not read may open nothing: it is skipped);
/// `files` are `input`'s files in this run, or empty. Rows an input skips as bad count in the
/// task's `badRows` metric.
func inputSlice(
  _ op: String, _ shards: Int, schema: Schema, problem: BigsliceError?, input: InputFiles? = nil,
  file: StaticString, line: UInt,
  open: @escaping @Sendable (_ shard: Int, _ index: Int, _ files: [String]) throws -> (any FrameSource)??
) -> SliceNode {
  let node = SliceNode(
    op: op, location: location(file, line), schema: schema, shards: max(shards, 1), deps: [], problem: problem
  ) { shard, _, context in
    let files = try input.map { try context.files($0) } ?? []
    var index = 0
    var current: (any FrameSource)? = nil
    var skipped = 0
    return FunctionReader {
      while true {
        if current == nil {
          guard let opened = try open(shard, index, files) else { return nil }
          index += 1
          guard let reader = opened else { continue }
          current = reader
          skipped = 0
        }
        let frame = try current!.next(rows: Frame.defaultRows)
        if current!.skippedRows > skipped {
          TaskContext.current?.increment("badRows", by: current!.skippedRows - skipped)
          skipped = current!.skippedRows
        }
        if let frame { return frame }
        current = nil
      }
    }
  }
  node.inputFiles = input
  return node
}
