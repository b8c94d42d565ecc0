import Bigmachine
import Bigslice
import Frame
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

let usage = """
  usage: bigslice demo wordcount [FILE ...] [--words N] [--shards S] [--procs P]
         bigslice demo shuffle [--rows N] [--keys K] [--shards S] [--procs P] [--memory-limit BYTES]

    wordcount  Counts the words of FILE (by default a text file it generates first: N words
               of the W5 workload, 10 a line, in $TMPDIR) with a bigslice job, showing a
               progress line, and prints the number of distinct words and the 10 most frequent.
    shuffle    Sums the values of N generated (key, value) rows over K keys (the W1/W4
               workload of BENCHMARKS.md): a reduce with map-side combining and a shuffle,
               under a memory limit if given. Prints one line of key=value pairs: rows, groups,
               the sum of values, the sum of key*value (wrapping), seconds, bytes spilled,
               the RSS before the job and the peak RSS.

    --words         words to generate when no FILE is given (default 10000000)
    --rows          rows to generate (default 10000000)
    --keys          distinct keys drawn from (default rows / 10)
    --shards        shards of the job (default 8)
    --procs         threads (default 2)
    --memory-limit  bytes the job may hold in memory before it spills (default: no limit)

  examples: bigslice demo wordcount --words 1000000
            bigslice demo shuffle --rows 30000000 --keys 3000000 --memory-limit 200000000
  """

func fail(_ message: String) -> Never {
  var text = "bigslice: \(message)\n"
  text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
  exit(2)
}

var args = Array(CommandLine.arguments.dropFirst())
if args.contains("-h") || args.contains("--help") {
  print(usage)
  exit(0)
}
guard args.count >= 2, args[0] == "demo", ["wordcount", "shuffle"].contains(args[1]) else {
  fail("unknown command\n\(usage)")
}
let command = args[1]
args.removeFirst(2)
var files: [String] = []
var words = 10_000_000
var rows = 10_000_000
var keys: Int?
var memoryLimit: Int?
var shards = 8
var procs = 2
while !args.isEmpty {
  let arg = args.removeFirst()
  func number() -> Int {
    guard let value = args.isEmpty ? nil : Int(args.removeFirst()), value > 0 else {
      fail("\(arg) takes a positive whole number")
    }
    return value
  }
  switch arg {
  case "--words" where command == "wordcount": words = number()
  case "--rows" where command == "shuffle": rows = number()
  case "--keys" where command == "shuffle": keys = number()
  case "--memory-limit" where command == "shuffle": memoryLimit = number()
  case "--shards": shards = number()
  case "--procs": procs = number()
  default:
    if arg.hasPrefix("-") || command != "wordcount" { fail("unknown option \(arg) for \(command)\n\(usage)") }
    files.append(arg)
  }
}

@MainActor func wordcount() throws {
  if files.isEmpty {
    let dir = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    let path = "\(dir)/bigslice-wordcount-\(words).txt"
    print("generating \(words) words into \(path) …")
    try WordCount.generate(path: path, words: words)
    files = [path]
  }
  let session = Session(executor: .local(procs: procs), status: true)
  let start = ContinuousClock.now
  let result = try session.run(WordCount.job, files, shards)
  var counts = Array(result)
  let elapsed = ContinuousClock.now - start
  counts.sort { $0.1 != $1.1 ? $0.1 > $1.1 : Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }
  let total = counts.reduce(0) { $0 + $1.1 }
  print("\(total) words, \(counts.count) distinct, counted in \(elapsed)")
  print("top 10: " + counts.prefix(10).map { "\($0.0):\($0.1)" }.joined(separator: ","))
}

@MainActor func shuffle() throws {
  let startRSS = MemoryInfo.current().processResidentBytes
  let session = Session(executor: .local(procs: procs), memoryLimit: memoryLimit, status: true)
  let start = ContinuousClock.now
  let result = try session.run(Workloads.w4, rows, keys ?? max(rows / 10, 1), shards)
  var sum = 0
  var keySum = 0
  var groups = 0
  var scanner = result.makeIterator()
  while let (key, value) = scanner.next() {
    groups += 1
    sum &+= value
    keySum &+= key &* value
  }
  let elapsed = ContinuousClock.now - start
  let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  print(
    "rows=\(rows) groups=\(groups) sum=\(sum) keysum=\(keySum) seconds=\(seconds) spilled=\(session.spilledBytes) start_rss=\(startRSS) peak_rss=\(MemoryInfo.current().processPeakResidentBytes)"
  )
}

do {
  if command == "wordcount" { try wordcount() } else { try shuffle() }
} catch {
  fail("\(error)")
}
