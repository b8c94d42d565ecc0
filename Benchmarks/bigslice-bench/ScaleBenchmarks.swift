import Bigmachine
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// `jobs --only scale`: how W4's shuffle (the one of `bigslice demo shuffle`) bears more
/// shards. 2M and 20M rows (or `--rows`) over 200,000 keys on 64, 256, 1024 and 4096 shards,
/// in memory and under a 20 MB memory limit, on 2 procs. Each run is a child process of its
/// own (`ScaleRun`), which reports its wall time, the files it created, its peak descriptors
/// and its peak RSS. A configuration reports the median time of its runs and the largest of
/// the rest, against the 64-shard run of the same size and mode; a limited one against the
/// in-memory 64-shard run of the same size too. Every run's checksum must equal the in-memory
/// 64-shard run's of the same size.
struct ScaleBenchmarks {
  var rows: Int?
  var repeats: Int
  var report: Reporter
  let keys = 200_000
  let shardCounts = [64, 256, 1024, 4096]
  let memoryLimit = 20_000_000

  /// Runs every configuration, reporting each as it ends.
  /// - Throws: `ScaleError.runFailed` as soon as a child fails; `.checksumMismatch` at the
  ///   end, naming every run whose checksum differed.
  func run() throws {
    report.header(
      "Scale: W4's shuffle over \(keys) keys, 2 procs, each run a child process, median of \(repeats)")
    report.note(
      "in memory and under a \(memoryLimit / 1_000_000) MB memory limit; the baseline is the 64-shard run of the same size and mode\n"
    )
    let executable = try Self.executable()
    var mismatches: [String] = []
    for n in rows.map({ [$0] }) ?? [2_000_000, 20_000_000] {
      var expected: String? = nil
      var inMemoryBase: Double? = nil
      for limit in [nil, memoryLimit] {
        var base: Double? = nil
        for shards in shardCounts {
          let name = "scale \(n) rows \(shards) shards" + (limit == nil ? "" : ", limited")
          let runs = try (0..<max(1, repeats)).map { _ in
            try child(executable, name: name, rows: n, shards: shards, limit: limit)
          }
          let seconds = runs.map(\.seconds).sorted()[runs.count / 2]
          expected = expected ?? runs[0].checksum
          let wrong = runs.filter { $0.checksum != expected }
          if !wrong.isEmpty { mismatches.append("\(name): \(wrong[0].checksum), expected \(expected!)") }
          base = base ?? seconds
          if limit == nil && inMemoryBase == nil { inMemoryBase = seconds }
          report.emit(
            measurement(
              name, runs: runs, seconds: seconds, base: base!, inMemoryBase: limit == nil ? nil : inMemoryBase!,
              checksumsAgree: wrong.isEmpty))
        }
      }
    }
    if !mismatches.isEmpty { throw ScaleError.checksumMismatch(mismatches) }
  }

