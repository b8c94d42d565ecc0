import CSupport
import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// One column a `DelimitedReader` reads: its name (for errors and the header check, may be
/// empty), its type's name, and how its fields become a column.
public struct DelimitedColumn: Sendable {
  public var name: String
  public var typeName: String
  public var make: @Sendable (DelimitedFields) throws -> Column

  /// A column of `T` called `name`.
  public init<T: DelimitedValue>(_ type: T.Type, name: String = "") {
    self.name = name
    typeName = T.delimitedName
    make = { try T.delimitedColumn($0) }
  }
}

/// Reads the rows of delimited text (CSV, TSV; see `DelimitedFormat`) that start in byte
/// range `shard` of `shards` of a file, or all the rows of a `ByteInput`, into frames of
/// typed columns. Fields are found by a vectorised scan and converted column by column in C
/// (`bs_delimited.h`); no `String` is made per field.
///
/// A compressed file (gzip, zstd) or, with `quotedNewlines`, any file, is read whole by shard
/// `fileIndex % shards`.
public final class DelimitedReader: FrameSource {
  private let input: InputBuffer
  private let format: DelimitedFormat
  private let columns: [DelimitedColumn]
  /// The header line is still to be read (this shard reads the start of the input).
  private var headerDue: Bool
  /// This shard reads the start of the input, and has not yet looked for a byte-order mark.
  private var atStart: Bool
  /// Line feeds consumed since `input.rangeStart`.
  private var lines = 0
  private var split: bs_delim_split
  private var starts: UnsafeMutablePointer<UInt32>
  private var ends: UnsafeMutablePointer<UInt32>
  private var bad: UnsafeMutablePointer<UInt8>
  private var capacity: Int
  /// Rows skipped as bad (with `skipBadRows`), so far.
  public private(set) var skippedRows = 0

  /// Opens `path` at its range `shard` of `shards`; `fileIndex` is the file's place in the
  /// job's list, which picks the shard that reads a file read whole.
  /// - Throws: `SliceIOError.io` when the file cannot be opened, examined, read or positioned.
  public convenience init(
    path: String, shard: Int, of shards: Int, fileIndex: Int = 0, format: DelimitedFormat, columns: [DelimitedColumn]
  ) throws {
    let input = try InputBuffer(
      path: path, shard: shard, of: shards, fileIndex: fileIndex, whole: format.quotedNewlines)
    self.init(input: input, format: format, columns: columns)
  }

  /// Reads every row of `stream`, decompressing it when its first bytes are gzip's or zstd's.
  /// - Throws: what the stream throws as its first bytes are read.
  public convenience init(stream: any ByteInput, format: DelimitedFormat, columns: [DelimitedColumn]) throws {
    self.init(input: try InputBuffer(stream: stream), format: format, columns: columns)
  }

  private init(input: InputBuffer, format: DelimitedFormat, columns: [DelimitedColumn]) {
    precondition(!columns.isEmpty, "a delimited reader reads at least one column")
    self.input = input
    self.format = format
    self.columns = columns
    headerDue = format.header != .none && input.rangeStart == 0 && input.stop > 0
    atStart = input.rangeStart == 0 && input.stop > 0
    capacity = 0
    starts = .allocate(capacity: 1)
    ends = .allocate(capacity: 1)
    bad = .allocate(capacity: 1)
    split = bs_delim_split()
    split.delimiter = format.delimiter
    split.quoting = format.quoting ? 1 : 0
    split.quoted_newlines = format.quotedNewlines ? 1 : 0
    split.columns = UInt32(columns.count)
  }

  deinit {
    starts.deallocate()
    ends.deallocate()
    bad.deallocate()
  }

  private func reserve(rows: Int) {
    guard rows > capacity else { return }
    starts.deallocate()
    ends.deallocate()
    bad.deallocate()
    capacity = rows
    starts = .allocate(capacity: rows * columns.count)
    ends = .allocate(capacity: rows * columns.count)
    bad = .allocate(capacity: rows)
  }

  /// Splits up to `rows` rows at the start of the unconsumed bytes, reading more until at
  /// least one row, a bad row or the end is found. Returns false at the end of the range.
  /// - Throws: `SliceIOError.delimited` for a malformed row (unless skipped); I/O errors.
  private func splitRows(_ rows: Int, skipping: Bool) throws -> Bool {
    reserve(rows: rows)
    split.capacity = UInt32(rows)
    split.starts = starts
    split.ends = ends
    split.skip_bad = skipping ? 1 : 0
    while true {
      guard input.offset < input.stop else { return false }
      let length = input.end - input.start
      if length >= Int(Int32.max) {
        throw SliceIOError.delimited(
          path: input.name, line: nil, column: nil, problem: "a row longer than 2 GiB", text: "")
      }
      let limit = input.stop == Int.max ? Int.max : input.stop - input.offset
      let status = bs_delim_split_rows(&split, input.buffer + input.start, length, limit, input.eof ? 1 : 0)
      precondition(status == BS_OK, "bs_delim_split_rows refused its arguments")
      skippedRows += Int(split.skipped)
      if split.problem != BS_DELIM_FINE {
        // Rows before the bad one are dropped with it: the job fails.
        throw rowError(split)
      }
      if split.rows > 0 { return true }
      if split.consumed > 0 {
        advance(by: split.consumed, lines: split.newlines)
        continue
      }
      if input.eof { return false }
      try input.fillMore()
    }
  }

