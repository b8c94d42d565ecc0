import Bigmachine
import Bigslice
import Foundation
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

/// One run of the scale benchmark's shuffle, made in a child process of its own
/// (`bigslice-bench scale-one --rows N --keys K --shards S [--memory-limit B]`), so that its
/// peak RSS, its descriptors and the memory pool's cap are the run's alone. The child prints
/// this as one JSON line on stdout; `ScaleBenchmarks` reads it.
struct ScaleRun: Codable {
  /// The hidden subcommand that makes one run.
  static let command = "scale-one"

  var rows: Int
  var keys: Int
  var shards: Int
  /// The session's memory limit; nil for none.
  var memoryLimit: Int?
  /// The job and the scan of its result, from compiling to the last row.
  var seconds: Double
  /// `groups=… sum=… keysum=…` of the result (sums wrap).
  var checksum: String
  /// Files created under the run's fresh temporary directory (the session's spill directory
  /// and `TMPDIR` both), seen by inotify.
  var filesCreated: Int
  /// Whether inotify lost events, making `filesCreated` a lower bound.
  var filesCreatedOverflowed: Bool
  /// Descriptors open before the session was made, and the most open at once after.
  var idleDescriptors: Int
  var peakDescriptors: Int
  /// The child's peak resident set (`VmHWM`), read at the end.
  var peakRSSBytes: Int
  /// Bytes of task output the session wrote to spill files.
  var spilledBytes: Int

  /// Parses the subcommand's arguments (those after `scale-one`), makes the run and prints it.
  /// - Throws: `ScaleError.badArguments` for arguments other than those above; what the run
  ///   throws.
  static func main(arguments: [String]) throws {
    var values: [String: Int] = [:]
    var rest = arguments[...]
    while let name = rest.popFirst() {
      guard ["--rows", "--keys", "--shards", "--memory-limit"].contains(name),
        let value = rest.popFirst().flatMap(Int.init),
        value > 0
      else { throw ScaleError.badArguments(arguments) }
      values[name] = value
    }
    guard let rows = values["--rows"], let keys = values["--keys"], let shards = values["--shards"] else {
      throw ScaleError.badArguments(arguments)
    }
    let run = try measure(rows: rows, keys: keys, shards: shards, memoryLimit: values["--memory-limit"])
    print(String(decoding: try JSONEncoder().encode(run), as: UTF8.self))
    fflush(nil)
  }

  /// Runs W4's shuffle of `rows` rows over `keys` keys on `shards` shards on 2 procs, with a
  /// session whose spill directory and `TMPDIR` are a fresh directory under `$TMPDIR` (or
  /// `/tmp`), watched from before the session is made until after it is gone; removes the
  /// directory at the end.
  /// - Throws: `ScaleError.cannotCreate` or `.cannotWatch` for the directory; what the job
  ///   throws.
  static func measure(rows: Int, keys: Int, shards: Int, memoryLimit: Int?) throws -> ScaleRun {
    let parent = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var template = Array("\(parent)/bigslice-scale-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
      throw ScaleError.cannotCreate(path: parent, errno: errno)
    }
    let root = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    defer { try? FileManager.default.removeItem(atPath: root) }
    setenv("TMPDIR", root, 1)
    let sampler = try ResourceSampler(root: root)
    sampler.start()
    let (seconds, checksum, spilledBytes) = try job(
      rows: rows, keys: keys, shards: shards, memoryLimit: memoryLimit, in: root)
    let seen = sampler.stop()
    return ScaleRun(
      rows: rows, keys: keys, shards: shards, memoryLimit: memoryLimit, seconds: seconds, checksum: checksum,
      filesCreated: seen.filesCreated, filesCreatedOverflowed: seen.overflowed, idleDescriptors: seen.idleDescriptors,
      peakDescriptors: seen.peakDescriptors, peakRSSBytes: MemoryInfo.current().processPeakResidentBytes,
      spilledBytes: spilledBytes)
  }

  /// The timed job, its checksum and the bytes it spilled. Its session (and with it the spill
  /// directory) is gone when it returns.
  private static func job(rows: Int, keys: Int, shards: Int, memoryLimit: Int?, in directory: String) throws -> (
    Double, String, Int
  ) {
    let session = Session(executor: .local(procs: 2), memoryLimit: memoryLimit, spillDirectory: directory)
    defer { session.shutdown() }
    let start = ContinuousClock.now
    let result = try session.run(Workloads.w4, rows, keys, shards)
    var groups = 0
    var sum = 0
    var keySum = 0
    var scanner = result.makeRowReader()
    while let (key, value) = try scanner.next() {
      groups += 1
      sum &+= value
      keySum &+= key &* value
    }
    let seconds = elapsedSeconds(since: start)
    return (seconds, "groups=\(groups) sum=\(sum) keysum=\(keySum)", session.spilledBytes)
  }
}
