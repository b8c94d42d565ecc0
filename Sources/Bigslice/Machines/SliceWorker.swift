import Bigmachine

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// The service a session installs on each of its machines: it compiles the session's
/// invocations the way the driver did, runs their tasks, keeps their outputs in a store of
/// block files, and serves those files to the other machines and to the driver.
struct SliceWorker: Service {
  static let name = "Bigslice"

  /// The driver's func registry (`FuncRegistry.fingerprint`) when the session started: a func
  /// registered in both must have the same signature in both.
  var funcs: [String]
  /// The memory limit of each machine, as the session's `memoryLimit` is for one process.
  var memoryLimit: Int?
  /// Tasks run at once on the machine.
  var procs: Int
  /// Where the machine's store directory is made (default `$TMPDIR`).
  var storeParent: String?
  /// The worker's state, made fresh with each decoded service (each machine).
  let state = WorkerState()

  enum CodingKeys: String, CodingKey { case funcs, memoryLimit, procs, storeParent }

  func setUp(_ worker: WorkerContext) async throws {
    let mismatch = RegistryMismatch(driver: funcs, worker: FuncRegistry.fingerprint)
    if !mismatch.differing.isEmpty { throw mismatch }
    try state.configure(self, peers: worker.peers)
  }

  static let methods: [String: ServiceMethod<SliceWorker>] = [
    "compile": .unary { (worker, invocation: Invocation, _) in
      try worker.state.compile(invocation)
      return true
    },
    "run": .unary { (worker, request: RunRequest, _) in try await worker.state.run(request) },
    "read": .streaming { (worker, request: ReadRequest, _, writer) in try await worker.state.read(request, to: writer)
    },
    "readMany": .streaming { (worker, request: ReadManyRequest, _, writer) in
      try await worker.state.readMany(request, to: writer)
    },
    "cancel": .unary { (worker, attempts: [Int], _) in
      worker.state.cancel(attempts)
      return true
    },
    "discard": .unary { (worker, outputs: [OutputRef], _) in
      worker.state.discard(outputs)
      return true
    },
    "close": .unary { (worker, _: Bool, _) in
      worker.state.close()
      return true
    },
    "storePath": .unary { (worker, _: Bool, _) in worker.state.storePath ?? "" },
  ]
}
