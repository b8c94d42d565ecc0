import Bigslice
import BigsliceTestFuncs
import Foundation
import Frame
import SliceIO
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A new empty directory, removed by `body`'s end.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
  let dir = NSTemporaryDirectory() + "bigslice-write-\(UUID().uuidString)"
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: dir) }
  return try await body(dir)
}

/// The files in `dir`, sorted.
func files(_ dir: String) throws -> [String] {
  try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
}

/// `writeDelimited`: sharded files that read back to the rows written, appear whole, and
/// replace their set on a rerun.
@Suite(.engine) struct WriteDelimitedTests {
  /// Written on every engine and memory limit, plain, gzip and zstd, as CSV (line breaks in
  /// fields) and TSV: the files read back, in order, to the rows, and to what the naive
  /// writer's text reads back to.
  @Test(arguments: setups, [1, 7])
  func whatIsWrittenReadsBackToTheSameRows(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    for (i, format) in [TableFormat.all[1], TableFormat.all[2]].enumerated() {
      for compression in [OutputCompression.none, .gzip, .zstd] {
        try await withTemporaryDirectory { dir in
          let rows = format.random(400, seed: UInt64(shards * 10 + i))
          let written = try await session.run(DelimitedFuncs.write, shards, rows, "\(dir)/t", format.csv, compression)
          let made = Array(try written.rows()).sorted { $0.0 < $1.0 }
          let ext = (format.csv ? ".csv" : ".tsv") + compression.suffix
          #expect(made.map(\.0) == (0..<shards).map { String(format: "%@/t-%04d-of-%04d%@", dir, $0, shards, ext) })
          #expect(made.map(\.1) == (0..<shards).map { ($0 + 1) * rows.count / shards - $0 * rows.count / shards })
          #expect(try files(dir).count == shards, "no temporary file is left")
          let back = try await session.run(DelimitedFuncs.table, 1, made.map(\.0), format.csv, format.csv, true)
          #expect(try back.frames.flatMap(\.anyRows).map(TableRow.init) == rows, "\(format) \(compression)")
          let naive = temporaryFile(format.text(rows, header: true, seed: 3))
          defer { unlink(naive) }
          let fromNaive = try await session.run(DelimitedFuncs.table, 1, [naive], format.csv, format.csv, true)
          #expect(try fromNaive.frames.flatMap(\.anyRows).map(TableRow.init) == rows)
        }
      }
    }
  }

  /// The compressed files are ordinary gzip and zstd files: the standard tools decompress
  /// them to the plain file's bytes.
  @Test func compressedFilesDecompressWithTheStandardTools() async throws {
    let session = Session(executor: .local(procs: 2))
    try await withTemporaryDirectory { dir in
      let rows = TableFormat.all[0].random(3000, seed: 5)
      for compression in [OutputCompression.none, .gzip, .zstd] {
        _ = try await session.run(DelimitedFuncs.write, 2, rows, "\(dir)/t", true, compression)
      }
      for (suffix, tool) in [(".gz", "gzip -dc"), (".zst", "zstd -q -dc")] {
        for shard in 0..<2 {
          let plain = "\(dir)/t-000\(shard)-of-0002.csv"
          let check = try run("/bin/sh", ["-c", "\(tool) '\(plain)\(suffix)' | cmp - '\(plain)'"])
          #expect(check.status == 0, "\(plain)\(suffix): \(check.out) \(check.err)")
        }
      }
    }
  }

  /// A shard that fails leaves nothing: no file, no temporary; a TSV string holding a tab is
  /// such a failure, named by its row and column.
  @Test func aFailedWriteLeavesNoFile() async throws {
    let session = Session(executor: .local(procs: 2))
    try await withTemporaryDirectory { dir in
      let slice = const(1, ["a", "b\tc", "d"], [1, 2, 3]).writeDelimited(to: "\(dir)/t")
      let error = await #expect(throws: (any Error).self) { _ = try await session.run(slice) }
      let message = "\(error.map { "\($0)" } ?? "no error")"
      #expect(message.contains("row 2, column 1 holds a delimiter or line end"), "\(message)")
      let left = try files(dir)
      #expect(left.isEmpty)
    }
  }

