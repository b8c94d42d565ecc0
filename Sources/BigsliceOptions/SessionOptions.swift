import ArgumentParser
import Bigmachine
import Bigslice
import Configuration
import Foundation
import SystemPackage

/// The standard options of a bigslice program, to embed in any command with `@OptionGroup`:
/// where tasks run, how many machines and threads, the memory limit, the status display, the
/// trace, the debug pages, the spill directory and the retries.
///
///     @main struct Report: AsyncParsableCommand {
///       @OptionGroup var bigslice: SessionOptions
///       @Argument var input: String
///       mutating func run() async throws {
///         let session = try await bigslice.session()
///         …
///       }
///     }
///
/// Each setting comes from, in this order of precedence: its flag; its environment variable
/// (`BIGSLICE_` and the key in capitals, words split by `_`: `BIGSLICE_MEMORY_LIMIT`); the
/// JSON config file (`--config` or `BIGSLICE_CONFIG`), where the keys sit in a `bigslice`
/// object (`{"bigslice": {"memoryLimit": "2G", "machines": 4}}`); and the defaults. The
/// environment and the file are read by swift-configuration.
public struct SessionOptions: ParsableArguments, Sendable {
  public init() {}

  @Option(help: ArgumentHelp("Where tasks run: local (this process) or machines. [default: local]", valueName: "kind"))
  public var executor: ExecutorKind?

  @Option(
    help: ArgumentHelp(
      "How machines start: local (worker processes of this binary) or in-process. [default: local]",
      valueName: "system"))
  public var system: SystemKind?

  @Option(
    help: ArgumentHelp("Machines to run tasks on (implies --executor machines). [default: 2]", valueName: "count"))
  public var machines: Int?

  @Option(help: ArgumentHelp("Threads that run tasks, on each machine. [default: 2]", valueName: "count"))
  public var procs: Int?

  @Option(
    help: ArgumentHelp(
      "Bound each process's memory to <size> bytes, spilling to disk beyond it (K, M, G, T suffixes). [default: none]",
      valueName: "size"))
  public var memoryLimit: String?

  @Flag(
    inversion: .prefixedNo,
    help: "Show the job's status on stderr while it runs. [default: when stderr is a terminal]")
  public var status: Bool?

  @Option(
    name: .customLong("trace"), help: ArgumentHelp("Write a Chrome trace of each job to <path>.", valueName: "path"))
  public var tracePath: String?

  @Option(
    help: ArgumentHelp(
      "Serve debug pages on <address> while jobs run: HOST:PORT, or :PORT for loopback.", valueName: "address"))
  public var debugAddress: String?

  @Option(help: ArgumentHelp("Where spill files go. [default: the system's temporary directory]", valueName: "path"))
  public var spillDirectory: String?

  @Option(help: ArgumentHelp("Times a task that fails with a temporary error is tried again. [default: 3]"))
  public var retries: Int?

  @Option(help: ArgumentHelp("A JSON file of these settings, under \"bigslice\".", valueName: "path"))
  public var config: String?

  public func validate() throws {
    for (name, value) in [("--machines", machines), ("--procs", procs)] {
      if let value, value <= 0 { throw ValidationError("\(name) must be positive, not \(value)") }
    }
    if let retries, retries < 0 { throw ValidationError("--retries must not be negative, not \(retries)") }
    if let memoryLimit, parseSize(memoryLimit) == nil {
      throw ValidationError("--memory-limit: not a size: \(memoryLimit) (a number of bytes, with K, M, G or T)")
    }
  }

  /// The settings these flags, `environment` and the config file give, over `defaults`.
  /// - Throws: `SessionOptionsError` naming the variable or file, and the key, of a value
  ///   that is not valid, or a config file that cannot be read.
  public func settings(
    defaults: SessionSettings = SessionSettings(), environment: [String: String] = ProcessInfo.processInfo.environment
  ) async throws -> SessionSettings {
    let configPath = config ?? environment["BIGSLICE_CONFIG"]
    var providers: [any ConfigProvider] = [EnvironmentVariablesProvider(environmentVariables: environment)]
    if let configPath {
      do {
        providers.append(try await FileProvider<JSONSnapshot>(filePath: FilePath(configPath)))
      } catch {
        throw SessionOptionsError(source: configPath, key: nil, problem: "cannot be read: \(error)")
      }
    }
    let reader = Settings(reader: ConfigReader(providers: providers), environment: environment, file: configPath)
    var settings = defaults
    settings.machines = try machines ?? reader.int("machines", positive: true) ?? settings.machines
    settings.executor =
      try executor ?? reader.choice("executor", ExecutorKind.self)
      ?? (machines != nil || reader.has("machines") ? .machines : settings.executor)
    settings.system = try system ?? reader.choice("system", SystemKind.self) ?? settings.system
    settings.procs = try procs ?? reader.int("procs", positive: true) ?? settings.procs
    if let memoryLimit {
      settings.memoryLimit = parseSize(memoryLimit)
    } else if let text = try reader.string("memoryLimit") {
      guard let size = parseSize(text) else { throw reader.invalid("memoryLimit", text, "a size like 2G") }
      settings.memoryLimit = size
    }
    settings.status = try status ?? reader.bool("status") ?? settings.status
    settings.tracePath = try tracePath ?? reader.string("tracePath")
    settings.debugAddress = try debugAddress ?? reader.string("debugAddress")
    settings.spillDirectory = try spillDirectory ?? reader.string("spillDirectory")
    settings.retries = try retries ?? reader.int("retries", positive: false) ?? settings.retries
    return settings
  }

