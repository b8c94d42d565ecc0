import Bigmachine
import NIOCore

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// What `bigmachine-testworker` does when it runs as a driver (started by a test):
///
/// - `drive-and-wait LEASE_MS`: starts two local machines with that lease, prints
///   `pids P1 P2`, and waits forever (the test then kills it).
/// - `stream BYTES`: starts one local machine, streams BYTES to it and BYTES back, and prints
///   one line `ok UPLOAD_OK DOWNLOAD_OK DRIVER_PEAK_RSS WORKER_PEAK_RSS SECONDS`.
public enum TestDriver {
  /// The keepalive timing the command asks for.
  public static func keepalive(_ args: [String]) -> KeepaliveConfig {
    guard args.first == "drive-and-wait", args.count > 1, let ms = Int64(args[1]) else { return .standard }
    return KeepaliveConfig(
      period: .milliseconds(ms / 4), timeout: .milliseconds(ms), rpcTimeout: .milliseconds(ms / 2),
      lease: .milliseconds(ms))
  }

  public static func main(_ b: Bigmachine, _ args: [String]) async throws {
    switch args.first {
    case "drive-and-wait":
      let machines = try await b.start(count: 2, services: [TestService()])
      for m in machines {
        guard await m.wait(for: .running) == .running else {
          print("failed \(String(describing: m.error))")
          exit(1)
        }
      }
      print("pids \(machines.map { String($0.processID) }.joined(separator: " "))")
      fflush(stdout)
      while true { try await Task.sleep(for: .seconds(3600)) }
    case "stream":
      let count = Int(args.count > 1 ? args[1] : "") ?? (256 << 20)
      let m = try await b.start(count: 1, services: [TestService()])[0]
      guard await m.wait(for: .running) == .running else {
        print("failed \(String(describing: m.error))")
        exit(1)
      }
      let bytes = PatternBytes(count: count, chunk: 1 << 20, stamped: false)
      let expected = try await bytes.digest()
      let start = ContinuousClock.now
      let uploaded = try await m.call("Test.digest", true, input: bytes, returning: Digest.self)
      var down = StreamDigest()
      for try await chunk in try await m.stream("Test.generate", count) { down.add(chunk) }
      let seconds = (ContinuousClock.now - start).components.seconds
      let workerPeak = try await m.memoryInfo().processPeakResidentBytes
      let driverPeak = MemoryInfo.current().processPeakResidentBytes
      print("ok \(uploaded == expected) \(down.result == expected) \(driverPeak) \(workerPeak) \(seconds)")
      fflush(stdout)
      await b.shutdown()
      exit(0)
    default:
      print("usage: bigmachine-testworker drive-and-wait LEASE_MS | stream BYTES")
      exit(2)
    }
  }
}
