import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
  @preconcurrency import Glibc
#endif

/// Starts each worker with a shell command of the user's: `ssh {host} {quoted-command}`,
/// `kubectl run bigmachine-{id} --image=… --attach --rm -- {command}`, or any other that runs
/// a command somewhere and lasts as long as it does. In the template:
///
/// - `{command}` is the worker's ``WorkerCommand/shellCommand``, as words for the template's
///   own shell (`exec {command}` runs the worker here; `kubectl … -- {command}` passes them
///   as arguments);
/// - `{quoted-command}` is the same quoted once more into one word, for a command that hands
///   its argument to another shell (ssh does);
/// - `{host}` is the next of `hosts` in turn, and `{id}` the launch's id.
///
/// The template runs under `/bin/sh -c` on this host; what it writes to stdout and stderr (a
/// remote worker's output, through ssh) goes to `output` line by line, prefixed with the
/// launch id. The worker has ended when the command has; stopping it sends the command
/// SIGTERM, then SIGKILL after 5 seconds.
public struct CommandLauncher: WorkerLauncher {
  public let name = "command"
  private let template: String
  private let hosts: [String]
  private let output: MachineOutput
  private let next = NIOLockedValueBox(0)

  /// A launcher running `template` per worker; `hosts` fill `{host}` in turn.
  public init(_ template: String, hosts: [String] = [], output: MachineOutput = .standardError) {
    self.template = template
    self.hosts = hosts
    self.output = output
  }

  /// `template` with its placeholders filled for `command`.
  func expand(_ command: WorkerCommand) -> String {
    let turn = next.withLockedValue { n -> Int in
      defer { n += 1 }
      return n
    }
    let host = hosts.isEmpty ? "" : hosts[turn % hosts.count]
    return template.replacingAll("{quoted-command}", with: shellQuote(command.shellCommand))
      .replacingAll("{command}", with: command.shellCommand).replacingAll("{host}", with: shellQuote(host))
      .replacingAll("{id}", with: shellQuote(command.id))
  }

  public func launch(_ command: WorkerCommand) async throws -> any LaunchedWorker {
    let child = try ChildProcess.spawn(
      executable: "/bin/sh", arguments: ["-c", expand(command)], environment: processEnvironment())
    let prefix = NIOLockedValueBox(command.id)
    let recent = NIOLockedValueBox<[String]>([])
    let out = OutputForwarder.start(fd: child.stdout, prefix: prefix, output: output, recent: recent, onListening: nil)
    let err = OutputForwarder.start(fd: child.stderr, prefix: prefix, output: output, recent: recent, onListening: nil)
    return CommandWorker(child: child, finished: out.and(err).map { _ in () }, recent: recent)
  }
}

/// A worker's launching command, run by a ``CommandLauncher``.
struct CommandWorker: LaunchedWorker {
  let child: ChildProcess
  let finished: EventLoopFuture<Void>
  let recent: NIOLockedValueBox<[String]>

  func ended() async -> String {
    try? await finished.get()
    let status = await child.reap()
    let last = recent.withLockedValue { $0 }.suffix(5)
    return "its command ended with \(ChildProcess.describe(status))"
      + (last.isEmpty ? "" : "; its last lines: \(last.joined(separator: " | "))")
  }

  func stop() async {
    child.kill(SIGTERM)
    let child = self.child
    Task {
      try? await Task.sleep(for: .seconds(5))
      child.kill(SIGKILL)
    }
  }
}

extension String {
  /// This string with every `target` replaced by `replacement`.
  func replacingAll(_ target: String, with replacement: String) -> String {
    split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
  }
}
