import NIOConcurrencyHelpers
import NIOCore

/// A service: a value installed on a machine whose methods the driver calls by name,
/// `"<name>.<method>"`.
///
/// The driver passes service values to ``Bigmachine/start(count:services:)``; each is
/// encoded (it is `Codable`, so its stored properties are its configuration), sent to the
/// machine, decoded there and set up. The worker finds the type by ``name``, so every
/// service type must also be listed in ``Bigmachine/start(system:services:options:)``,
/// which the worker runs too.
///
/// ```swift
/// struct Adder: Service {
///   var offset: Int
///   static let name = "Adder"
///   static let methods: [String: ServiceMethod<Adder>] = [
///     "add": .unary { (adder, x: Int, _) in x + adder.offset },
///   ]
/// }
/// ```
public protocol Service: Codable, Sendable {
  /// The name calls use before the dot. Unique among a program's services.
  static var name: String { get }
  /// The methods exposed, by name.
  static var methods: [String: ServiceMethod<Self>] { get }
  /// Runs on the worker after the service is decoded and before the machine is running.
  /// If it throws, the machine stops at once with the error as its cause (a fatal
  /// `setUpFailed` error carrying the message). The default does nothing.
  func setUp(_ worker: WorkerContext) async throws
}

extension Service {
  /// Does nothing.
  public func setUp(_ worker: WorkerContext) async throws {}
}

/// What a service's `setUp` knows about the machine it runs on.
public struct WorkerContext: Sendable {
  /// The machine's address, as the driver names it.
  public var address: String
  /// Processors the machine offers.
  public var maxprocs: Int
  /// Calls to the other machines of the cluster, by their addresses.
  public var peers: Peers
}

/// What a service method knows about its call.
public struct CallContext: Sendable {
  /// `"Service.method"`.
  public var method: String
  /// The streamed argument: the chunks the caller sends with
  /// ``Machine/call(_:_:input:returning:)``; empty if the caller streams nothing.
  public var input: ByteStream
}

/// One exposed method of service `S`.
public struct ServiceMethod<S: Service>: Sendable {
  let make: @Sendable (S) -> MethodHandler

  /// A method that decodes an argument `A`, runs `body`, and replies with its `R`.
  ///
  /// The caller gets a fatal `badArgument` error if the argument does not decode as `A` or
  /// the reply cannot be encoded or encodes to more than one frame (16 MiB; stream larger
  /// replies with ``streaming(_:)``), and a remote error with the kind and message (at most
  /// 1024 characters) of whatever `body` throws. The method's task is cancelled if the caller cancels.
  public static func unary<A: Decodable & SendableMetatype, R: Encodable & SendableMetatype>(
    _ body: @escaping @Sendable (S, A, CallContext) async throws -> R
  ) -> ServiceMethod {
    ServiceMethod { service in unaryHandler { (a: A, c: CallContext) in try await body(service, a, c) } }
  }

  /// A method that decodes an argument `A` and streams its reply: `body` writes chunks to the
  /// writer, each write waiting while the caller's window is full. The stream ends when
  /// `body` returns; if it throws, the caller's iteration throws that error at the end.
  public static func streaming<A: Decodable & SendableMetatype>(
    _ body: @escaping @Sendable (S, A, CallContext, StreamWriter) async throws -> Void
  ) -> ServiceMethod {
    ServiceMethod { service in
      { call in
        let argument = try decodeArgument(A.self, call)
        call.reply(ByteBuffer(), true)
        try await body(service, argument, call.context, call.writer)
      }
    }
  }

}

/// The handler of a unary method: decode `A`, run `body`, encode and send its `R`.
func unaryHandler<A: Decodable & SendableMetatype, R: Encodable & SendableMetatype>(
  _ body: @escaping @Sendable (A, CallContext) async throws -> R
) -> MethodHandler {
  { call in
    let argument = try decodeArgument(A.self, call)
    let result = try await body(argument, call.context)
    let reply: ByteBuffer
    do {
      reply = try Payload.encode(result, allocator: ByteBufferAllocator())
    } catch {
      throw BigmachineError.fatal(
        address: "", kind: .badArgument, message: "cannot encode the reply of \(call.method): \(error)")
    }
    call.reply(reply, false)
  }
}

private func decodeArgument<A: Decodable>(_ type: A.Type, _ call: ServedCall) throws -> A {
  do {
    return try Payload.decode(A.self, from: call.argument)
  } catch {
    throw BigmachineError.fatal(
      address: "", kind: .badArgument, message: "\(call.method) cannot decode its argument as \(A.self): \(error)")
  }
}

/// A service value as it travels to the worker.
struct ServiceSpec: Codable, Sendable {
  var name: String
  var json: String

  init<S: Service>(_ service: S) throws {
    name = S.name
    json = String(decoding: try Payload.encode(service), as: UTF8.self)
  }
}

/// The service types a program knows, by name: the worker's way from a `ServiceSpec` back to
/// a value.
struct ServiceTypes: Sendable {
  var types: [String: any Service.Type] = [:]

  init(_ list: [any Service.Type]) {
    for t in list { types[t.name] = t }
  }

  /// Decodes `spec` into its service and returns the handlers of its methods, keyed by
  /// `"Service.method"`. Throws a fatal `badArgument` error for an unknown or undecodable service.
  func instantiate(_ spec: ServiceSpec) throws -> (service: any Service, handlers: [String: MethodHandler]) {
    guard let type = types[spec.name] else {
      throw BigmachineError.fatal(
        address: "", kind: .badArgument,
        message: "service \(spec.name) is not registered in this binary (Bigmachine.start(system:services:))")
    }
    return try Self.make(type, spec.json)
  }

  private static func make<S: Service>(_ type: S.Type, _ json: String) throws -> (
    service: any Service, handlers: [String: MethodHandler]
  ) {
    let service: S
    do {
      service = try Payload.decode(S.self, from: Array(json.utf8))
    } catch {
      throw BigmachineError.fatal(address: "", kind: .badArgument, message: "cannot decode service \(S.name): \(error)")
    }
    var handlers: [String: MethodHandler] = [:]
    for (name, method) in S.methods { handlers["\(S.name).\(name)"] = method.make(service) }
    return (service, handlers)
  }
}

/// The methods a worker serves: the supervisor's, plus those of installed services.
final class MethodTable: MethodLookup, @unchecked Sendable {
  private let table = NIOLockedValueBox<[String: MethodHandler]>([:])

  func handler(for method: String) -> MethodHandler? { table.withLockedValue { $0[method] } }

  func add(_ handlers: [String: MethodHandler]) {
    table.withLockedValue { $0.merge(handlers) { _, new in new } }
  }
}
