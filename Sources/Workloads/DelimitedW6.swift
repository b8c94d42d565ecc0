import Bigmachine
import Bigslice
import Foundation
import Frame
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// W6 (BENCHMARKS.md): W1's (key, value) rows written once as 8 TSV files, plain and
/// gzip-compressed, then read as typed columns and summed by key.
public enum DelimitedW6 {
  /// The files: `part-000i-of-0008.tsv` in `dir/plain`, and the same with `.gz` in `dir/gzip`.
  public static let files = 8

  public static func plainPaths(_ dir: String) -> [String] {
    (0..<files).map { "\(dir)/plain/part-\(pad($0))-of-\(pad(files)).tsv" }
  }

  public static func gzipPaths(_ dir: String) -> [String] {
    (0..<files).map { "\(dir)/gzip/part-\(pad($0))-of-\(pad(files)).tsv.gz" }
  }

  private static func pad(_ i: Int) -> String {
    let s = String(i)
    return String(repeating: "0", count: max(0, 4 - s.count)) + s
  }

  /// Makes sure `dir` holds W6's files for `rows` rows and `keys` keys, as the peers'
  /// harness expects them: `dir/meta` saying `bigslice-w6 v1 rows=N keys=K` marks a finished
  /// set, which is reused. Otherwise `session` writes the 8 TSV files (`write`), and each is
  /// compressed with `gzip -6`, two at a time. Returns whether it wrote.
  @discardableResult
  public static func ensure(_ session: Session, dir: String, rows: Int, keys: Int) throws -> Bool {
    let want = "bigslice-w6 v1 rows=\(rows) keys=\(keys)\n"
    if let meta = try? String(contentsOfFile: dir + "/meta", encoding: .utf8), meta == want { return false }
    unlink(dir + "/meta")
    for sub in ["plain", "gzip"] {
      try FileManager.default.createDirectory(atPath: "\(dir)/\(sub)", withIntermediateDirectories: true)
    }
    _ = try session.run(write, rows, keys, "\(dir)/plain/part")
    let plain = plainPaths(dir)
    let gzip = gzipPaths(dir)
    let failures = Mutex<[DemoError]>([])
    DispatchQueue.concurrentPerform(iterations: 2) { half in
      for i in stride(from: half, to: files, by: 2) {
        do {
          try compress(plain[i], to: gzip[i])
        } catch {
          failures.withLock { $0.append(DemoError("\(error)")) }
        }
      }
    }
    if let error = failures.withLock({ $0.first }) { throw error }
    try want.write(toFile: dir + "/meta", atomically: true, encoding: .utf8)
    return true
  }

  /// W1's table written as `files` TSV files at `prefix`.
  public static let write = Func("bench.W6.write") { (rows: Int, keys: Int, prefix: String) -> Slice<String, Int> in
    Workloads.table(rows: rows, keys: keys, seed: 0, shards: files).writeDelimited(to: prefix, format: .tsv())
  }

  static func compress(_ path: String, to gz: String) throws {
    let (status, _, errors) = try ChildProcess.runBlocking("/bin/sh", ["-c", "gzip -6 -c \"$0\" > \"$1\"", path, gz])
    guard status == 0 else {
      throw DemoError("gzip of \(path) failed (\(ChildProcess.describe(status))): \(errors)")
    }
  }

  /// The sum of each key's values over the files at `paths`, read as typed TSV.
  public static let job = Func("bench.W6") { (paths: [String], shards: Int) -> Slice<Int, Int> in
    readDelimited(shards, paths: paths, as: Int.self, Int.self, format: .tsv()).reduce(.sum)
  }
}
