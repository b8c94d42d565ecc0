import Bigslice
import BigsliceTestFuncs
import Foundation
import Frame
import SliceIO
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A format of the table tests: CSV (with or without line breaks in quoted fields) or TSV.
struct TableFormat: Sendable, CustomStringConvertible {
  let csv: Bool
  let newlines: Bool
  var quoting: Bool { csv }
  var delimiter: Character { csv ? "," : "\t" }
  var description: String { csv ? (newlines ? "csv with line breaks" : "csv") : "tsv" }

  func format(header: Bool) -> DelimitedFormat {
    let names: DelimitedFormat.Header = header ? .names(TableRow.names) : .none
    return csv ? .csv(header: names, quotedNewlines: newlines) : .tsv(header: names)
  }

  func text(_ rows: [TableRow], header: Bool = false, seed: UInt64) -> String {
    TableRow.text(rows, delimiter: delimiter, quoting: quoting, header: header, seed: seed)
  }

  func random(_ n: Int, seed: UInt64) -> [TableRow] {
    TableRow.random(n, seed: seed, quoting: quoting, newlines: newlines)
  }

  static let all = [
    TableFormat(csv: true, newlines: false), TableFormat(csv: true, newlines: true),
    TableFormat(csv: false, newlines: false),
  ]
}

let tableColumns = [
  DelimitedColumn(Int.self, name: "id"), DelimitedColumn(String.self, name: "name"),
  DelimitedColumn(Double?.self, name: "price"), DelimitedColumn(Bool.self, name: "flag"),
  DelimitedColumn(Int32?.self, name: "small"), DelimitedColumn(String?.self, name: "note"),
]

/// Every row a reader gives, frame after frame.
func readAll(_ reader: DelimitedReader, rows: Int = Frame.defaultRows) throws -> [TableRow] {
  var out: [TableRow] = []
  while let frame = try reader.next(rows: rows) { out += frame.anyRows.map(TableRow.init) }
  return out
}

/// The rows of every shard of `path`, in shard order (so in file order).
func readShards(_ path: String, shards: Int, format: DelimitedFormat) throws -> [TableRow] {
  try (0..<shards).flatMap { shard in
    try readAll(DelimitedReader(path: path, shard: shard, of: shards, format: format, columns: tableColumns))
  }
}

extension String {
  /// The text cut at every LF (a CRLF's CR stays on its line).
  fileprivate var lines: [String] {
    unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map { String(String.UnicodeScalarView($0)) }
  }
}

/// A byte input that hands out its bytes a few at a time (1 to 7 per read), so every row
/// and field is cut at some read's end.
final class DribbleInput: ByteInput {
  let name = "dribble"
  private let bytes: [UInt8]
  private var at = 0
  private var rng: SplitMix64

  init(_ bytes: [UInt8], seed: UInt64) {
    self.bytes = bytes
    rng = SplitMix64(seed: seed)
  }

  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    let n = min(count, bytes.count - at, Int.random(in: 1...7, using: &rng))
    guard n > 0 else { return 0 }
    bytes[at..<at + n].withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: n) }
    at += n
    return n
  }
}

/// The delimited reader, on its own: what the naive writer wrote reads back equal, whatever
/// the shards, the format, the reads' sizes and the batch size.
@Suite struct DelimitedReaderTests {
  @Test(arguments: TableFormat.all, [1, 3, 16])
  func whatTheNaiveWriterWroteReadsBackEqual(format: TableFormat, shards: Int) throws {
    let rows = format.random(3000, seed: UInt64(shards))
    let path = temporaryFile(format.text(rows, header: true, seed: 7))
    defer { unlink(path) }
    #expect(try readShards(path, shards: shards, format: format.format(header: true)) == rows)
  }

  /// A small file read with as many shards as it has bytes: a shard boundary falls at every
  /// offset, inside fields, quotes, CRLFs and multi-byte characters.
  @Test(arguments: [TableFormat.all[0], TableFormat.all[2]])
  func aShardBoundaryAtEveryOffsetLosesAndRepeatsNoRow(format: TableFormat) throws {
    let rows = format.random(12, seed: 3)
    let text = format.text(rows, header: true, seed: 5)
    let path = temporaryFile(text)
    defer { unlink(path) }
    for shards in [2, 3, 5, text.utf8.count] {
      #expect(try readShards(path, shards: shards, format: format.format(header: true)) == rows, "\(shards) shards")
    }
  }