  private func advance(by bytes: Int, lines newlines: UInt64) {
    input.consume(bytes)
    lines += Int(newlines)
  }

  /// The line number of the byte `at` of the unconsumed bytes, when it can be known.
  private func line(at: Int) -> Int? {
    guard let before = input.linesBeforeRange() else { return nil }
    return before + lines + lineFeeds(in: input.buffer + input.start, count: at) + 1
  }

  private func columnLabel(_ c: Int) -> String {
    let names: [String]
    if case .names(let given) = format.header { names = given } else { names = columns.map(\.name) }
    let name = c < names.count ? names[c] : ""
    return name.isEmpty ? "\(c + 1)" : "\(c + 1) (\(name))"
  }

  /// The text at `at` of the unconsumed bytes up to its line's end, cut to 100 bytes.
  private func text(from at: Int, to end: Int? = nil) -> String {
    let base = input.buffer + input.start
    let available = input.end - input.start
    var stop = min(end ?? available, available, at + 100)
    if end == nil, let nl = memchr(base + at, 0x0A, max(stop - at, 0)) {
      stop = base.distance(to: nl.assumingMemoryBound(to: UInt8.self))
    }
    if stop > at && base[stop - 1] == 0x0D { stop -= 1 }
    return String(decoding: UnsafeBufferPointer(start: base + at, count: max(stop - at, 0)), as: UTF8.self)
  }

  private func rowError(_ s: bs_delim_split) -> SliceIOError {
    let at = Int(s.error_offset)
    let problem: String
    var column: Int? = nil
    switch s.problem {
    case BS_DELIM_FIELD_COUNT:
      problem = "\(s.error_column) fields where \(columns.count) were expected"
    case BS_DELIM_AFTER_QUOTE:
      problem = "text after a closing quote"
      column = Int(s.error_column)
    default:
      problem =
        format.quotedNewlines
        ? "a quoted field is not closed before the input ends"
        : "a quoted field is not closed on its line (quotedNewlines reads fields with line breaks)"
      column = Int(s.error_column)
    }
    return .delimited(
      path: input.name, line: line(at: at), column: column.map(columnLabel), problem: problem, text: text(from: at))
  }

  /// Skips a UTF-8 byte-order mark at the start of the input, as spreadsheet exports write.
  private func skipByteOrderMark() throws {
    atStart = false
    while input.end - input.start < 3 && !input.eof { try input.fill() }
    let at = input.buffer + input.start
    if input.end - input.start >= 3 && at[0] == 0xEF && at[1] == 0xBB && at[2] == 0xBF { input.consume(3) }
  }

  private func readHeader() throws {
    headerDue = false
    let fieldColumns = columns.count
    guard try splitRows(1, skipping: false) else { return }
    let base = input.buffer + input.start
    let found = (0..<fieldColumns).map { c in
      DelimitedFields(
        buffer: UnsafePointer(base), starts: starts + c * capacity, ends: ends + c * capacity, count: 1, bad: bad
      ).strings()[0]
    }
    if case .names(let expected) = format.header, expected != found {
      throw SliceIOError.delimited(
        path: input.name, line: line(at: 0), column: nil,
        problem: "the header is not the expected \(expected.joined(separator: ", "))",
        text: found.joined(separator: ", "))
    }
    advance(by: split.consumed, lines: split.newlines)
  }

  /// Up to `rows` more rows, or nil when the range is done.
  /// - Throws: `SliceIOError.delimited` naming the file, line, column and text of a bad row
  ///   or field (unless `skipBadRows`); `SliceIOError.io`, `.compressed` from the input.
  public func next(rows: Int) throws -> Frame? {
    if atStart { try skipByteOrderMark() }
    if headerDue { try readHeader() }
    while try splitRows(max(rows, 1), skipping: format.skipBadRows) {
      let count = Int(split.rows)
      let base = UnsafePointer(input.buffer + input.start)
      var made: [Column] = []
      made.reserveCapacity(columns.count)
      var firstBad: (row: Int, column: Int)? = nil
      var anyBad = false
      bad.initialize(repeating: 0, count: count)
      for (c, column) in columns.enumerated() {
        let fields = DelimitedFields(
          buffer: base, starts: starts + c * capacity, ends: ends + c * capacity, count: count, bad: bad)
        made.append(try column.make(fields))
        if !format.skipBadRows, let r = memchr(bad, 1, count) {
          let row = UnsafeRawPointer(bad).distance(to: r)
          if firstBad == nil || row < firstBad!.row { firstBad = (row, c) }
          bad.update(repeating: 0, count: count)
        }
      }
      if let (row, c) = firstBad {
        let at = Int(starts[c * capacity + row])
        let end = Int(ends[c * capacity + row] & ~BS_DELIM_ESCAPED)
        throw SliceIOError.delimited(
          path: input.name, line: line(at: at), column: columnLabel(c),
          problem: "not \(article(columns[c].typeName)) \(columns[c].typeName)", text: text(from: at, to: end))
      }
      anyBad = format.skipBadRows && memchr(bad, 1, count) != nil
      advance(by: split.consumed, lines: split.newlines)
      var frame = try Frame(made)
      if anyBad {
        let keep = (0..<count).filter { bad[$0] == 0 }.map { UInt32($0) }
        skippedRows += count - keep.count
        if keep.isEmpty { continue }
        frame = frame.gather(keep)
      }
      return frame
    }
    return nil
  }
}

private func article(_ word: String) -> String {
  "AEIOU".contains(word.first ?? "x") ? "an" : "a"
}
