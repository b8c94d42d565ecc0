import ArgumentParser
import Bigmachine
import Bigslice
import BigsliceOptions
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

/// `bigslice demo`: jobs that show the engine at work.
struct Demo: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Runs a demo job.",
    discussion: """
      Examples:
        bigslice demo wordcount README.md
        bigslice demo shuffle --rows 1000000 --keys 1000
        bigslice demo shuffle --rows 1000000 --keys 1000 --machines 2
      """,
    subcommands: [Wordcount.self, Shuffle.self]
  )
}

/// How a demo job runs: its shards, and the standard options (`SessionOptions`) with the
/// status display on by default.
struct JobOptions: ParsableArguments {
  @Option(help: "Shards of the job.")
  var shards = 8

  @OptionGroup var bigslice: SessionOptions

  /// The settings the flags, environment and config file give.
  func settings() throws -> SessionSettings {
    var shown = SessionSettings()
    shown.status = true
    let defaults = shown
    let options = bigslice
    return try ThreadPool.shared.blockingAwait { try await options.settings(defaults: defaults) }
  }

  /// A session with `settings`.
  func session(_ settings: SessionSettings) -> Session {
    let session = settings.session()
    if let url = session.debugURL {
      // On stderr, unbuffered, so it shows before the job ends even when stdout is a file.
      var line = "debug pages: \(url)\n"
      line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }
    return session
  }

  func validate() throws {
    guard shards > 0 else { throw ValidationError("--shards must be positive") }
  }
}

/// `bigslice demo wordcount`: the W5 workload.
struct Wordcount: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Counts the words of text files with a bigslice job.",
    discussion: """
      Counts the words of FILE (by default a text file it generates first: --words words of the \
      W5 workload, 10 a line, in $TMPDIR), showing the job's status, and prints the number of \
      distinct words and the 10 most frequent.

      Examples:
        bigslice demo wordcount --words 1000000
        bigslice demo wordcount README.md DESIGN.md --shards 4
        bigslice demo wordcount --words 5000000 --trace /tmp/wc.json
        bigslice demo wordcount --words 50000000 --debug-address :8080
        bigslice demo wordcount --words 20000000 --machines 2 --procs 1
      """
  )

  @Argument(help: "Text files to count (default: a generated file).")
  var files: [String] = []

  @Option(help: "Words to generate when no file is given.")
  var words = 10_000_000

  @OptionGroup var job: JobOptions

  func validate() throws {
    guard words > 0 else { throw ValidationError("--words must be positive") }
  }

  func run() throws {
    var files = self.files
    if files.isEmpty {
      let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
      let path = "\(dir)/bigslice-wordcount-\(words).txt"
      print("generating \(words) words into \(path) …")
      try WordCount.generate(path: path, words: words)
      files = [path]
    }
    let session = job.session(try job.settings())
    defer { session.shutdown() }
    let start = ContinuousClock.now
    let result = try session.run(WordCount.job, files, job.shards)
    var counts = Array(try result.rows())
    let elapsed = ContinuousClock.now - start
    counts.sort { $0.1 != $1.1 ? $0.1 > $1.1 : Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
    let total = counts.reduce(0) { $0 + $1.1 }
    print("\(total) words, \(counts.count) distinct, counted in \(elapsed)")
    print("top 10: " + counts.prefix(10).map { "\($0.0):\($0.1)" }.joined(separator: ","))
  }
}

/// `bigslice demo shuffle`: the W1/W4 workload.
struct Shuffle: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Sums generated (key, value) rows by key: a reduce with a shuffle.",
    discussion: """
      Sums the values of --rows generated (key, value) rows over --keys keys (the W1/W4 \
      workload of BENCHMARKS.md): a reduce with map-side combining and a shuffle, under a \
      memory limit if given. Prints one line of key=value pairs: rows, groups, the sum of \
      values, the sum of key*value (wrapping), seconds, bytes spilled, the RSS before the job \
      and the peak RSS (and with --machines, each machine's peak RSS).

      Examples:
        bigslice demo shuffle --rows 1000000
        bigslice demo shuffle --rows 30000000 --keys 3000000 --memory-limit 200000000
        bigslice demo shuffle --rows 10000000 --procs 2 --no-status --trace /tmp/shuffle.json
        bigslice demo shuffle --rows 30000000 --keys 3000000 --machines 2 --procs 1
      """
  )

  @Option(help: "Rows to generate.")
  var rows = 10_000_000

  @Option(help: "Distinct keys the rows are drawn from (default: rows / 10).")
  var keys: Int?

  @OptionGroup var job: JobOptions

  func validate() throws {
    guard rows > 0 else { throw ValidationError("--rows must be positive") }
    if let keys, keys <= 0 { throw ValidationError("--keys must be positive") }
  }

  func run() throws {
    let startRSS = MemoryInfo.current().processResidentBytes
    let settings = try job.settings()
    let session = job.session(settings)
    defer { session.shutdown() }
    let start = ContinuousClock.now
    let result = try session.run(Workloads.w4, rows, keys ?? max(rows / 10, 1), job.shards)
    var sum = 0
    var keySum = 0
    var groups = 0
    var scanner = result.makeRowReader()
    while let (key, value) = try scanner.next() {
      groups += 1
      sum &+= value
      keySum &+= key &* value
    }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    var line =
      "rows=\(rows) groups=\(groups) sum=\(sum) keysum=\(keySum) seconds=\(seconds) spilled=\(session.spilledBytes) start_rss=\(startRSS) peak_rss=\(MemoryInfo.current().processPeakResidentBytes)"
    if settings.executor == .machines {
      line += " machine_peak_rss=" + session.machinePeakResidentBytes().map { String($0 ?? 0) }.joined(separator: ",")
    }
    print(line)
  }
}
