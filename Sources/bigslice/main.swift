import Bigslice
import Frame
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

let usage = """
  usage: bigslice demo wordcount [FILE ...] [--words N] [--shards S] [--procs P]

    Counts the words of FILE (by default a text file it generates first: N words of the
    W5 workload, 10 a line, in $TMPDIR) with a bigslice job, showing a progress line, and
    prints the number of distinct words and the 10 most frequent.

    --words   words to generate when no FILE is given (default 10000000)
    --shards  shards of the job (default 8)
    --procs   threads (default 2)

  example: bigslice demo wordcount --words 1000000
  """

func fail(_ message: String) -> Never {
  var text = "bigslice: \(message)\n"
  text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
  exit(2)
}

var args = Array(CommandLine.arguments.dropFirst())
guard args.count >= 2, args[0] == "demo", args[1] == "wordcount" else {
  if args.contains("-h") || args.contains("--help") {
    print(usage)
    exit(0)
  }
  fail("unknown command\n\(usage)")
}
args.removeFirst(2)
var files: [String] = []
var words = 10_000_000
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
  case "--words": words = number()
  case "--shards": shards = number()
  case "--procs": procs = number()
  case "-h", "--help":
    print(usage)
    exit(0)
  default:
    if arg.hasPrefix("-") { fail("unknown option \(arg)\n\(usage)") }
    files.append(arg)
  }
}

do {
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
} catch {
  fail("\(error)")
}
