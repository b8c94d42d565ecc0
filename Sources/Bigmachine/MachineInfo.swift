import NIOCore

#if canImport(Glibc)
  import Glibc
#endif

/// Memory of a machine and of its worker process, read from `/proc` on the machine.
public struct MemoryInfo: Codable, Sendable, Equatable {
  /// The host's total memory.
  public var totalBytes: Int
  /// Memory the host could give to new work (`MemAvailable`).
  public var availableBytes: Int
  /// The worker process's resident set now.
  public var processResidentBytes: Int
  /// The worker process's largest resident set so far.
  public var processPeakResidentBytes: Int

  /// Reads the current process's and host's figures (zero where `/proc` says nothing).
  public static func current() -> MemoryInfo {
    let mem = procFields("/proc/meminfo")
    let status = procFields("/proc/self/status")
    return MemoryInfo(
      totalBytes: (mem["MemTotal"] ?? 0) * 1024, availableBytes: (mem["MemAvailable"] ?? 0) * 1024,
      processResidentBytes: (status["VmRSS"] ?? 0) * 1024, processPeakResidentBytes: (status["VmHWM"] ?? 0) * 1024)
  }
}

/// Space on the file system that holds the machine's temporary directory.
public struct DiskInfo: Codable, Sendable, Equatable {
  /// The directory measured (`TMPDIR`, or `/tmp`).
  public var path: String
  /// Size of its file system.
  public var totalBytes: Int
  /// Bytes an unprivileged process may still write there.
  public var availableBytes: Int

  /// Measures `TMPDIR` (or `/tmp`) with `statvfs`.
  public static func current() -> DiskInfo {
    let path = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    var s = statvfs()
    guard statvfs(path, &s) == 0 else { return DiskInfo(path: path, totalBytes: 0, availableBytes: 0) }
    return DiskInfo(
      path: path, totalBytes: Int(s.f_blocks) * Int(s.f_frsize), availableBytes: Int(s.f_bavail) * Int(s.f_frsize))
  }
}

/// The host's load averages over 1, 5 and 15 minutes.
public struct LoadInfo: Codable, Sendable, Equatable {
  public var one: Double
  public var five: Double
  public var fifteen: Double

  /// Reads `/proc/loadavg`.
  public static func current() -> LoadInfo {
    let parts = (readSmallFile("/proc/loadavg") ?? "").split(separator: " ").compactMap { Double($0) }
    guard parts.count >= 3 else { return LoadInfo(one: 0, five: 0, fifteen: 0) }
    return LoadInfo(one: parts[0], five: parts[1], fifteen: parts[2])
  }
}

/// What a worker says about itself once its services are installed.
struct MachineDescription: Codable, Sendable {
  var pid: Int32
  var maxprocs: Int
  /// Where the worker listens for its peers (`host:port`), when that is not the address the
  /// driver reached it by: a hosts worker dialed the driver from an ephemeral port.
  var peerAddress: String? = nil
  /// The launch this worker was started by (`BIGMACHINE_LAUNCH_ID`), for a ``ClusterSystem``
  /// to match the worker that joins with the launch it made.
  var launchID: String? = nil
  /// True for a bootstrap, which waits for the driver's binary (`Bootstrap`).
  var bootstrap: Bool? = nil
}

/// The processors this process may use (NIO's count: affinity and cgroup limits included).
func availableProcessors() -> Int { max(1, NIOCore.System.coreCount) }

/// "Key:   123 kB" lines of a /proc file as key → number.
private func procFields(_ path: String) -> [String: Int] {
  var out: [String: Int] = [:]
  for line in (readSmallFile(path) ?? "").split(separator: "\n") {
    guard let colon = line.firstIndex(of: ":") else { continue }
    let value = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap {
      Int($0)
    }
    if let value { out[String(line[..<colon])] = value }
  }
  return out
}
