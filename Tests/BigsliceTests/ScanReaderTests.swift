import Bigmachine
import BigsliceTestFuncs
import Foundation
import Frame
import SliceIO
import Testing

@testable import Bigslice

#if canImport(Glibc)
  import Glibc
#endif

/// Writes `text` to a new temporary file and returns its path.
func temporaryFile(_ text: String) -> String {
  var template = Array("/tmp/bigslice-scan-XXXXXX".utf8CString)
  let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
  var bytes = Array(text.utf8)
  _ = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
  close(fd)
  return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

@Suite(.engine) struct ScanReaderTests {
  let session = Session(executor: .local(procs: 2))

  @Test(arguments: shardCounts)
  func everyLineIsReadOnceWhateverTheShards(shards: Int) async throws {
    var rng = SplitMix64(seed: UInt64(shards))
    var lines: [String] = []
    for i in 0..<2000 { lines.append(String(repeating: "x", count: Int.random(in: 0..<40, using: &rng)) + "\(i)") }
    lines.append("")  // an empty line
    lines.append("crlf\r")  // a CRLF ending
    let withNewline = temporaryFile(lines.joined(separator: "\n") + "\n")
    let withoutNewline = temporaryFile("last line without newline\nsecond")
    defer {
      unlink(withNewline)
      unlink(withoutNewline)
    }
    let result = try await session.run(scanReader(shards, paths: [withNewline, withoutNewline]))
    var expected = lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }
    expected += ["last line without newline", "second"]
    #expect(Array(try result.rows()).sorted() == expected.sorted())
  }

  @Test func aMissingFileIsAnErrorNamingIt() async {
    let error = await #expect(throws: (any Error).self) {
      try await session.run(scanReader(2, paths: ["/nonexistent/words.txt"]))
    }
    #expect("\(error!)".contains("/nonexistent/words.txt"))
  }

  @Test func wordCountEqualsADictionary() async throws {
    let text = (0..<3000).map { i in (0..<5).map { j in "w\((i * 7 + j * 13) % 97)" }.joined(separator: " ") }
    let path = temporaryFile(text.joined(separator: "\n"))
    defer { unlink(path) }
    let words: Slice<String> = scanReader(3, paths: [path]).flatMap(String.self) {
      (out: RowEmitter<String>, line: String) in
      for word in line.split(separator: " ") { out.emit(String(word)) }
    }
    let counts = try await session.run(words.count())
    var reference: [String: Int] = [:]
    for line in text { for w in line.split(separator: " ") { reference[String(w), default: 0] += 1 } }
    #expect(Dictionary(uniqueKeysWithValues: Array(try counts.rows())) == reference)
  }
}

/// gzip and zstd inputs, recognised by their first bytes: decompressed as they are read, one
/// shard's unit of work each, and an error naming the file and the byte where one is bad.
@Suite(.engine) struct CompressedInputTests {
  let session = Session(executor: .local(procs: 2))

  /// Runs `command` (a shell command line) and expects it to succeed.
  func shell(_ command: String) throws {
    let result = try run("/bin/sh", ["-c", command])
    try #require(result.status == 0, "\(command): \(result.err)")
  }

  /// 3000 random lines, CRLF endings and empty lines among them, and their file.
  func plainFile(seed: UInt64) -> (lines: [String], path: String) {
    var rng = SplitMix64(seed: seed)
    var lines: [String] = []
    for i in 0..<3000 {
      // Random letters: the files compress to about two thirds, so the byte offsets below
      // fall inside the compressed data.
      let length = Int.random(in: 0..<60, using: &rng)
      let word =
        String((0..<length).map { _ in Character(UnicodeScalar(UInt8.random(in: 97...122, using: &rng))) }) + "\(i)"
      lines.append(i % 97 == 0 ? "" : i % 89 == 0 ? word + "\r" : word)
    }
    let path = temporaryFile(lines.joined(separator: "\n") + "\n")
    return (lines.map { $0.hasSuffix("\r") ? String($0.dropLast()) : $0 }, path)
  }

