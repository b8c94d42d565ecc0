import NIOConcurrencyHelpers
import NIOCore

/// A machine the driver started: a worker process (or, in tests, a server in this process)
/// with services installed, reached over one authenticated connection.
///
/// Its ``state`` only moves forward: starting, running, stopped. Once stopped, ``error`` says
/// why, calls in flight have failed, and new calls fail at once with a fatal
/// `machineStopped` error.
public final class Machine: Sendable, CustomStringConvertible {
  /// The lifecycle states, in order.
  public enum State: Int, Sendable, Comparable, CustomStringConvertible {
    /// Being started: the process launches, authenticates and installs its services.
    case starting
    /// Serving calls.
    case running
    /// Gone for good; ``Machine/error`` holds the cause.
    case stopped

    public static func < (a: State, b: State) -> Bool { a.rawValue < b.rawValue }
    public var description: String { ["starting", "running", "stopped"][rawValue] }
  }

  /// Where the machine is, e.g. `127.0.0.1:40123`. Output lines and errors are prefixed with it.
  public let address: String

  private struct Inner {
    var state = State.starting
    var error: BigmachineError?
    var maxprocs = 1
    var pid: Int32 = 0
    var connection: Connection?
    var waiters: [(State, CheckedContinuation<State, Never>)] = []
  }
  private let inner = NIOLockedValueBox(Inner())
  let launch: MachineLaunch

  init(launch: MachineLaunch) {
    self.address = launch.address
    self.launch = launch
  }

  public var description: String { "machine \(address) (\(state))" }

  /// The current state.
  public var state: State { inner.withLockedValue { $0.state } }

  /// Why the machine stopped; nil while it has not.
  public var error: BigmachineError? { inner.withLockedValue { $0.error } }

  /// Processors the machine offers (known once it runs; 1 before).
  public var maxprocs: Int { inner.withLockedValue { $0.maxprocs } }

  /// The worker's process id on its host (known once it runs; 0 before).
  public var processID: Int32 { inner.withLockedValue { $0.pid } }

  /// Waits until the state is at least `target` and returns the state then. A machine that
  /// stops while starting also ends a wait for `.running`: check the returned state (or
  /// ``error``). Returns at once if the state is already there.
  @discardableResult
  public func wait(for target: State) async -> State {
    await withCheckedContinuation { cont in
      let now: State? = inner.withLockedValue { s in
        if s.state >= target { return s.state }
        s.waiters.append((target, cont))
        return nil
      }
      if let now { cont.resume(returning: now) }
    }
  }

  // MARK: Calls

  /// Calls `method` ("Service.method") with `argument` and returns its reply.
  ///
  /// Waits while the machine is starting. Throws a fatal `machineStopped` error at once if the
  /// machine is stopped; a network error if the connection is lost during the call (the
  /// machine then stops); a remote error (kind and message intact) if the method throws; a
  /// fatal `unknownMethod` or `badArgument` error for a missing method or an argument or reply
  /// that does not decode, or that encodes to more than one frame (16 MiB; send such data as
  /// a stream). Cancelling the task cancels the method's task on the machine.
  /// Cost: one round trip plus JSON encoding of both values.
  public func call<A: Encodable & Sendable, R: Decodable & Sendable>(
    _ method: String, _ argument: A, returning: R.Type = R.self
  ) async throws -> R {
    let connection = try await ready()
    let (reply, stream) = try await connection.call(
      method: method, argument: try encode(argument, method), input: nil)
    if stream != nil { throw streamMismatch(method) }
    return try decode(R.self, reply, method)
  }

  /// Like ``call(_:_:returning:)``, and streams `input` to the method as its argument stream
  /// (``CallContext/input``) while the call runs. Each chunk is sent as is (no copy); the
  /// sender waits whenever the machine has 8 MiB unread, so `input` is read only as fast as
  /// the method consumes it. If `input` throws, the method's iteration throws that error.
  public func call<A: Encodable & Sendable, R: Decodable & Sendable, Input: AsyncSequence & Sendable>(
    _ method: String, _ argument: A, input: Input, returning: R.Type = R.self
  ) async throws -> R where Input.Element == ByteBuffer {
    let connection = try await ready()
    let (reply, stream) = try await connection.call(
      method: method, argument: try encode(argument, method), input: pump(input))
    if stream != nil { throw streamMismatch(method) }
    return try decode(R.self, reply, method)
  }