  /// A rerun with fewer shards replaces the set: the files of the earlier set are gone, and
  /// shards with no rows write files with the header alone.
  @Test func aRerunReplacesTheWholeSet() async throws {
    let session = Session(executor: .local(procs: 2))
    try await withTemporaryDirectory { dir in
      let rows = TableFormat.all[2].random(3, seed: 7)
      _ = try await session.run(DelimitedFuncs.write, 7, rows, "\(dir)/t", false, OutputCompression.none)
      #expect(try files(dir).count == 7)
      let other = "\(dir)/t-0000-of-0007.csv"
      try "kept\n".write(toFile: other, atomically: true, encoding: .utf8)
      _ = try await session.run(DelimitedFuncs.write, 3, rows, "\(dir)/t", false, OutputCompression.none)
      #expect(
        try files(dir) == ["t-0000-of-0003.tsv", "t-0000-of-0007.csv", "t-0001-of-0003.tsv", "t-0002-of-0003.tsv"])
      let back = try await session.run(DelimitedFuncs.table, 2, ["\(dir)/*.tsv"], false, false, true)
      #expect(
        try back.frames.flatMap(\.anyRows).map(TableRow.init).sorted { $0.id < $1.id } == rows.sorted { $0.id < $1.id })
      _ = try await session.run(DelimitedFuncs.write, 7, [TableRow](), "\(dir)/e", false, OutputCompression.none)
      let empty = try String(contentsOfFile: "\(dir)/e-0006-of-0007.tsv", encoding: .utf8)
      #expect(empty == TableRow.names.joined(separator: "\t") + "\n")
    }
  }

  @Test func everyScalarKindIsWrittenAsItsText() async throws {
    try await withTemporaryDirectory { dir in
      let writer = try DelimitedWriter(path: "\(dir)/t.tsv", format: .tsv())
      try writer.write(
        Frame([
          Column([Int8(-128), 127]), Column([Int16(-5), 300]), Column([Int32.min, Int32.max]), Column([UInt8(255), 0]),
          Column([UInt16(65535), 1]), Column([UInt32.max, 0]), Column([UInt64.max, 0]), Column([Float(1.5), -0.25]),
          Column([true, false]), Column([Int.min, 0]),
        ]))
      try writer.finish()
      #expect(writer.rows == 2)
      let text = try String(contentsOfFile: "\(dir)/t.tsv", encoding: .utf8)
      #expect(
        text
          == "-128\t-5\t-2147483648\t255\t65535\t4294967295\t18446744073709551615\t1.5\ttrue\t-9223372036854775808\n"
          + "127\t300\t2147483647\t0\t1\t0\t0\t-0.25\tfalse\t0\n")
    }
  }

  /// A result writes itself from the driver, on machines too, to the same files a slice
  /// writes.
  @Test(arguments: [Engine.local, .processes])
  func aResultWritesTheSameFilesItsSliceWould(engine: Engine) async throws {
    let session = try session(Setup(engine: engine, limit: Int.max))
    try await withTemporaryDirectory { dir in
      let (keys, values) = randomPairs(2000, keys: 300, seed: 9)
      let result = try await session.run(TestFuncs.reduceSum, 5, keys, values)
      let written = try result.writeDelimited(to: "\(dir)/sums", format: .csv(), compression: .gzip)
      #expect(written.map(\.path) == (0..<5).map { "\(dir)/sums-000\($0)-of-0005.csv.gz" })
      #expect(written.map(\.rows).reduce(0, +) == Set(keys).count)
      let back = try await session.run(DelimitedFuncs.readSums, 3, written.map(\.path))
      var sums: [Int: Int] = [:]
      var reader = back.makeRowReader()
      while let (key, sum) = try reader.next() { sums[key] = sum }
      var expected: [Int: Int] = [:]
      for (k, v) in zip(keys, values) { expected[k, default: 0] += v }
      #expect(sums == expected)
    }
  }
}
