#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// Every error Bigmachine raises is one of three classes, and the class says what to do next:
///
/// - ``network(address:reason:)``: the connection failed, was lost, or timed out. The work
///   may not have happened. Retrying (see ``Machine/retryCall(_:_:returning:backoff:)``) may
///   succeed. ``isTemporary`` is true.
/// - ``remote(address:method:kind:message:temporary:detail:)``: a service raised an error on
///   the machine. Its kind, message and detail arrive as the service gave them; it is
///   temporary only if the service said so (``ServiceError/temporary``).
/// - ``fatal(address:kind:message:)``: retrying cannot help (unknown method, bad argument,
///   machine stopped, failed authentication, fingerprint mismatch, …).
///
/// Task cancellation is reported as Swift's `CancellationError`, not as a Bigmachine error.
public enum BigmachineError: Error, Sendable, Equatable, CustomStringConvertible {
  /// The connection to `address` failed or was lost; `reason` says how. Temporary.
  case network(address: String, reason: String)
  /// The service method `method` on `address` threw an error of `kind` with `message`, and
  /// with `detail` (JSON) when the service gave one (``ServiceError/detail``): decode it with
  /// ``detail(as:)``.
  case remote(address: String, method: String, kind: String, message: String, temporary: Bool, detail: String?)
  /// A non-retryable failure of `kind` concerning `address`.
  case fatal(address: String, kind: FatalKind, message: String)

  /// What went wrong in a ``fatal(address:kind:message:)`` error.
  public enum FatalKind: String, Sendable, Codable, Equatable {
    /// No service or method of that name is installed on the machine.
    case unknownMethod
    /// The argument or the reply could not be encoded or decoded.
    case badArgument
    /// The machine is stopped; its ``Machine/error`` says why.
    case machineStopped
    /// A service's `setUp` hook threw; the message holds its error.
    case setUpFailed
    /// The driver's lease renewals to the machine failed for longer than the keepalive timeout.
    case keepaliveFailed
    /// The peer failed the mutual HMAC challenge (wrong or missing secret, or not a peer at all).
    case authentication
    /// The peer runs a different binary or func registry than the driver expects.
    case fingerprintMismatch
    /// The peer broke the wire protocol (malformed, oversized or unexpected frame).
    case protocolViolation
    /// A system could not start a machine (spawn failed, worker did not report its address, …).
    case startFailed
    /// The configuration or the environment is not usable (bad secret, bad address, …).
    case configuration
  }

  /// True for errors worth retrying: network errors and remote errors the service marked temporary.
  public var isTemporary: Bool {
    switch self {
    case .network: return true
    case .remote(_, _, _, _, let temporary, _): return temporary
    case .fatal: return false
    }
  }

  /// The detail of a remote error decoded as `type`: nil for other errors, for a remote error
  /// without a detail, or for one whose detail is not a `type`.
  public func detail<T: Decodable>(as type: T.Type) -> T? {
    guard case .remote(_, _, _, _, _, let detail?) = self else { return nil }
    return try? JSONDecoder().decode(type, from: Data(detail.utf8))
  }

  /// `text` from a peer made fit to log and keep, as Bigmachine keeps every message a peer
  /// sends: at most 1024 Unicode scalars (the last an ellipsis when cut), each control
  /// character (line breaks and terminal escapes among them) replaced by U+FFFD. For the
  /// strings of a typed ``detail(as:)``, which arrive as the service wrote them.
  public static func boundedText(_ text: some StringProtocol) -> String { wireText(text) }

  /// The machine address the error concerns.
  public var address: String {
    switch self {
    case .network(let address, _), .remote(let address, _, _, _, _, _), .fatal(let address, _, _): return address
    }
  }

  public var description: String {
    switch self {
    case .network(let address, let reason):
      return "network error with \(address): \(reason)"
    case .remote(let address, let method, let kind, let message, let temporary, _):
      return "\(method) on \(address) failed (\(kind)\(temporary ? ", temporary" : "")): \(message)"
    case .fatal(let address, let kind, let message):
      return "\(kind.rawValue) (\(address)): \(message)"
    }
  }
}