  /// Calls a streaming method and returns its reply stream once the method has started.
  /// Errors as for ``call(_:_:returning:)``; errors after the start arrive through the stream.
  public func stream<A: Encodable & Sendable>(_ method: String, _ argument: A) async throws -> ByteStream {
    let connection = try await ready()
    let (_, stream) = try await connection.call(method: method, argument: try encode(argument, method), input: nil)
    guard let stream else { throw streamMismatch(method) }
    return stream
  }

  /// Calls a streaming method with an argument stream too: both directions flow at once,
  /// each with its own window.
  public func stream<A: Encodable & Sendable, Input: AsyncSequence & Sendable>(
    _ method: String, _ argument: A, input: Input
  ) async throws -> ByteStream where Input.Element == ByteBuffer {
    let connection = try await ready()
    let (_, stream) = try await connection.call(
      method: method, argument: try encode(argument, method), input: pump(input))
    guard let stream else { throw streamMismatch(method) }
    return stream
  }

  /// Calls `method` like ``call(_:_:returning:)``, retrying while the error is temporary
  /// (network errors, remote errors marked temporary), waiting `backoff` between attempts.
  /// Returns the first success; rethrows the first non-temporary error, or the last error
  /// once `backoff.maxAttempts` are spent. Only cancellation and that limit bound it.
  public func retryCall<A: Encodable & Sendable, R: Decodable & Sendable>(
    _ method: String, _ argument: A, returning: R.Type = R.self, backoff: Backoff = .standard
  ) async throws -> R {
    var delay = backoff.initial
    var attempt = 1
    while true {
      do {
        return try await call(method, argument, returning: R.self)
      } catch let error as BigmachineError where error.isTemporary {
        if let limit = backoff.maxAttempts, attempt >= limit { throw error }
      }
      try await Task.sleep(for: delay)
      delay = min(backoff.maximum, delay * backoff.factor)
      attempt += 1
    }
  }

  /// The machine's memory and its worker process's resident set.
  public func memoryInfo() async throws -> MemoryInfo {
    try await call("Supervisor.memoryInfo", true)
  }

  /// Space in the machine's temporary directory.
  public func diskInfo() async throws -> DiskInfo {
    try await call("Supervisor.diskInfo", true)
  }

  /// The machine's load averages.
  public func loadInfo() async throws -> LoadInfo {
    try await call("Supervisor.loadInfo", true)
  }

  /// Stops the machine in order: asks the worker to exit, waits (up to a few seconds) until
  /// all of its output has arrived, then marks it stopped with a fatal `machineStopped`
  /// error "shut down". Does nothing to a stopped machine.
  public func shutdown() async {
    guard state != .stopped else { return }
    if let connection = inner.withLockedValue({ $0.connection }) {
      _ = try? await connection.call(
        method: "Supervisor.shutdown", argument: try encode(true, "Supervisor.shutdown"), input: nil)
    }
    await launch.finished(.seconds(5))
    stop(.fatal(address: address, kind: .machineStopped, message: "shut down"))
  }

  // MARK: Lifecycle (driver side)

  /// Connects, installs `services`, learns the machine's size, and marks it running; on any
  /// failure marks it stopped with the cause.
  func boot(services: [ServiceSpec], keepalive: KeepaliveConfig) async {
    do {
      let connection = try await launch.connect()
      let stopped: BigmachineError? = inner.withLockedValue { s in
        if s.state == .stopped { return s.error }
        s.connection = connection
        return nil
      }
      if stopped != nil {
        connection.close(.network(address: address, reason: "machine stopped while starting"))
        return
      }
      connection.onClose { [weak self] error in
        guard let self else { return }
        self.stop(.network(address: self.address, reason: "connection lost (\(error))"))
      }
      _ = try await rawCall(connection, "Supervisor.register", services, returning: Bool.self)
      let info = try await rawCall(connection, "Supervisor.info", true, returning: MachineDescription.self)
      let waiters: [CheckedContinuation<State, Never>] = inner.withLockedValue { s in
        guard s.state == .starting else { return [] }
        s.state = .running
        s.maxprocs = info.maxprocs
        s.pid = info.pid
        return takeWaiters(&s)
      }
      for w in waiters { w.resume(returning: .running) }
      keepAlive(self, over: connection, config: keepalive)
    } catch let error as BigmachineError {
      stop(error)
    } catch {
      stop(.fatal(address: address, kind: .startFailed, message: "\(error)"))
    }
  }

