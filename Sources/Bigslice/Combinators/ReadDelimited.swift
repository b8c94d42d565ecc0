import Frame
import SliceIO

/// The rows of delimited text files (CSV, TSV: see `DelimitedFormat`) as a slice of typed
/// columns, one per type in `types`: `Int`, `Int64`, `Int32`, `Double`, `Bool`, `String` or
/// an optional of one (an empty field is nil).
///
///     let sales = readDelimited(8, paths: ["sales/*.csv"], as: String.self, Int.self, Double?.self,
///                               format: .csv(header: .names(["region", "units", "price"])))
///
/// Fields are found by a vectorised scan and converted column by column in C; no `String` is
/// made per field. Files are cut into `shards` byte ranges, as `scanReader` cuts them, and a
/// row belongs to the range its first byte is in. A gzip or zstd file (known by its first
/// bytes), or any file when `format.quotedNewlines` allows line breaks in quoted fields, is
/// read whole by shard `i % shards` for file `i`. `paths` may name directories and patterns,
/// as for `scanReader`, expanded once per run by the driver. With a header, each file's first line is checked and skipped.
///
/// - Throws (when run): `SliceIOError.delimited` naming the file, line, column and text of a
///   bad field, a row with the wrong number of fields or a quote left open, unless
///   `format.skipBadRows` skips such rows (counted in the job's `badRows` metric); the
///   errors of `scanReader` for missing or unreadable inputs.
public func readDelimited<each C: DelimitedValue>(
  _ shards: Int, paths: [String], as types: repeat (each C).Type, format: DelimitedFormat = .tsv(),
  file: StaticString = #fileID, line: UInt = #line
) -> Slice<repeat each C> {
  let (columns, schema, typeProblem) = delimitedColumns(repeat each types)
  let problem = typeProblem ?? shardsProblem("readDelimited", shards)
  let input = InputFiles(op: "readDelimited", paths: paths)
  return Slice(
    inputSlice("readDelimited", shards, schema: schema, problem: problem, input: input, file: file, line: line) {
      shard, index, list in
      guard index < list.count else { return nil }
      return try DelimitedReader(
        path: list[index], shard: shard, of: shards, fileIndex: index, format: format, columns: columns)
    })
}

/// The rows of the delimited byte inputs that `openers` open, as `readDelimited(_:paths:…)`
/// reads files: input `i` is opened and read whole by shard `i % shards` when that shard's
/// task runs, and decompressed when its first bytes are gzip's or zstd's.
/// - Throws (when run): what an opener or its input throws; the errors of
///   `readDelimited(_:paths:…)`.
public func readDelimited<each C: DelimitedValue>(
  _ shards: Int, openers: [@Sendable () throws -> any ByteInput], as types: repeat (each C).Type,
  format: DelimitedFormat = .tsv(), file: StaticString = #fileID, line: UInt = #line
) -> Slice<repeat each C> {
  let (columns, schema, typeProblem) = delimitedColumns(repeat each types)
  let problem = typeProblem ?? shardsProblem("readDelimited", shards)
  return Slice(
    inputSlice("readDelimited", shards, schema: schema, problem: problem, file: file, line: line) {
      shard, index, _ in
      guard index < openers.count else { return nil }
      guard index % shards == shard else { return .some(nil) }
      return try DelimitedReader(stream: openers[index](), format: format, columns: columns)
    })
}

/// The columns a delimited reader makes for `types`, their schema, and the problem with one
/// that has no column type.
private func delimitedColumns<each C: DelimitedValue>(_ types: repeat (each C).Type) -> (
  [DelimitedColumn], Schema, BigsliceError?
) {
  var columns: [DelimitedColumn] = []
  for type in repeat each types { columns.append(DelimitedColumn(type)) }
  let (schemaTypes, problem) = columnTypes(repeat each types)
  return (
    columns, Schema(schemaTypes), problem ?? (columns.isEmpty ? .invalidArgument("readDelimited needs a column") : nil)
  )
}