  /// A session with these settings (see `settings(defaults:environment:)`).
  public func session(defaults: SessionSettings = SessionSettings()) async throws -> Session {
    try await settings(defaults: defaults).session()
  }
}

/// Where tasks run.
public enum ExecutorKind: String, ExpressibleByArgument, CaseIterable, Sendable {
  case local, machines
}

/// How machines start.
public enum SystemKind: String, ExpressibleByArgument, CaseIterable, Sendable {
  /// Worker processes of this binary on this host.
  case local
  /// Machines inside this process (for tests and debugging).
  case inProcess = "in-process"
}

/// What a session is made with, once flags, environment, config file and defaults are
/// resolved.
public struct SessionSettings: Equatable, Sendable {
  public var executor: ExecutorKind = .local
  public var system: SystemKind = .local
  public var machines = 2
  public var procs = 2
  public var memoryLimit: Int? = nil
  public var status = isatty(2) != 0
  public var tracePath: String? = nil
  public var debugAddress: String? = nil
  public var spillDirectory: String? = nil
  public var retries = 3

  public init() {}

  /// The executor these settings name.
  public var sessionExecutor: Executor {
    switch executor {
    case .local: .local(procs: procs)
    case .machines:
      .machines(system: system == .local ? .local : .inProcess, count: machines, procs: procs)
    }
  }

  /// A session with these settings.
  public func session() -> Session {
    Session(
      executor: sessionExecutor, memoryLimit: memoryLimit, spillDirectory: spillDirectory, status: status,
      tracePath: tracePath, debugAddress: debugAddress, retries: retries)
  }
}

/// A setting from the environment or the config file that is not valid.
public struct SessionOptionsError: Error, CustomStringConvertible {
  /// The environment variable or the config file.
  public var source: String
  /// The setting's key, when one is at fault.
  public var key: String?
  public var problem: String

  public var description: String { "\(source)\(key.map { " (\($0))" } ?? ""): \(problem)" }
}

/// Reads the `bigslice.*` keys, naming where a bad value came from.
private struct Settings {
  let reader: ConfigReader
  let environment: [String: String]
  let file: String?

  /// The environment variable of `key`, as swift-configuration names it.
  func variable(_ key: String) -> String {
    "BIGSLICE_" + key.replacing(/([a-z])([A-Z])/) { "\($0.output.1)_\($0.output.2)" }.uppercased()
  }

  /// Where the value of `key` comes from: its variable, or the file.
  func source(_ key: String) -> String {
    environment[variable(key)] != nil ? variable(key) : file ?? "the configuration"
  }

  func invalid(_ key: String, _ value: String, _ expected: String) -> SessionOptionsError {
    SessionOptionsError(source: source(key), key: "bigslice.\(key)", problem: "not \(expected): \(value)")
  }

  func has(_ key: String) -> Bool {
    let k = ConfigKey("bigslice.\(key)")
    return reader.string(forKey: k) != nil || reader.int(forKey: k) != nil || reader.bool(forKey: k) != nil
      || reader.double(forKey: k) != nil
  }

  /// The value of `key` as text (a number or boolean in the file as its text), or nil.
  func string(_ key: String) throws -> String? {
    let k = ConfigKey("bigslice.\(key)")
    if let text = reader.string(forKey: k) { return text }
    if let number = reader.int(forKey: k) { return String(number) }
    if let number = reader.double(forKey: k) { return String(number) }
    if let flag = reader.bool(forKey: k) { return String(flag) }
    return nil
  }

  func int(_ key: String, positive: Bool) throws -> Int? {
    guard let text = try string(key) else { return nil }
    guard let value = Int(text), positive ? value > 0 : value >= 0 else {
      throw invalid(key, text, positive ? "a positive whole number" : "a whole number of at least 0")
    }
    return value
  }

  func bool(_ key: String) throws -> Bool? {
    guard let text = try string(key) else { return nil }
    switch text.lowercased() {
    case "true", "1", "yes", "on": return true
    case "false", "0", "no", "off": return false
    default: throw invalid(key, text, "true or false")
    }
  }

  func choice<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) throws -> T? where T.RawValue == String {
    guard let text = try string(key) else { return nil }
    guard let value = T(rawValue: text) else {
      throw invalid(key, text, "one of " + T.allCases.map(\.rawValue).joined(separator: ", "))
    }
    return value
  }
}

/// Bytes from `text`: a whole number with an optional K, M, G or T (powers of 1024, with or
/// without a trailing `B` or `iB`); nil when it is not one, or not positive.
func parseSize(_ text: String) -> Int? {
  var digits = text.trimmingCharacters(in: .whitespaces).uppercased()
  for suffix in ["IB", "B"] where digits.hasSuffix(suffix) && digits.count > suffix.count {
    digits.removeLast(suffix.count)
    break
  }
  var scale = 1
  if let last = digits.last, let power = ["K": 1, "M": 2, "G": 3, "T": 4][String(last)] {
    scale = 1 << (10 * power)
    digits.removeLast()
  }
  guard let number = Int(digits), number > 0 else { return nil }
  let (bytes, overflow) = number.multipliedReportingOverflow(by: scale)
  return overflow ? nil : bytes
}
