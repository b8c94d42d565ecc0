import ArgumentParser
import Bigmachine
import Bigslice
import Dispatch
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

/// `bigslice worker --join HOST:PORT`: a machine of a driver's hosts system.
struct WorkerCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "worker",
    abstract: "Joins a driver as one of its machines (the hosts system).",
    discussion: """
      The driver runs its session on `.machines(system: .hosts(listen: "0.0.0.0:7070", \
      secretFile: PATH), count: N, procs: P)`; each worker dials it, proves the cluster \
      secret and serves until the driver shuts it down or is gone. The worker runs the funcs \
      this binary registers (the demo and benchmark workloads); a program with its own funcs \
      calls `Bigmachine.worker(driver:secret:services:)` with `Session.machineServices` instead.

      The secret comes from --secret-file, else the environment: BIGMACHINE_SECRET (hex) or \
      BIGMACHINE_SECRET_FILE (the file the driver wrote).

      Examples:
        BIGMACHINE_SECRET_FILE=/shared/bigslice.secret bigslice worker --join driver.example:7070
        bigslice worker --join 10.0.0.1:7070 --secret-file /shared/bigslice.secret
        bigslice worker --join 10.0.0.1:7070 --secret-file s --advertise 192.168.3.4
        bigslice worker --join 10.0.0.1:7070 --secret-file s --bootstrap

      With --bootstrap, this binary (any build) only joins: the driver sends its own binary, \
      which is checked against its SHA-256 and run in this process's place.
      """)

  @Option(help: ArgumentHelp("The driver's address.", valueName: "HOST:PORT"))
  var join: String

  @Option(help: ArgumentHelp("Read the cluster secret from <path>.", valueName: "path"))
  var secretFile: String?

  @Option(
    help: ArgumentHelp(
      "The host other workers dial to read this one's task outputs (default: the address this host reaches the driver from).",
      valueName: "host"))
  var advertise: String?

  @Flag(help: "Join as a bootstrap: receive the driver's binary, check its digest and run it.")
  var bootstrap = false

  func validate() throws {
    guard splitHostPort(join) != nil else {
      throw ValidationError("--join takes HOST:PORT or [IPV6]:PORT, not \(join)")
    }
  }

  func run() throws {
    Workloads.register()
    let found: ClusterSecret?
    do {
      if let secretFile {
        // The environment's copy, if any, is removed all the same: no program a service
        // starts inherits it.
        _ = try? ClusterSecret.fromEnvironment()
        found = try ClusterSecret.read(fromFile: secretFile)
      } else {
        found = try ClusterSecret.fromEnvironment()
      }
    } catch {
      throw ValidationError("cannot read the cluster secret: \(error)")
    }
    guard let secret = found else {
      throw ValidationError("no cluster secret: give --secret-file, or set BIGMACHINE_SECRET or BIGMACHINE_SECRET_FILE")
    }
    let driver = join
    if bootstrap { setenv("BIGMACHINE_BOOTSTRAP", "1", 1) }
    let options = Bigmachine.Options(peerAdvertiseHost: advertise)
    // The worker serves on Swift tasks until its process exits; this thread only waits.
    Task {
      do {
        try await Bigmachine.worker(
          driver: driver, secret: secret, services: Session.machineServices, options: options)
      } catch {
        let line = Array("bigslice worker: \(error)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        Glibc.exit(1)
      }
    }
    dispatchMain()
  }
}
