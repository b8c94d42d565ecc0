import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// Where Bigmachine reports what it does not throw: refused connections, malformed frames,
/// lease expiry, machines that stop. One line per event.
public struct BigmachineLog: Sendable {
  let sink: @Sendable (String) -> Void

  /// A log that hands each line (without a newline) to `sink`.
  public init(_ sink: @escaping @Sendable (String) -> Void) { self.sink = sink }

  /// Lines go to standard error, prefixed `bigmachine: `.
  public static let standardError = BigmachineLog { line in writeStandardError("bigmachine: \(line)\n") }

  /// Lines are dropped.
  public static let discard = BigmachineLog { _ in }

  func callAsFunction(_ line: String) { sink(line) }
}

/// Writes `text` to file descriptor 2 whole, retrying short writes.
func writeStandardError(_ text: String) { writeAll(2, text) }

/// Writes `text` to `fd` whole, retrying short writes and EINTR; gives up on other errors.
func writeAll(_ fd: Int32, _ text: String) {
  _ = try? FileDescriptor(rawValue: fd).writeAll(text.utf8)
}