  /// The row of one configuration: its median time against `base` (the 64-shard time of the
  /// same size and mode) and, when limited, `inMemoryBase`; the most files, descriptors and
  /// RSS of its runs.
  private func measurement(
    _ name: String, runs: [ScaleRun], seconds: Double, base: Double, inMemoryBase: Double?, checksumsAgree: Bool
  ) -> Measurement {
    let first = runs[0]
    let files = runs.map(\.filesCreated).max()!
    let exact = !runs.contains { $0.filesCreatedOverflowed }
    let peakDescriptors = runs.map(\.peakDescriptors).max()!
    let idleDescriptors = runs.map(\.idleDescriptors).max()!
    let peakRSS = runs.map(\.peakRSSBytes).max()!
    let spilled = runs.map(\.spilledBytes).max()!
    var notes =
      "\(files)\(exact ? "" : "+") files, \(peakDescriptors) descriptors at peak (\(idleDescriptors) idle), "
      + "peak RSS \(peakRSS / 1_000_000) MB, spilled \(spilled / 1_000_000) MB; \(fmt(seconds / base, 2))× the 64-shard time"
    var fields: [(name: String, json: String)] = [
      ("shards", "\(first.shards)"), ("keys", "\(first.keys)"),
      ("memory_limit_bytes", first.memoryLimit.map(String.init) ?? "null"), ("files_created", "\(files)"),
      ("files_created_exact", "\(exact)"), ("peak_descriptors", "\(peakDescriptors)"),
      ("idle_descriptors", "\(idleDescriptors)"), ("spilled_bytes", "\(spilled)"),
      ("checksum", "\"\(first.checksum)\""), ("checksum_ok", "\(checksumsAgree)"),
    ]
    if let inMemoryBase {
      notes += ", \(fmt(seconds / inMemoryBase, 2))× the in-memory 64-shard time"
      fields += [
        ("in_memory_baseline_seconds", fmt(inMemoryBase, 4)), ("in_memory_ratio", fmt(inMemoryBase / seconds, 3)),
      ]
    }
    notes += checksumsAgree ? "; checksums agree" : "; CHECKSUM MISMATCH: \(first.checksum)"
    return Measurement(
      bench: name, rows: first.rows, seconds: seconds,
      baseline: "scale \(first.rows) rows 64 shards" + (first.memoryLimit == nil ? "" : ", limited"),
      baselineSeconds: base, notes: notes, peakRSSBytes: peakRSS, fields: fields)
  }

  /// One run in a child process of `executable` (this binary).
  /// - Throws: `ScaleError.runFailed` when the child fails or prints no run.
  private func child(_ executable: String, name: String, rows n: Int, shards: Int, limit: Int?) throws -> ScaleRun {
    let arguments =
      [ScaleRun.command, "--rows", String(n), "--keys", String(keys), "--shards", String(shards)]
      + (limit.map { ["--memory-limit", String($0)] } ?? [])
    let (status, output, errors) = try ChildProcess.runBlocking(executable, arguments)
    FileHandle.standardError.write(Data(errors.utf8))
    guard status == 0,
      let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
      let run = try? JSONDecoder().decode(ScaleRun.self, from: Data(line.utf8))
    else {
      throw ScaleError.runFailed(configuration: name, status: ChildProcess.describe(status))
    }
    return run
  }

  /// The path of this binary, which the children run.
  private static func executable() throws -> String {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { throw ScaleError.noExecutablePath(errno: errno) }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// Why the scale benchmark failed.
enum ScaleError: Error, CustomStringConvertible {
  /// The hidden subcommand's arguments (after `scale-one`) were not `--rows N --keys K
  /// --shards S [--memory-limit B]` with positive whole numbers.
  case badArguments([String])
  /// A directory could not be made in `path`.
  case cannotCreate(path: String, errno: Int32)
  /// This binary's path could not be read from `/proc/self/exe`.
  case noExecutablePath(errno: Int32)
  /// inotify could not be set up or could not watch `path`.
  case cannotWatch(path: String, errno: Int32)
  /// The child process of `configuration` ended as `status` says ("exit status N", "killed
  /// by signal N"), or printed no run.
  case runFailed(configuration: String, status: String)
  /// Runs whose checksum differed from the in-memory 64-shard run of the same size, each
  /// with what it found and what was expected.
  case checksumMismatch([String])

  var description: String {
    switch self {
    case .badArguments(let arguments):
      "\(ScaleRun.command) takes --rows N --keys K --shards S [--memory-limit B], not \(arguments.joined(separator: " "))"
    case .cannotCreate(let path, let code): "cannot create a directory in \(path): \(String(cString: strerror(code)))"
    case .noExecutablePath(let code): "cannot read /proc/self/exe: \(String(cString: strerror(code)))"
    case .cannotWatch(let path, let code): "cannot watch \(path) with inotify: \(String(cString: strerror(code)))"
    case .runFailed(let configuration, let status):
      "\(configuration): the child ended with \(status)" + (status == "exit status 0" ? " but printed no run" : "")
    case .checksumMismatch(let runs): "checksum mismatch: " + runs.joined(separator: "; ")
    }
  }
}