/// An error a service method can throw to choose the `kind` and `message` the caller sees, and
/// whether the caller's ``Machine/retryCall(_:_:returning:backoff:)`` should retry it.
///
/// Any other error a method throws reaches the caller as a remote error whose kind is the
/// error's type name and whose message is its description.
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
  /// A short machine-readable classification, e.g. `"NotFound"`.
  public var kind: String
  /// The human-readable message.
  public var message: String
  /// Whether a retry may succeed.
  public var temporary: Bool
  /// A typed detail for the caller, as JSON: what a program on the other side decodes
  /// (``BigmachineError/detail(as:)``) instead of parsing `message`. At most
  /// `ServiceError.maxDetail` bytes travel; a longer one arrives as nil.
  public var detail: String?

  /// The largest detail that travels, in bytes of JSON.
  public static let maxDetail = 1 << 20

  /// Makes an error of `kind` with `message`; `temporary` marks it retryable.
  public init(kind: String, message: String, temporary: Bool = false) {
    self.kind = kind
    self.message = message
    self.temporary = temporary
    detail = nil
  }

  /// Makes an error of `kind` with `message` and the typed `detail`, encoded as JSON.
  /// - Throws: what encoding `detail` throws.
  public init(kind: String, message: String, temporary: Bool = false, detail: some Encodable) throws {
    self.init(kind: kind, message: message, temporary: temporary)
    self.detail = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
  }

  public var description: String { "\(kind): \(message)" }
}

/// The error as it travels in an `end` frame.
struct WireError: Codable, Sendable {
  enum Class: String, Codable { case network, remote, fatal }
  var errorClass: Class
  var kind: String
  var message: String
  var temporary: Bool
  /// The service's typed detail, as JSON (``ServiceError/detail``).
  var detail: String? = nil

  /// How a service-side error is sent back: remote unless it is already a Bigmachine error.
  init(serving error: any Error) {
    switch error {
    case let e as ServiceError:
      self.init(errorClass: .remote, kind: e.kind, message: e.message, temporary: e.temporary, detail: e.detail)
    case let e as BigmachineError:
      switch e {
      case .network(_, let reason):
        // A network error raised by remote code is the remote's business, not this hop's
        // failure: it arrives as a remote error (the original's TestNetError).
        self.init(errorClass: .remote, kind: "network", message: reason, temporary: true)
      case .remote(_, _, let kind, let message, let temporary, let detail):
        self.init(errorClass: .remote, kind: kind, message: message, temporary: temporary, detail: detail)
      case .fatal(_, let kind, let message):
        self.init(errorClass: .fatal, kind: kind.rawValue, message: message, temporary: false)
      }
    case is CancellationError:
      self.init(errorClass: .remote, kind: "cancelled", message: "the call was cancelled", temporary: false)
    default:
      self.init(
        errorClass: .remote, kind: String(reflecting: type(of: error)), message: String(describing: error),
        temporary: false)
    }
  }

  init(errorClass: Class, kind: String, message: String, temporary: Bool, detail: String? = nil) {
    self.errorClass = errorClass
    self.kind = kind
    self.message = message
    self.temporary = temporary
    self.detail = detail
  }

  /// This error with its kind and message passed through `wireText` (bounded, no control
  /// characters), and its detail dropped when over `ServiceError.maxDetail` bytes.
  func bounded() -> WireError {
    WireError(
      errorClass: errorClass, kind: wireText(kind), message: wireText(message), temporary: temporary,
      detail: detail.flatMap { $0.utf8.count <= ServiceError.maxDetail ? $0 : nil })
  }

  /// The error the caller of `method` on `address` sees.
  func bigmachineError(address: String, method: String) -> BigmachineError {
    switch errorClass {
    case .network: return .network(address: address, reason: message)
    case .remote:
      return .remote(
        address: address, method: method, kind: kind, message: message, temporary: temporary, detail: detail)
    case .fatal:
      return .fatal(
        address: address, kind: BigmachineError.FatalKind(rawValue: kind) ?? .protocolViolation, message: message)
    }
  }
}