  /// The same lines, plain, as one gzip member, as three gzip members, as zstd (two frames),
  /// named without their suffixes, read together over several shard counts: every line once.
  @Test(arguments: [1, 3, 8])
  func compressedFilesReadAsTheirLines(shards: Int) async throws {
    let (lines, plain) = plainFile(seed: UInt64(shards))
    let (gz, multi, zst) = (plain + "-gz", plain + "-members", plain + "-zst")
    defer { for path in [plain, gz, multi, zst] { unlink(path) } }
    try shell("gzip -c '\(plain)' > '\(gz)'")
    try shell(
      "head -c 20000 '\(plain)' | gzip > '\(multi)' && tail -c +20001 '\(plain)' | head -c 30000 | gzip >> '\(multi)'"
        + " && tail -c +50001 '\(plain)' | gzip >> '\(multi)'")
    try shell(
      "head -c 40000 '\(plain)' | zstd -q -c > '\(zst)' && tail -c +40001 '\(plain)' | zstd -q -c >> '\(zst)'")
    let result = try await session.run(scanReader(shards, paths: [plain, gz, multi, zst]))
    #expect(Array(try result.rows()).sorted() == (lines + lines + lines + lines).sorted())
    // Each compressed file is read whole by one shard (file i by shard i % shards).
    if shards == 8 {
      for (i, expected) in [(1, lines.count), (2, lines.count), (3, lines.count)] {
        #expect(try result.frames(shard: i).reduce(0) { $0 + $1.count } >= expected)
      }
    }
  }

  /// A truncated gzip file, a gzip file with a damaged byte run, bytes after the last gzip
  /// member, and a damaged zstd file: each fails the job with an error naming the file and
  /// the trouble, never a short answer.
  @Test func aBadCompressedFileIsAnErrorNamingItAndWhere() async throws {
    let (_, plain) = plainFile(seed: 5)
    let (truncated, damaged, trailing, damagedZstd) = (
      plain + ".gz", plain + "-bad.gz", plain + "-tail", plain + ".zst"
    )
    defer { for path in [plain, truncated, damaged, trailing, damagedZstd] { unlink(path) } }
    try shell("gzip -c '\(plain)' | head -c 30000 > '\(truncated)'")
    try shell("gzip -c '\(plain)' > '\(trailing)' && printf 'garbage' >> '\(trailing)'")
    // Overwrite 200 bytes in the middle of the compressed data.
    try shell(
      "gzip -c '\(plain)' > '\(damaged)' && head -c 200 /dev/zero | tr '\\0' 'Z' | dd of='\(damaged)' bs=1 seek=20000 conv=notrunc 2>/dev/null"
    )
    try shell(
      "zstd -q -c '\(plain)' > '\(damagedZstd)' && head -c 200 /dev/zero | tr '\\0' 'Z' | dd of='\(damagedZstd)' bs=1 seek=20000 conv=notrunc 2>/dev/null"
    )
    for (path, trouble) in [
      (truncated, "truncated"), (damaged, "compressed data"), (trailing, "not gzip"), (damagedZstd, "compressed data"),
    ] {
      let error = await #expect(throws: (any Error).self) {
        _ = try await session.run(scanReader(2, paths: [path])).count
      }
      let text = "\(error.map { "\($0)" } ?? "no error")"
      #expect(text.contains(path) && text.contains(trouble), "\(path): \(text)")
    }
  }
}

/// `scanReader` over byte inputs its openers open (here subprocesses' output), and over
/// directories and patterns.
@Suite(.engine) struct ScanInputTests {
  let session = Session(executor: .local(procs: 2))

  /// The output of `command`, run by `/bin/sh` when the input is opened.
  static func commandOutput(_ command: String) throws -> any ByteInput {
    let child = try ChildProcess.spawn(
      executable: "/bin/sh", arguments: ["-c", command], environment: processEnvironment())
    close(child.stderr)
    Task { await child.reap() }
    // The input closes the pipe's reading end.
    return FileDescriptorInput(fd: child.stdout, name: command)
  }

