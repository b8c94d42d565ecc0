import BigmachineTestSupport
import Foundation
import Testing

@testable import Bigmachine

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// A cluster system whose workers a shell command on this host starts: the launch-command
/// system as ssh would use it, without the ssh.
func commandCluster(
  _ template: String = "exec {command}", output: MachineOutput = MachineOutput { _ in },
  startTimeout: Duration = .seconds(60), log: BigmachineLog = .discard, bootstrap: String? = nil
) async throws -> (Bigmachine, ClusterSystem) {
  let system = ClusterSystem(
    launcher: CommandLauncher(template, output: output), listen: "127.0.0.1:0", executable: try testWorkerPath(),
    bootstrap: bootstrap, arguments: [],
    secretFile: "/tmp/bigmachine-cluster-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).secret",
    startTimeout: startTimeout, fingerprint: .exactly(try await BinaryFingerprint.ofFile(try testWorkerPath())),
    output: output)
  let b = try await Bigmachine.start(system: system, services: testServiceTypes, options: .init(log: log))
  return (b, system)
}

@Suite struct ClusterSystemTests {
  @Test func commandLaunchedWorkersJoinServeForwardOutputAndAreStoppedAtShutdown() async throws {
    let output = LogLines()
    let (b, system) = try await commandCluster(
      "exec {command}", output: MachineOutput { line in output.log.sink(line) })
    let machines = try await b.start(count: 2, services: [TestService(tag: "launched")])
    var pids: [Int32] = []
    for m in machines {
      #expect(await m.wait(for: .running) == .running)
      #expect(try await m.call("Test.echo", "x", returning: String.self) == "launched:x")
      pids.append(try await m.call("Test.pid", true, returning: Int32.self))
    }
    #expect(system.address?.hasPrefix("127.0.0.1:") == true)
    _ = try await machines[0].call("Test.print", ["from a launched worker"], returning: Bool.self)
    #expect(
      await eventually(within: 10) { output.all.contains("\(machines[0].address): out from a launched worker") },
      "\(output.all)")
    await b.shutdown()
    #expect(await eventually(within: 20) { pids.allSatisfy { kill($0, 0) != 0 } }, "workers outlived shutdown")
  }

  @Test func aWorkerThatEndsIsALostMachine() async throws {
    let (b, _) = try await commandCluster("exec {command}")
    let machines = try await b.start(count: 1, services: [TestService()])
    let m = machines[0]
    #expect(await m.wait(for: .running) == .running)
    let pid = try await m.call("Test.pid", true, returning: Int32.self)
    kill(pid, SIGKILL)
    #expect(await m.wait(for: .stopped) == .stopped)
    #expect(m.error?.isTemporary == true, "\(String(describing: m.error))")
    await b.shutdown()
  }

  @Test func aWorkerThatEndsOrNeverJoinsFailsItsStartSayingWhy() async throws {
    let (b, _) = try await commandCluster("echo cannot reach the node >&2; exit 3")
    do {
      _ = try await b.start(count: 1, services: [TestService()])
      Issue.record("a launch whose command failed started")
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .startFailed)
      #expect(message.contains("ended before it joined") && message.contains("exit status 3"))
      #expect(message.contains("cannot reach the node"))
    }
    await b.shutdown()

    let (slow, _) = try await commandCluster("sleep 30", startTimeout: .milliseconds(500))
    do {
      _ = try await slow.start(count: 2, services: [TestService()])
      Issue.record("workers that never joined started")
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .startFailed)
      #expect(message.contains("did not join within"))
    }
    await slow.shutdown()
  }

  @Test func theWorkerCommandIsOneShellWordWhateverItHolds() {
    let command = WorkerCommand(
      id: "x-1", executable: "/opt/my app/bin", arguments: ["it's", "a b", "$HOME", "`id`"],
      environment: ["B": "2", "A": "1 2"])
    #expect(command.shellCommand == #"env 'A=1 2' B=2 '/opt/my app/bin' 'it'\''s' 'a b' '$HOME' '`id`'"#)
    // For ssh, one word that the remote shell parses back into the command.
    let ssh = CommandLauncher("ssh {host} {quoted-command}", hosts: ["n1", "n2"])
    #expect(ssh.expand(command) == "ssh n1 " + shellQuote(command.shellCommand))
    #expect(ssh.expand(command).hasPrefix("ssh n2 'env "))
    #expect(CommandLauncher("exec {command} # {id}").expand(command) == "exec \(command.shellCommand) # x-1")
  }

  /// Workers launched from a bootstrap (another build, as its fingerprint says) receive the
  /// worker binary and join as workers of it, matched to their launches.
  @Test func launchedBootstrapsReceiveTheWorkerBinary() async throws {
    // The bootstrap is the test worker again, claiming another build.
    let (b, _) = try await commandCluster(
      "BIGMACHINE_BINARY_FINGERPRINT=sha256:another-build exec {command}", bootstrap: try testWorkerPath())
    let machines = try await b.start(count: 2, services: [TestService(tag: "booted")])
    for m in machines {
      #expect(await m.wait(for: .running) == .running)
      #expect(try await m.call("Test.echo", "x", returning: String.self) == "booted:x")
      let pid = try await m.call("Test.pid", true, returning: Int32.self)
      let running = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
      #expect(running.contains("bigmachine-binary-"), "\(running)")
    }
    await b.shutdown()
  }
}
