import Bigmachine
import Bigslice
import CSupport
import Foundation
import Frame
import Synchronization
import Workloads

struct JobBenchmarks {
  var rows: Int?
  var repeats: Int
  var report: Reporter
  var peers: Bool
  var only: Set<String>
  let session = Session(executor: .local(procs: 2))
  let shards = 8
  /// How long each W1 or W3 run took to scan its result, after the job.
  let scanTimes = ScanTimes()
  /// Each peer's run of a workload, made once per invocation however many rows compare to it.
  let peerRuns = PeerRuns()

  func run() throws {
    report.header("Jobs: 2 procs, median of \(repeats)\(peers ? ", peers in the same run" : "")")
    if only.isEmpty || only.contains("W1") || only.contains("W1.sum") { try w1() }
    if only.isEmpty || only.contains("W2") { try w2() }
    if only.isEmpty || only.contains("W3") { try w3() }
    if only.isEmpty || only.contains("W5") { try w5() }
    if only.contains("W6") { try w6() }
    if only.isEmpty || only.contains("W7") { try w7() }
    if only.contains("W4") { try w4() }
    if only.contains("scale") { try ScaleBenchmarks(rows: rows, repeats: repeats, report: report).run() }
  }

  /// W4: W1's shape at 300M rows and 30M keys under a 2 GiB memory limit, which covers task
  /// outputs, combiner tables and the result (run alone with `--only W4`: peak RSS is the
  /// process's).
  func w4() throws {
    let n = rows ?? 300_000_000
    let limited = Session(executor: .local(procs: 2), memoryLimit: 2 << 30)
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try limited.run(Workloads.w4, n, n / 10, 16)
      var sum: UInt64 = 0
      var reader = result.makeRowReader()
      while let (key, value) = try reader.next() {
        sum &+= UInt64(bitPattern: Int64(key)) &* UInt64(bitPattern: Int64(value))
      }
      checksum = "groups=\(try result.count) keysum=\(sum)"
    }
    report.note(
      "W4: spilled \(limited.spilledBytes / 1_000_000) MB, \(limited.spilledRuns) reduce-side combiner spills; peak RSS \(peakRSS() / 1_000_000) MB"
    )
    try compare("W4 group-by-sum, 2 GiB memory limit", "W4", rows: n, seconds: seconds, checksum: checksum)
  }

  /// W1 and W3 on `count` local worker processes (2 procs in all, as in-process), each next
  /// to the in-process executor measured in the same invocation. The machines start, and
  /// compile a first job, before anything is timed.
  func onMachines(_ count: Int) throws {
    let procs = max(1, 2 / count)
    report.header("Jobs on \(count) local worker processes of \(procs) procs against in-process, median of \(repeats)")
    let cluster = Session(executor: .machines(system: .local, count: count, procs: procs))
    defer { cluster.shutdown() }
    _ = try timeW1(cluster, Workloads.w1, rows: 1000)
    for workload in ["W1", "W3"] where only.isEmpty || only.contains(workload) {
      let n = rows ?? (workload == "W1" ? 100_000_000 : 20_000_000)
      let time = { (s: Session) in
        workload == "W1" ? try timeW1(s, Workloads.w1, rows: n) : try timeW3(s, rows: n)
      }
      scanTimes.times = []
      let (inProcess, expected) = try time(session)
      let inProcessScan = scanTimes.median
      scanTimes.times = []
      let (seconds, checksum) = try time(cluster)
      let scan = scanTimes.median
      let agree = checksum == expected ? "checksums agree" : "CHECKSUM MISMATCH: \(checksum), in-process \(expected)"
      report.emit(
        Measurement(
          bench: "\(workload) on \(count) machines", rows: workload == "W1" ? n : 2 * n, seconds: seconds,
          baseline: "in-process", baselineSeconds: inProcess,
          notes:
            "\(agree); \(fmt(seconds / inProcess, 2))× the in-process time; scanning the result took \(fmt(scan, 2)) s of it (in-process \(fmt(inProcessScan, 2)) s)"
        ))
    }
  }

  func w1() throws {
    let n = rows ?? 100_000_000
    for (label, f) in [
      ("W1 group-by-sum, reduce(.sum)", Workloads.w1), ("W1 group-by-sum, reduce(&+)", Workloads.w1Closure),
    ] {
      let (seconds, checksum) = try timeW1(session, f, rows: n)
      try compare(label, "W1", rows: n, seconds: seconds, checksum: checksum)
      if only.contains("W1.sum") && !only.contains("W1") { return }
    }
    let (seconds, checksum) = try timeW1TwoColumns(rows: n)
    try compare("W1 two-column key", "W1x2", rows: n, seconds: seconds, checksum: checksum)
    let (structSeconds, structChecksum) = try timeW1StructKey(Workloads.w1StructKey, rows: n) { $0.high << 10 | $0.low }
    try compare("W1 struct key", "W1x2", rows: n, seconds: structSeconds, checksum: structChecksum)
    let (codableSeconds, codableChecksum) = try timeW1StructKey(Workloads.w1CodableKey, rows: n) {
      $0.high << 10 | $0.low
    }
    try compare("W1 Codable struct key", "W1x2", rows: n, seconds: codableSeconds, checksum: codableChecksum)
  }

  /// W7: W1's rows through three user closures and a built-in sum, against the same
  /// generator and closures in a plain Swift loop on 2 threads, summing into an array per
  /// thread.
  func w7() throws {
    let n = rows ?? 100_000_000
    let keys = min(n, 1_000_000)
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try session.run(Workloads.w7, n, keys, shards)
      // Sums of halves are exact in a Double, so twice each is an exact integer.
      var sum = 0
      var groups = 0
      var reader = result.makeRowReader()
      while let (key, value) = try reader.next() {
        sum &+= key &* Int(value * 2)
        groups += 1
      }
      checksum = "groups=\(groups) keysum=\(sum)"
    }
    var loopChecksum = ""
    // The engine's generator takes the remainder so too.
    let remainder = Remainder(UInt64(keys))
    let loop = median(repeats) {
      // One half of the rows per thread, each summing into its own array.
      var sums = [[Double]](repeating: [], count: 2)
      sums.withUnsafeMutableBufferPointer { out in
        nonisolated(unsafe) let out = out
        DispatchQueue.concurrentPerform(iterations: 2) { half in
          var local = [Double](repeating: 0, count: 1000)
          for i in (half * n / 2)..<((half + 1) * n / 2) {
            let (key, value) = Workloads.row(i, keys: remainder, seed: 0)
            let (k, v) = Workloads.W7.first(key, value)
            guard Workloads.W7.keep(k, v) else { continue }
            let (k2, x) = Workloads.W7.second(k, v)
            local[k2] += x
          }
          out[half] = local
        }
      }
      var sum = 0
      var groups = 0
      for k in 0..<1000 where sums[0][k] != 0 || sums[1][k] != 0 {
        sum &+= k &* Int((sums[0][k] + sums[1][k]) * 2)
        groups += 1
      }
      loopChecksum = "groups=\(groups) keysum=\(sum)"
    }
    let agree =
      checksum == loopChecksum ? "checksums agree" : "CHECKSUM MISMATCH: ours \(checksum), loop \(loopChecksum)"
    report.emit(
      Measurement(
        bench: "W7 closures map → filter → map, sum", rows: n, seconds: seconds, baseline: "plain loop, 2 threads",
        baselineSeconds: loop, notes: agree))
  }

  /// The median time of W1 keyed on two columns, and W1's checksum of its rows (the key put
  /// back together from its columns).
  func timeW1TwoColumns(rows n: Int) throws -> (Double, String) {
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try session.run(Workloads.w1TwoColumns, n, min(n, 1_000_000), shards)
      var sum: UInt64 = 0
      var groups = 0
      var reader = result.makeRowReader()
      while let (high, low, value) = try reader.next() {
        sum &+= UInt64(bitPattern: Int64(high << 10 | low)) &* UInt64(bitPattern: Int64(value))
        groups += 1
      }
      checksum = "groups=\(groups) keysum=\(sum)"
    }
    return (seconds, checksum)
  }

  /// The median time of W1 keyed on a struct (by `f`), and W1's checksum of its rows (`key`
  /// puts W1's key back together).
  func timeW1StructKey<K>(_ f: Func<K, Int>, rows n: Int, key: (K) -> Int) throws -> (Double, String) {
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try session.run(f, n, min(n, 1_000_000), shards)
      var sum: UInt64 = 0
      var groups = 0
      var reader = result.makeRowReader()
      while let (k, value) = try reader.next() {
        sum &+= UInt64(bitPattern: Int64(key(k))) &* UInt64(bitPattern: Int64(value))
        groups += 1
      }
      checksum = "groups=\(groups) keysum=\(sum)"
    }
    return (seconds, checksum)
  }

  /// The median time of W1 (by `f`) on `session`, and its checksum.
  func timeW1(_ session: Session, _ f: Func<Int, Int>, rows n: Int) throws -> (Double, String) {
    try timeSums { try session.run(f, n, min(n, 1_000_000), shards) }
  }

  /// The median time of `job` and the W1 checksum of its (key, sum) rows, scanned in the time.
  func timeSums(_ job: () throws -> SliceResult<Int, Int>) throws -> (Double, String) {
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try job()
      let scanned = ContinuousClock.now
      var sum: UInt64 = 0
      var groups = 0
      var reader = result.makeRowReader()
      while let (key, value) = try reader.next() {
        sum &+= UInt64(bitPattern: Int64(key)) &* UInt64(bitPattern: Int64(value))
        groups += 1
      }
      scanTimes.times.append(elapsedSeconds(since: scanned))
      checksum = "groups=\(groups) keysum=\(sum)"
    }
    return (seconds, checksum)
  }

  func w2() throws {
    let n = rows ?? 100_000_000
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try session.run(Workloads.w2, n, shards)
      var count = 0
      var sorted = true
      var previous = Int.min
      var xor: UInt64 = 0
      for frame in try result.frames {
        frame.columns[0].scalars(Int.self).withUnsafeBufferPointer { keys in
          for (i, key) in keys.enumerated() {
            if key < previous { sorted = false }
            previous = key
            if (count + i) % 1_000_000 == 0 { xor ^= UInt64(bitPattern: Int64(key)) }
          }
        }
        count += frame.count
      }
      checksum = "count=\(count) sorted=\(sorted) xor=\(xor)"
    }
    try compare("W2 sort by key", "W2", rows: n, seconds: seconds, checksum: checksum)
  }

  /// W5: the word count of the W5 text, written once (untimed) to the peers' file.
  /// W6: W1's rows as 8 TSV files (written once, untimed, to /tmp/bigslice-w6), read as
  /// typed columns and summed by key; then the same over the files gzip-compressed, against
  /// the peers and against decompressing those files alone with ISA-L on 2 threads.
  func w6() throws {
    let n = rows ?? 100_000_000
    let keys = min(n, 1_000_000)
    let dir = "/tmp/bigslice-w6"
    let start = ContinuousClock.now
    if try DelimitedW6.ensure(session, dir: dir, rows: n, keys: keys) {
      report.note("W6: wrote \(dir) (\(n) rows, plain and gzip) in \(ContinuousClock.now - start)")
    }
    // The files hold W1's rows: reading them must give W1's answer.
    let w1Checksum = try ScanTimes.keep(scanTimes) { try timeW1(session, Workloads.w1, rows: n).1 }
    for (label, paths, mode) in [
      ("W6 TSV files, read and summed", DelimitedW6.plainPaths(dir), "plain"),
      ("W6 gzip TSV files, read and summed", DelimitedW6.gzipPaths(dir), "gzip"),
    ] {
      let (seconds, checksum) = try timeSums { try session.run(DelimitedW6.job, paths, shards) }
      let wrong = checksum == w1Checksum ? "" : "CHECKSUM DIFFERS FROM W1'S (\(w1Checksum)): "
      try compare(
        label, "W6", rows: n, seconds: seconds, checksum: wrong + checksum,
        peerArguments: ["--mode", mode, "--data-dir", dir])
      if mode == "gzip" {
        var bytes = 0
        let alone = try median(repeats) { bytes = try decompressAlone(paths) }
        report.emit(
          Measurement(
            bench: label, rows: n, seconds: seconds, baseline: "ISA-L decompression alone", baselineSeconds: alone,
            notes: "\(bytes / 1_000_000) MB of text on 2 threads; target: at most 1.2× the decompression"))
      }
    }
  }

  /// Decompresses the gzip files at `paths` on 2 threads with ISA-L, as a reader does, and
  /// drops the bytes; returns how many there were.
  func decompressAlone(_ paths: [String]) throws -> Int {
    let totals = Mutex<[Int?]>([nil, nil])
    DispatchQueue.concurrentPerform(iterations: 2) { half in
      var total = 0
      for i in stride(from: half, to: paths.count, by: 2) {
        guard let n = JobBenchmarks.gunzipCount(paths[i]) else { return }
        total += n
      }
      totals.withLock { $0[half] = total }
    }
    let done = totals.withLock { $0 }
    guard let first = done[0], let second = done[1] else { throw DemoError("W6: cannot decompress \(paths)") }
    return first + second
  }

  /// The bytes the gzip file at `path` decompresses to, read in 1 MiB pieces through
  /// `bs_decomp` into a 1 MiB buffer that is overwritten; nil when it cannot be read.
  static func gunzipCount(_ path: String) -> Int? {
    guard let file = fopen(path, "rb"), let decomp = bs_decomp_new(BS_DECOMP_GZIP) else { return nil }
    defer {
      fclose(file)
      bs_decomp_free(decomp)
    }
    let size = 1 << 20
    let input = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
    let output = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
    defer {
      input.deallocate()
      output.deallocate()
    }
    var total = 0
    var start = 0
    var end = 0
    while true {
      if start == end {
        start = 0
        end = fread(input, 1, size, file)
        if end == 0 { return total }
      }
      var used = 0
      var made = 0
      let status = bs_decomp_run(decomp, input + start, end - start, &used, output, size, &made)
      guard status == BS_DECOMP_MORE || status == BS_DECOMP_END else { return nil }
      start += used
      total += made
    }
  }

  func w5() throws {
    let n = rows ?? 100_000_000
    let path = "/tmp/bigslice-w5.txt"
    let start = ContinuousClock.now
    if try WordCount.ensure(path: path, words: n) {
      report.note("W5: wrote \(path) (\(n) words) in \(ContinuousClock.now - start)")
    }
    var checksum = ""
    let seconds = try median(repeats) {
      // The 10 most frequent (count descending, then word ascending) in one pass, as the
      // peers' queries do (ORDER BY … LIMIT 10), rather than sorting every word.
      var distinct = 0
      var top: [(word: String, count: Int)] = []
      func before(_ a: (word: String, count: Int), _ b: (word: String, count: Int)) -> Bool {
        a.count != b.count ? a.count > b.count : a.word.utf8.lexicographicallyPrecedes(b.word.utf8)
      }
      var reader = try session.run(WordCount.job, [path], shards).makeRowReader()
      while let row = try reader.next() {
        distinct += 1
        guard top.count < 10 || before(row, top[9]) else { continue }
        top.insert(row, at: top.firstIndex { before(row, $0) } ?? top.count)
        if top.count > 10 { top.removeLast() }
      }
      checksum = "distinct=\(distinct) top=" + top.map { "\($0.word):\($0.count)" }.joined(separator: ",")
    }
    try compare("W5 word count", "W5", rows: n, seconds: seconds, checksum: checksum)
  }

  func w3() throws {
    let n = rows ?? 20_000_000
    let (seconds, checksum) = try timeW3(session, rows: n)
    try compare("W3 join by cogroup", "W3", rows: 2 * n, seconds: seconds, checksum: checksum, peerRows: n)
  }

  /// The median time of W3 on `session`, and its checksum.
  func timeW3(_ session: Session, rows n: Int) throws -> (Double, String) {
    var checksum = ""
    let seconds = try median(repeats) {
      let result = try session.run(Workloads.w3, n, n / 4, shards)
      let scanned = ContinuousClock.now
      var count = 0
      var reader = result.makeRowReader()
      while let (_, a, b) = try reader.next() { count += a.count * b.count }
      scanTimes.times.append(elapsedSeconds(since: scanned))
      checksum = "count=\(count)"
    }
    return (seconds, checksum)
  }

  /// Reports our time next to each peer's, run now, on the same data.
  func compare(
    _ label: String, _ workload: String, rows: Int, seconds: Double, checksum: String, peerRows: Int? = nil,
    peerArguments: [String] = []
  ) throws {
    guard peers else {
      report.emit(
        Measurement(
          bench: label, rows: rows, seconds: seconds, baseline: "none", baselineSeconds: seconds, notes: checksum))
      return
    }
    for engine in JobBenchmarks.peerEngines {
      let key = ([engine, workload, String(peerRows ?? rows)] + peerArguments).joined(separator: " ")
      let run =
        peerRuns.runs[key]
        ?? runPeer(engine, workload, rows: peerRows ?? rows, arguments: peerArguments)
      peerRuns.runs[key] = run
      guard case .success(let peer) = run else {
        if case .failure(let why) = run { report.note("\(label): \(engine) did not run: \(why.description)") }
        continue
      }
      let agree =
        peer.checksum == checksum
        ? "checksums agree" : "CHECKSUM MISMATCH: ours \(checksum), \(engine) \(peer.checksum)"
      report.emit(
        Measurement(
          bench: label, rows: rows, seconds: seconds, baseline: "\(engine) query", baselineSeconds: peer.seconds,
          notes: "\(agree); \(engine) generation \(fmt(peer.gen, 2)) s, peak RSS \(peer.rss / 1_000_000) MB"))
    }
  }

  /// The peers `--peers` runs, in the order of the report.
  static let peerEngines = ["duckdb", "polars", "chdb", "datafusion"]

  /// A peer's median time, generation time, peak RSS and checksum, or why it did not run (the
  /// last line it wrote on stderr).
  func runPeer(_ engine: String, _ workload: String, rows: Int, arguments: [String] = [])
    -> Swift.Result<
      (seconds: Double, gen: Double, rss: Int, checksum: String), DemoError
    >
  {
    let arguments =
      [
        "python3", "Benchmarks/peers/peers.py", "--engine", engine, "--workload", workload, "--rows", String(rows),
        "--repeat", String(repeats), "--json",
      ] + arguments
    let status: Int32
    let output: String
    let said: String
    do { (status, output, said) = try ChildProcess.runBlocking("/usr/bin/env", arguments) } catch {
      return .failure(DemoError("python3 cannot start: \(error) (pip install -r Benchmarks/peers/requirements.txt)"))
    }
    guard status == 0,
      let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
      let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
      let seconds = object["seconds"] as? Double, let checksum = object["checksum"] as? String
    else {
      let last = said.split(separator: "\n").last.map(String.init) ?? ChildProcess.describe(status)
      return .failure(DemoError(last))
    }
    return .success(
      (seconds, object["gen_seconds"] as? Double ?? 0, object["peak_rss_bytes"] as? Int ?? 0, checksum))
  }
}

/// The peers' runs of one invocation, by engine, workload, rows and arguments.
final class PeerRuns {
  var runs: [String: Swift.Result<(seconds: Double, gen: Double, rss: Int, checksum: String), DemoError>] = [:]
}

/// Times collected while a benchmark runs (the benchmark struct's methods do not mutate it).
final class ScanTimes {
  var times: [Double] = []
  var median: Double { times.isEmpty ? 0 : times.sorted()[times.count / 2] }

  /// Runs `body` and puts back the times it added.
  static func keep<T>(_ times: ScanTimes, _ body: () throws -> T) rethrows -> T {
    let kept = times.times
    defer { times.times = kept }
    return try body()
  }
}