  /// Three inputs opened when their tasks run: a plain stream, the same lines gzip-compressed
  /// and zstd-compressed through pipes (no file to seek in). Every line three times, over 1
  /// and 4 shards.
  @Test(arguments: [1, 4])
  func openedStreamsReadAsTheirLines(shards: Int) async throws {
    let lines = (0..<5000).map { "line \($0) " + String(repeating: "z", count: $0 % 50) }
    let plain = temporaryFile(lines.joined(separator: "\n"))
    defer { unlink(plain) }
    let openers: [@Sendable () throws -> any ByteInput] = [
      { try FileDescriptorInput(path: plain) },
      { try ScanInputTests.commandOutput("gzip -c '\(plain)'") },
      { try ScanInputTests.commandOutput("zstd -q -c '\(plain)'") },
    ]
    let result = try await session.run(scanReader(shards, openers: openers))
    #expect(Array(try result.rows()).sorted() == (lines + lines + lines).sorted())
  }

  /// A directory reads as its files (not hidden ones, not subdirectories), a pattern as its
  /// matches; a pattern matching nothing and an empty directory fail naming themselves.
  @Test func directoriesAndPatternsExpandToTheirFiles() async throws {
    let dir = NSTemporaryDirectory() + "/bigslice-scan-dir-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    for (name, text) in [("a.txt", "a1\na2\n"), ("b.txt", "b1\n"), ("c.log", "c1\n"), (".hidden", "h\n")] {
      try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8)
    }
    try "s\n".write(toFile: "\(dir)/sub/s.txt", atomically: true, encoding: .utf8)
    let all = try await session.run(scanReader(2, paths: [dir]))
    #expect(Array(try all.rows()).sorted() == ["a1", "a2", "b1", "c1"])
    let txt = try await session.run(scanReader(2, paths: ["\(dir)/*.txt"]))
    #expect(Array(try txt.rows()).sorted() == ["a1", "a2", "b1"])
    try FileManager.default.createDirectory(atPath: dir + "/empty", withIntermediateDirectories: true)
    for (path, says) in [("\(dir)/*.csv", "matches no file"), ("\(dir)/empty", "holds no file")] {
      let error = await #expect(throws: (any Error).self) { _ = try await session.run(scanReader(2, paths: [path])) }
      let text = "\(error.map { "\($0)" } ?? "no error")"
      #expect(text.contains(path) && text.contains(says), "\(text)")
    }
  }
}

/// Paths are expanded once per run, by the driver; its machines read the driver's list.
@Suite(.engine) struct InputExpansionTests {
  /// A compile given the driver's expansions (as a machine's is) uses them, whatever its own
  /// file system says; the driver's own compile of a pattern that matches nothing fails.
  @Test func aMachinesCompileUsesTheDriversFiles() throws {
    let slice = scanReader(2, paths: ["/nonexistent/*.txt"])
    var driver = Compiler()
    _ = driver.compile(slice.node)
    #expect("\(driver.inputProblem.map { "\($0)" } ?? "none")".contains("pattern /nonexistent/*.txt matches no file"))
    var machine = Compiler(inputs: [["/a", "/b"]])
    let tasks = machine.compile(slice.node)
    #expect(machine.inputProblem == nil)
    #expect(tasks.count == 2 && tasks.allSatisfy { Array($0.inputFiles.values) == [["/a", "/b"]] })
  }

  /// `/proc/self/task/*` names the threads of the process that expands it. The driver's list
  /// names threads no machine has, so a machine that reads it fails to open them; a machine
  /// that expanded the pattern itself would have read its own.
  @Test func machinesReadTheFilesTheDriverListed() async throws {
    let session = try session(Setup(engine: .processes, limit: Int.max))
    let error = await #expect(throws: (any Error).self) {
      _ = try await session.run(DelimitedFuncs.lines, 1, ["/proc/self/task/*/comm"])
    }
    let message = "\(error.map { "\($0)" } ?? "no error")"
    #expect(message.contains("/proc/self/task/") && message.contains("No such file or directory"), "\(message)")
  }
}