  @Test(arguments: TableFormat.all)
  func aStreamReadAFewBytesAtATimeReadsBackEqual(format: TableFormat) throws {
    let rows = format.random(400, seed: 11)
    let bytes = Array(format.text(rows, header: true, seed: 13).utf8)
    for rowsPerFrame in [1, 7, 1000] {
      let reader = try DelimitedReader(
        stream: DribbleInput(bytes, seed: UInt64(rowsPerFrame)), format: format.format(header: true),
        columns: tableColumns)
      #expect(try readAll(reader, rows: rowsPerFrame) == rows, "\(rowsPerFrame) rows a frame")
    }
  }

  /// Values in their other spellings: booleans in any case and as digits, numbers with signs
  /// and exponents, quoted numbers, and an empty quoted string.
  @Test func valuesInTheirOtherSpellings() throws {
    let text = """
      +5,"x",1E3,TRUE,-7,""
      "-0","",-.5,0,"12","a""b"
      9223372036854775807,y,inf,False,2147483647,z\r
      -9223372036854775808,y,1e-320,1,-2147483648,z
      """
    let path = temporaryFile(text)
    defer { unlink(path) }
    let rows = try readShards(path, shards: 1, format: .csv())
    #expect(
      rows == [
        TableRow(id: 5, name: "x", price: 1000, flag: true, small: -7, note: nil),
        TableRow(id: 0, name: "", price: -0.5, flag: false, small: 12, note: "a\"b"),
        TableRow(id: Int.max, name: "y", price: .infinity, flag: false, small: Int32.max, note: "z"),
        TableRow(id: Int.min, name: "y", price: 1e-320, flag: true, small: Int32.min, note: "z"),
      ])
  }

  /// Each kind of bad row fails naming the file, the line, the column and the text found.
  @Test(arguments: [
    ("1,a,1.5,true,2,n\n2,b,x1,true,3,n\n", "line 2, column 3 (price): not a Double?", "x1"),
    (
      "1,a,1.5,true,2,n\n2,b,1,true,3,n\n9223372036854775808,c,1,true,1,n\n", "line 3, column 1 (id): not an Int",
      "9223372036854775808"
    ),
    ("1,a,1.5,true,2,n\n2,b,1,yes,3,n\n", "line 2, column 4 (flag): not a Bool", "yes"),
    ("1,a,1.5,true,2147483648,n\n", "line 1, column 5 (small): not an Int32?", "2147483648"),
    ("1,a,1.5,true,2,n\n2,b,1.5,true\n", "line 2: 4 fields where 6 were expected", "2,b,1.5,true"),
    ("1,a,1.5,true,2,n,extra\n", "line 1: 7 fields where 6 were expected", "1,a,1.5,true,2,n,extra"),
    (
      "1,\"a,1.5,true,2,n\n2,b,1.5,true,2,n\n", "line 1, column 2 (name): a quoted field is not closed on its line",
      "1,\"a,1.5,true,2,n"
    ),
    ("1,\"a\"x,1.5,true,2,n\n", "line 1, column 2 (name): text after a closing quote", "1,\"a\"x,1.5,true,2,n"),
    ("1,a,,true,2,n\n,b,1.5,true,2,n\n", "line 2, column 1 (id): not an Int", ""),
  ])
  func aBadRowFailsNamingFileLineColumnAndText(text: String, says: String, found: String) throws {
    let path = temporaryFile(text)
    defer { unlink(path) }
    let error = #expect(throws: SliceIOError.self) { try readShards(path, shards: 1, format: .csv()) }
    let message = "\(error.map { "\($0)" } ?? "no error")"
    #expect(message.contains("\(path): \(says)") && message.contains("found \"\(found)\""), "\(message)")
  }

  /// A bad field far into a file, read by a later shard, still names its line.
  @Test func aBadFieldOnALaterShardNamesItsLine() throws {
    let rows = TableFormat.all[2].random(2000, seed: 17)
    var lines = TableFormat.all[2].text(rows, seed: 19).lines
    lines[1500] = "5\tok\tbad-price\ttrue\t1\tn"
    let path = temporaryFile(lines.joined(separator: "\n"))
    defer { unlink(path) }
    let error = #expect(throws: SliceIOError.self) { try readShards(path, shards: 4, format: .tsv()) }
    let message = "\(error.map { "\($0)" } ?? "")"
    #expect(message.contains("line 1501, column 3 (price): not a Double?: found \"bad-price\""), "\(message)")
  }

  /// A row far longer than the read buffer (1 MiB) is read whole, from a file cut into shards
  /// (with a boundary inside it) and from a stream that hands out a few bytes at a time
  /// (which must not make the reader rescan the row at every read).
  @Test func aRowLongerThanTheBufferIsReadWhole() throws {
    let long = String(repeating: "x", count: 3 << 20)
    let text = "1\tshort\n2\t\(long)\n3\tend"
    let path = temporaryFile(text)
    defer { unlink(path) }
    let columns = [DelimitedColumn(Int.self), DelimitedColumn(String.self)]
    for shards in [1, 2, 5] {
      var rows: [[AnyHashable]] = []
      for shard in 0..<shards {
        let reader = try DelimitedReader(path: path, shard: shard, of: shards, format: .tsv(), columns: columns)
        while let frame = try reader.next(rows: 100) { rows += frame.anyRows }
      }
      #expect(rows.map { "\($0[1])".count } == [5, long.count, 3], "\(shards) shards")
    }
    let reader = try DelimitedReader(
      stream: DribbleInput(Array(text.utf8), seed: 1), format: .tsv(), columns: columns)
    var count = 0
    while let frame = try reader.next(rows: 100) { count += frame.count }
    #expect(count == 3)
    // The same stream read as lines.
    let lines = try LineRangeReader(stream: DribbleInput(Array(text.utf8), seed: 2))
    var lengths: [Int] = []
    while let frame = try lines.next(rows: 100) {
      lengths += frame.anyRows.map { "\($0[0])".utf8.count }
    }
    #expect(lengths == [7, long.count + 2, 5])
  }

  /// A UTF-8 byte-order mark before the header (or the first row) is not part of it.
  @Test func aByteOrderMarkIsSkipped() throws {
    let withHeader = temporaryFile("\u{FEFF}id,name\n1,a\n")
    let withoutHeader = temporaryFile("\u{FEFF}7,b\n")
    defer {
      unlink(withHeader)
      unlink(withoutHeader)
    }
    let columns = [DelimitedColumn(Int.self), DelimitedColumn(String.self)]
    let a = try DelimitedReader(
      path: withHeader, shard: 0, of: 1, format: .csv(header: .names(["id", "name"])), columns: columns)
    #expect(try a.next(rows: 10)?.anyRows.map { "\($0[1])" } == ["a"])
    let b = try DelimitedReader(path: withoutHeader, shard: 0, of: 1, format: .csv(), columns: columns)
    #expect(try b.next(rows: 10)?.anyRows.map { "\($0[1])" } == ["b"])
  }

  @Test func aWrongHeaderFailsNamingBothHeaders() throws {
    let path = temporaryFile("id,name,cost,flag,small,note\n1,a,1,true,1,n\n")
    defer { unlink(path) }
    let error = #expect(throws: SliceIOError.self) {
      try readShards(path, shards: 1, format: .csv(header: .names(TableRow.names)))
    }
    let message = "\(error.map { "\($0)" } ?? "")"
    #expect(
      message.contains("\(path): line 1: the header is not the expected id, name, price, flag, small, note")
        && message.contains("found \"id, name, cost, flag, small, note\""), "\(message)")
    // A present header is skipped unread, whatever its names.
    #expect(try readShards(path, shards: 1, format: .csv(header: .present)).map(\.id) == [1])
  }

  /// With `skipBadRows`, every bad row is skipped and counted, and every good one kept.
  @Test func skippingBadRowsKeepsEveryGoodRowAndCountsTheBadOnes() throws {
    let rows = TableFormat.all[0].random(500, seed: 23)
    var lines = TableFormat.all[0].text(rows, seed: 29).lines
    let bad = [0, 7, 8, 250, 499]
    let kinds = ["x,a,1,true,1,n", "1,a,1,true", "1,\"a,1,true,1,n", "1,a,1,maybe,1,n", "1,a,1,true,1,n,more"]
    for (i, line) in zip(bad, kinds) { lines[i] = line }
    let path = temporaryFile(lines.joined(separator: "\n"))
    defer { unlink(path) }
    for shards in [1, 3] {
      var kept: [TableRow] = []
      var skipped = 0
      for shard in 0..<shards {
        let reader = try DelimitedReader(
          path: path, shard: shard, of: shards, format: .csv(skipBadRows: true), columns: tableColumns)
        kept += try readAll(reader, rows: 64)
        skipped += reader.skippedRows
      }
      #expect(kept == rows.enumerated().filter { !bad.contains($0.offset) }.map(\.element))
      #expect(skipped == bad.count)
    }
  }
}

