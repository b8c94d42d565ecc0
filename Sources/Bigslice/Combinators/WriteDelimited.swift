import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

extension Slice {
  /// Writes each shard's rows as delimited text to a file of its own, and gives one row per
  /// shard: the file's path and its row count.
  ///
  ///     let written = try await session.run(counts.writeDelimited(to: "out/counts", format: .tsv()))
  ///     // out/counts-0000-of-0008.tsv … out/counts-0007-of-0008.tsv
  ///
  /// Shard `s` of `n` writes `prefix-SSSS-of-NNNN.tsv` (`.csv` for a comma, `.txt` for another
  /// delimiter; then `.gz` or `.zst` when compressed), numbers of at least four digits. Each
  /// file is written to a temporary name beside it, synced and renamed, so a reader never sees
  /// a partial file, and an empty shard writes an empty file (with the header, when the format
  /// has `.names`). A rerun replaces each file of the set, and removes the files of a set of
  /// the same prefix with another shard count. What is written reads back with
  /// `readDelimited` to the same rows (see `DelimitedWriter` for how values are written); on
  /// machines, `prefix` must be on a file system they share.
  ///
  /// - Throws (when run): `SliceIOError.io` naming the file and the step that failed (a full
  ///   disk is `ENOSPC`); `SliceIOError.frame` for a column that cannot be written as text
  ///   (a record, bytes) or, without quoting, a string holding the delimiter or a line end.
  public func writeDelimited(
    to prefix: String, format: DelimitedFormat = .tsv(), compression: OutputCompression = .none,
    file: StaticString = #fileID, line: UInt = #line
  ) -> Slice<String, Int> {
    let shards = self.shards
    let problem: BigsliceError? =
      if case .present = format.header {
        .invalidArgument("writeDelimited writes a header from its names: use .names([...])")
      } else if case .names(let names) = format.header, names.count != schema.types.count {
        .invalidArgument("writeDelimited: a header of \(names.count) names for \(schema.types.count) columns")
      } else { nil }
    return narrow(
      "writeDelimited", schema: Schema([.string, .scalar(.int64)]), problem: problem, file: file, line: line
    ) { shard, input in
      var done = false
      return FunctionReader {
        guard !done else { return nil }
        done = true
        let set = OutputSet(prefix: prefix, shards: shards, format: format, compression: compression)
        let writer = try DelimitedWriter(path: set.path(shard), format: format, compression: compression)
        while let frame = try input.read() {
          if TaskContext.current?.isCancelled == true { throw CancellationError() }
          try writer.write(frame)
        }
        try writer.finish()
        set.removeOtherSets(shard: shard)
        return try Frame([Column(strings: [writer.path]), Column([writer.rows])])
      }
    }
  }
}

extension SliceResult {
  /// Writes each shard's rows as delimited text to a file of its own, as
  /// `Slice.writeDelimited(to:format:compression:)` does, from this process: on machines, the
  /// rows stream from the machines to the driver, which writes every file. Returns each
  /// shard's path and row count, in shard order.
  /// - Throws: the errors of `Slice.writeDelimited`, and what computing a lost shard again
  ///   throws.
  public func writeDelimited(
    to prefix: String, format: DelimitedFormat = .tsv(), compression: OutputCompression = .none
  ) throws -> [(path: String, rows: Int)] {
    if case .names(let names) = format.header, names.count != schema.types.count {
      throw BigsliceError.invalidArgument(
        "writeDelimited: a header of \(names.count) names for \(schema.types.count) columns")
    }
    let set = OutputSet(prefix: prefix, shards: shards, format: format, compression: compression)
    return try (0..<shards).map { shard in
      let writer = try DelimitedWriter(path: set.path(shard), format: format, compression: compression)
      try forEachFrame(shard: shard) { try writer.write($0) }
      try writer.finish()
      set.removeOtherSets(shard: shard)
      return (writer.path, writer.rows)
    }
  }
}

/// The names of a set of sharded output files.
struct OutputSet {
  let prefix: String
  let shards: Int
  /// The name's end after the numbers: `.tsv` and the compression's suffix.
  let suffix: String

  init(prefix: String, shards: Int, format: DelimitedFormat, compression: OutputCompression) {
    self.prefix = prefix
    self.shards = shards
    let kind = format.delimiter == UInt8(ascii: ",") ? "csv" : format.delimiter == UInt8(ascii: "\t") ? "tsv" : "txt"
    suffix = ".\(kind)\(compression.suffix)"
  }

  static func number(_ i: Int, width: Int) -> String {
    let s = String(i)
    return String(repeating: "0", count: max(0, width - s.count)) + s
  }

  /// The digits every number of an `n`-file set takes.
  static func width(_ n: Int) -> Int { max(4, String(n).count) }

  func path(_ shard: Int) -> String {
    let width = OutputSet.width(shards)
    return "\(prefix)-\(OutputSet.number(shard, width: width))-of-\(OutputSet.number(shards, width: width))\(suffix)"
  }

  /// Removes the files of this prefix and suffix from sets of another shard count whose
  /// number falls to `shard` (number % shards == shard), so that together the shards remove
  /// every such file.
  func removeOtherSets(shard: Int) {
    let escaped = String(prefix.flatMap { "*?[\\".contains($0) ? ["\\", $0] : [$0] })
    var matches = glob_t()
    defer { globfree(&matches) }
    guard glob("\(escaped)-*-of-*\(suffix)", 0, nil, &matches) == 0 else { return }
    for i in 0..<Int(matches.gl_pathc) {
      guard let name = matches.gl_pathv[i].map({ String(cString: $0) }) else { continue }
      let middle = name.dropFirst(prefix.count + 1).dropLast(suffix.count)
      let parts = middle.split(separator: "-")
      guard parts.count == 3, parts[1] == "of", let index = Int(parts[0]), let count = Int(parts[2]),
        parts[0].count == OutputSet.width(count), parts[2].count == OutputSet.width(count), count != shards,
        index < count, index % shards == shard
      else { continue }
      unlink(name)
    }
  }
}
