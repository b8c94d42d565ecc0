import ArgumentParser
import Bigslice
import BigsliceOptions
import Testing

#if canImport(Glibc)
  import Glibc
#endif

// The README's example, verbatim but for the path: if it stops compiling, this test does.
let wordCount = Func("example.wordcount") { (paths: [String]) -> Slice<String, Int> in
  scanReader(8, paths: paths)  // lines, split by byte range
    .flatMap(String.self) { (out: RowEmitter<String>, line: String) in
      for word in line.split(separator: " ") { out.emit(String(word)) }
    }
    .count()  // map to (word, 1), reduce(.sum) in C
}

// The README's command with the standard options, verbatim but for `@main`.
struct Counts: AsyncParsableCommand {
  @OptionGroup var bigslice: SessionOptions  // --executor, --machines, --procs, --memory-limit, …
  @Argument var paths: [String]

  mutating func run() async throws {
    let session = try await bigslice.session()
    defer { session.shutdown() }
    let result = try await session.run(wordCount, paths)
    print(try result.count, "distinct words")
  }
}

@Suite(.engine) struct ReadmeExampleTests {
  @Test func theReadmeCommandRunsWithItsOptions() async throws {
    let path = temporaryFile("a b a\nc a b\n")
    defer { unlink(path) }
    var command = try Counts.parse(["--procs", "1", "--no-status", "--memory-limit", "64M", path])
    #expect(command.paths == [path])
    try await command.run()
  }

  @Test func theReadmeWordCountRunsAndCounts() async throws {
    let path = temporaryFile("a b a\nc a b\n")
    defer { unlink(path) }
    let session = Session(executor: .local(procs: 2), status: false)
    let result = try await session.run(wordCount, [path])
    var counts: [String: Int] = [:]
    var rows = result.makeRowReader()
    while let (word, count) = try rows.next() { counts[word] = count }
    #expect(counts == ["a": 3, "b": 2, "c": 1])
  }
}
