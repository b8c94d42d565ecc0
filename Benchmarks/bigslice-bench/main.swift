import Bigmachine
import Bigslice
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

// First thing: the rpc benchmark's and the jobs' local machines re-run this binary, and in
// them this call serves forever (either kind of machine). In the driver it only sets up
// (machines start when `rpc` or `jobs --machines` asks).
Workloads.register()
let bigmachine = try await Bigmachine.start(
  system: LocalSystem(), services: [BenchService.self] + Session.machineServices)

// A run of `jobs --only scale`, in a child process of its own: it prints one JSON line.
if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == ScaleRun.command {
  do {
    try ScaleRun.main(arguments: Array(CommandLine.arguments.dropFirst(2)))
    exit(0)
  } catch {
    FileHandleStderr.write("bigslice-bench \(ScaleRun.command): \(error)\n")
    exit(1)
  }
}

let usage = """
  usage: bigslice-bench kernels [--rows N] [--repeat R] [--only hash,radix,combiner,blocks,delimited] [--json]
         bigslice-bench jobs [--rows N] [--repeat R] [--only W1,W3,scale] [--peers] [--machines M] [--json]
         bigslice-bench rpc [--rows N] [--bytes B] [--repeat R] [--json]

    kernels   the C kernels through their Swift wrappers (hash, radix sort, combiner, blocks,
              delimited text), each next to a baseline measured in the same run, on one core.
    jobs      the workloads of BENCHMARKS.md through the slice engine on 2 procs; with
              --peers, DuckDB and Polars run the same data in the same invocation
              (pip install -r Benchmarks/peers/requirements.txt) and checksums are compared;
              with --machines M, W1 and W3 run on M local worker processes (2 procs in
              all) next to the in-process executor, measured in the same invocation.
              W4, W6 and scale (long) run only when --only names them. W6 writes its 8 TSV files
              (plain and gzip) to /tmp/bigslice-w6 once, untimed. scale: W4's shuffle of 2M and
              20M rows (--rows: that size only) over 200000 keys on 64, 256, 1024 and 4096
              shards, in memory and under a 20 MB memory limit, each run a child process:
              wall time, files created, peak descriptors and peak RSS, against 64 shards.
    rpc       Bigmachine between this driver and local worker processes: small-call round trips
              (1 and 64 in flight) and streams each way, each next to raw loopback TCP
              between two threads measured in the same run.
    --rows    rows per kernel (default 100000000), per job (default: BENCHMARKS.md's), or
              calls per rpc measurement (default 20000)
    --bytes   bytes per rpc stream measurement (default 1073741824)
    --repeat  runs per measurement; the median is reported (default 3)
    --only    run only these kernels or jobs (comma-separated); W1.sum: W1's reduce(.sum) row alone
    --json    one JSON object per line: bench, rows, seconds, baseline, baseline_seconds,
              ratio (baseline/ours, above 1 when faster), peak_rss_bytes
  """

var args = Array(CommandLine.arguments.dropFirst())
var rows: Int? = nil
var peers = false
var repeats = 3
var json = false
var only: Set<String> = []
var command: String? = nil
var bytes = 1 << 30
var machines: Int? = nil
while !args.isEmpty {
  let arg = args.removeFirst()
  switch arg {
  case "--rows": rows = Int(args.isEmpty ? "" : args.removeFirst()) ?? -1
  case "--peers": peers = true
  case "--bytes": bytes = Int(args.isEmpty ? "" : args.removeFirst()) ?? -1
  case "--repeat": repeats = Int(args.isEmpty ? "" : args.removeFirst()) ?? -1
  case "--json": json = true
  case "--machines": machines = Int(args.isEmpty ? "" : args.removeFirst()) ?? -1
  case "--only": only = Set((args.isEmpty ? "" : args.removeFirst()).split(separator: ",").map(String.init))
  case "-h", "--help":
    print(usage)
    exit(0)
  default:
    if command == nil && !arg.hasPrefix("-") {
      command = arg
    } else {
      FileHandleStderr.write("bigslice-bench: unknown argument \(arg)\n\(usage)\n")
      exit(2)
    }
  }
}
guard (rows ?? 1) > 0, repeats > 0, bytes > 0, (machines ?? 1) > 0 else {
  FileHandleStderr.write("bigslice-bench: --rows, --repeat, --bytes and --machines take positive whole numbers\n")
  exit(2)
}

do {
  switch command {
  case "kernels":
    try KernelBenchmarks(rows: rows ?? 100_000_000, repeats: repeats, report: Reporter(json: json), only: only).run()
  case "rpc":
    try await RpcBenchmarks(
      calls: rows ?? 20_000, bytes: bytes, repeats: repeats, report: Reporter(json: json), bigmachine: bigmachine
    ).run()
  case "jobs":
    let jobs = JobBenchmarks(rows: rows, repeats: repeats, report: Reporter(json: json), peers: peers, only: only)
    if let machines {
      try jobs.onMachines(machines)
    } else {
      try jobs.run()
    }
  default:
    FileHandleStderr.write(usage + "\n")
    exit(2)
  }
} catch {
  FileHandleStderr.write("bigslice-bench: \(error)\n")
  exit(1)
}

enum FileHandleStderr {
  static func write(_ s: String) {
    var s = s
    s.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
  }
}