  /// Marks the machine stopped with `error` (the first cause wins), closes its connection,
  /// fails its calls, and kills what is left of it.
  func stop(_ error: BigmachineError) {
    let (waiters, connection, first): ([CheckedContinuation<State, Never>], Connection?, Bool) =
      inner.withLockedValue { s in
        guard s.state != .stopped else { return ([], nil, false) }
        s.state = .stopped
        s.error = error
        let all = s.waiters.map(\.1)
        s.waiters = []
        return (all, s.connection, true)
      }
    guard first else { return }
    connection?.close(.network(address: address, reason: "machine stopped: \(error)"))
    launch.kill()
    for w in waiters { w.resume(returning: .stopped) }
  }

  private func takeWaiters(_ s: inout Inner) -> [CheckedContinuation<State, Never>] {
    var ready: [CheckedContinuation<State, Never>] = []
    s.waiters.removeAll { target, cont in
      if s.state >= target {
        ready.append(cont)
        return true
      }
      return false
    }
    return ready
  }

  /// The connection once running; throws at once if stopped.
  private func ready() async throws -> Connection {
    let state = await wait(for: .running)
    let (connection, error) = inner.withLockedValue { ($0.connection, $0.error) }
    guard state == .running, let connection else {
      throw BigmachineError.fatal(
        address: address, kind: .machineStopped, message: "machine \(address) stopped: \(error.map { "\($0)" } ?? "")")
    }
    return connection
  }

  private func rawCall<A: Encodable, R: Decodable>(
    _ connection: Connection, _ method: String, _ argument: A, returning: R.Type
  ) async throws -> R {
    let (reply, _) = try await connection.call(method: method, argument: try encode(argument, method), input: nil)
    return try decode(R.self, reply, method)
  }

  private func pump<Input: AsyncSequence & Sendable>(_ input: Input) -> @Sendable (StreamWriter) async throws -> Void
  where Input.Element == ByteBuffer {
    { writer in
      for try await chunk in input { try await writer.write(chunk) }
    }
  }

  private func encode<A: Encodable>(_ argument: A, _ method: String) throws -> ByteBuffer {
    do {
      return try Payload.encode(argument, allocator: ByteBufferAllocator())
    } catch {
      throw BigmachineError.fatal(
        address: address, kind: .badArgument, message: "cannot encode the argument of \(method): \(error)")
    }
  }

  private func decode<R: Decodable>(_ type: R.Type, _ reply: ByteBuffer, _ method: String) throws -> R {
    do {
      return try Payload.decode(R.self, from: reply)
    } catch {
      throw BigmachineError.fatal(
        address: address, kind: .badArgument, message: "cannot decode the reply of \(method) as \(R.self): \(error)")
    }
  }

  private func streamMismatch(_ method: String) -> BigmachineError {
    .fatal(address: address, kind: .badArgument, message: "\(method) does not match the call's streaming form")
  }
}

/// Waits between the attempts of ``Machine/retryCall(_:_:returning:backoff:)``: `initial`,
/// then each wait `factor` times the last, at most `maximum`.
public struct Backoff: Sendable {
  public var initial: Duration
  public var maximum: Duration
  public var factor: Double
  /// Attempts in all before the last error is thrown; nil for no limit.
  public var maxAttempts: Int?

  /// Sets all four; see the type's description.
  public init(initial: Duration, maximum: Duration, factor: Double, maxAttempts: Int? = nil) {
    self.initial = initial
    self.maximum = maximum
    self.factor = factor
    self.maxAttempts = maxAttempts
  }

  /// 1 s, growing by 1.5× to 5 s, without a limit (the original's schedule).
  public static let standard = Backoff(initial: .seconds(1), maximum: .seconds(5), factor: 1.5)
}
