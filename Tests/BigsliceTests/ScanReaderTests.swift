import Bigslice
import Frame
import SliceIO
import Testing

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
