import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// The worker side of a machine: the supervisor's methods (install services, describe the
/// machine, shut down), the installed services' methods, and the lease.
final class WorkerRuntime: @unchecked Sendable {
  let methods = MethodTable()
  let types: ServiceTypes
  let maxprocs: Int
  let log: BigmachineLog
  /// This worker's connections to the other workers.
  let peers = Peers()
  /// Where this worker listens for its peers, if not at the address its driver knows.
  let peerAddress = NIOLockedValueBox<String?>(nil)
  private(set) var lease: Lease!
  private let shutdownFlag = NIOLockedValueBox(false)
  /// Whether the driver asked this worker to shut down.
  var shutdownRequested: Bool { shutdownFlag.withLockedValue { $0 } }
  /// How this worker ends: a process exits; an in-process machine closes its server.
  private let terminate: @Sendable (_ status: Int32, _ reason: String) -> Void

  init(
    types: ServiceTypes, maxprocs: Int, initialLease: TimeAmount, log: BigmachineLog,
    terminate: @escaping @Sendable (_ status: Int32, _ reason: String) -> Void
  ) {
    self.types = types
    self.maxprocs = maxprocs
    self.log = log
    self.terminate = terminate
    lease = Lease(initial: initialLease) { lapsed in
      log("lease of \(lapsed) lapsed without renewal; the driver is gone: exiting")
      terminate(1, "lease lapsed")
    }
    installSupervisor()
  }

  /// The peer configuration of a connection that serves this worker.
  func peerConfig(
    secret: ClusterSecret, binaryFingerprint: String, applicationFingerprint: String, protection: FrameProtection
  ) -> PeerConfig {
    let lease = self.lease!
    // Peers run the same binary and registry; they serve this worker's methods too.
    peers.configure(
      PeerConfig(
        secret: secret, binaryFingerprint: binaryFingerprint, applicationFingerprint: applicationFingerprint,
        expectedBinaryFingerprint: binaryFingerprint, expectedApplicationFingerprint: applicationFingerprint,
        methods: methods, onKeepalive: nil, log: log, protection: protection))
    return PeerConfig(
      secret: secret, binaryFingerprint: binaryFingerprint, applicationFingerprint: applicationFingerprint,
      methods: methods,
      onKeepalive: { millis in
        lease.renew(millis: millis)
        return true
      }, log: log, protection: protection)
  }

  func stopLease() { lease.stop() }

  private func installSupervisor() {
    let types = self.types
    let methods = self.methods
    let maxprocs = self.maxprocs
    let shutdownFlag = self.shutdownFlag
    let peers = self.peers
    let peerAddress = self.peerAddress
    methods.add([
      "Supervisor.register": unaryHandler { (specs: [ServiceSpec], _) -> Bool in
        var installed: [(any Service, [String: MethodHandler])] = []
        for spec in specs {
          let (service, handlers) = try types.instantiate(spec)
          installed.append((service, handlers))
        }
        let context = WorkerContext(address: "", maxprocs: maxprocs, peers: peers)
        for (service, _) in installed {
          do {
            try await service.setUp(context)
          } catch {
            throw BigmachineError.fatal(
              address: "", kind: .setUpFailed, message: "\(type(of: service).name).setUp failed: \(error)")
          }
        }
        for (_, handlers) in installed { methods.add(handlers) }
        return true
      },
      "Supervisor.info": unaryHandler { (_: Bool, _) in
        MachineDescription(
          pid: getpid(), maxprocs: maxprocs, peerAddress: peerAddress.withLockedValue { $0 },
          launchID: WorkerEnvironment.value(WorkerEnvironment.launchID), bootstrap: Bootstrap.isBootstrap)
      },
      "Supervisor.output": OutputCapture.method,
      "Supervisor.exec": Bootstrap.method,
      "Supervisor.peerLost": unaryHandler { (address: String, _) in
        peers.drop(address)
        return true
      },
      "Supervisor.memoryInfo": unaryHandler { (_: Bool, _) in MemoryInfo.current() },
      "Supervisor.diskInfo": unaryHandler { (_: Bool, _) in DiskInfo.current() },
      "Supervisor.loadInfo": unaryHandler { (_: Bool, _) in LoadInfo.current() },
      "Supervisor.shutdown": unaryHandler { [terminate] (_: Bool, _) -> Bool in
        // Reply first; end a moment later so the reply leaves.
        shutdownFlag.withLockedValue { $0 = true }
        Task {
          try? await Task.sleep(for: .milliseconds(50))
          terminate(0, "shut down by the driver")
        }
        return true
      },
    ])
  }
}

/// The line a worker process writes to stdout and stderr last: the driver has all of its
/// output once it has read this line (or end of file) on both.
let shutdownMarker = "=== bigmachine: worker done ==="

/// The line a local worker writes to stdout once it listens: the driver dials this address.
let listeningMarker = "bigmachine-worker-listening "

/// Ends a worker process: the marker on both streams, flushed, then `exit`.
func exitWorkerProcess(_ status: Int32) -> Never {
  fflush(stdout)
  writeAll(1, shutdownMarker + "\n")
  writeAll(2, shutdownMarker + "\n")
  OutputCapture.waitUntilSent()
  exit(status)
}