/// `readDelimited` in jobs: on every engine and memory limit, from plain, gzip and zstd
/// files, with errors that name the input.
@Suite(.engine) struct ReadDelimitedTests {
  @Test(arguments: setups, [1, 7])
  func theTableReadsBackEqualOnEveryEngine(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    for format in TableFormat.all {
      let first = format.random(700, seed: 31)
      let second = format.random(300, seed: 37)
      let a = temporaryFile(format.text(first, header: true, seed: 41))
      let b = temporaryFile(format.text(second, header: true, seed: 43))
      defer {
        unlink(a)
        unlink(b)
      }
      let result = try await session.run(DelimitedFuncs.table, shards, [a, b], format.csv, format.newlines, true)
      let read = try result.frames.flatMap(\.anyRows).map(TableRow.init)
      #expect(read.count == first.count + second.count, "\(format)")
      #expect(Set(read) == Set(first + second), "\(format)")
    }
  }

  @Test(arguments: [1, 3])
  func compressedFilesReadAsTheirText(shards: Int) async throws {
    let session = Session(executor: .local(procs: 2))
    let format = TableFormat.all[0]
    let rows = format.random(2000, seed: 47)
    let plain = temporaryFile(format.text(rows, header: true, seed: 53))
    defer { unlink(plain) }
    let gz = plain + ".data"
    let zst = plain + ".more"
    defer {
      unlink(gz)
      unlink(zst)
    }
    #expect(try run("/bin/sh", ["-c", "gzip -c '\(plain)' > '\(gz)' && zstd -q -c '\(plain)' > '\(zst)'"]).status == 0)
    let slice = readDelimited(
      shards, paths: [plain, gz, zst], as: Int.self, String.self, Double?.self, Bool.self, Int32?.self, String?.self,
      format: format.format(header: true))
    let read = try await session.run(slice).frames.flatMap(\.anyRows).map(TableRow.init)
    #expect(
      read.sorted(by: { $0.description < $1.description })
        == (rows + rows + rows).sorted(by: { $0.description < $1.description }))
  }

  @Test func badInputsFailTheJobNamingThem() async throws {
    let session = Session(executor: .local(procs: 2))
    let good = temporaryFile("1\t2\n")
    let badField = temporaryFile("1\t2\n3\tfour\n")
    let truncated = temporaryFile("")
    defer { for path in [good, badField, truncated] { unlink(path) } }
    #expect(
      try run("/bin/sh", ["-c", "seq 1 100000 | sed 's/$/\t1/' | gzip -c | head -c 30000 > '\(truncated)'"]).status == 0
    )
    let cases: [(String, String)] = [
      ("/nonexistent/table.tsv", "/nonexistent/table.tsv: open failed: No such file or directory"),
      ("/nonexistent/*.tsv", "pattern /nonexistent/*.tsv matches no file"),
      (badField, "\(badField): line 2, column 2: not an Int: found \"four\""),
      (truncated, "\(truncated): compressed data at or after byte"),
    ]
    for (path, says) in cases {
      let error = await #expect(throws: (any Error).self) {
        _ = try await session.run(readDelimited(2, paths: [good, path], as: Int.self, Int.self))
      }
      let message = "\(error.map { "\($0)" } ?? "no error")"
      #expect(message.contains(says), "\(message)")
    }
  }

  @Test func skippedRowsCountInTheJobsMetrics() async throws {
    let session = Session(executor: .local(procs: 2))
    let path = temporaryFile("1\t2\nx\t3\n4\t5\n6\n7\t8\t9\n10\t11")
    defer { unlink(path) }
    let result = try await session.run(
      readDelimited(2, paths: [path], as: Int.self, Int.self, format: .tsv(skipBadRows: true)))
    #expect(
      Array(try result.rows()).map { [$0.0, $0.1] }.sorted(by: { $0[0] < $1[0] }) == [[1, 2], [4, 5], [10, 11]])
    #expect(result.metrics["badRows"] == 3)
  }
}
