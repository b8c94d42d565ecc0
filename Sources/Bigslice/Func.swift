import Synchronization

/// A job: a registered function from arguments to a slice. Swift globals are initialised
/// lazily, so funcs are keyed by a stable name, not by creation order; every process that runs
/// a job (the driver and each worker) must create the same funcs under the same keys before
/// the session starts. Creating a `Func` registers it.
public final class Func<each C>: @unchecked Sendable {
  /// The stable key the func is registered under.
  public let key: String
  /// The argument types, in order.
  public let argumentTypes: [Any.Type]
  let body: ([Any]) throws -> Slice<repeat each C>

  /// Registers `body` under `key`. Registering two funcs under one key makes every run of
  /// that key fail with `BigsliceError.duplicateFunc`.
  public init<each A>(_ key: String, _ body: @escaping (repeat each A) throws -> Slice<repeat each C>) {
    self.key = key
    var types: [Any.Type] = []
    for t in repeat (each A).self { types.append(t) }
    argumentTypes = types
    self.body = { args in
      var k = -1
      func next<T>(_: T.Type) -> T {
        k += 1
        return args[k] as! T
      }
      return try body(repeat next((each A).self))
    }
    let erased = self.body
    FuncRegistry.register(
      key: key, func: self,
      signature: "(\(types.map { "\($0)" }.joined(separator: ", "))) -> \(Slice<repeat each C>.self)",
      argumentTypes: types, invoke: { try erased($0).node })
  }

  /// The slice for `args`, after checking that the func is registered and the types match.
  func invoke<each A>(_ args: repeat each A) throws -> Slice<repeat each C> {
    try body(try check(repeat each args))
  }

  /// The arguments as values, after checking that the func is registered and the types match.
  func check<each A>(_ args: repeat each A) throws -> [Any] {
    try FuncRegistry.check(key: key, func: self)
    var values: [Any] = []
    var found: [Any.Type] = []
    for a in repeat each args { values.append(a) }
    // The static types: an argument passed as an existential or a subclass still matches.
    for t in repeat (each A).self { found.append(t) }
    guard found.count == argumentTypes.count, zip(found, argumentTypes).allSatisfy({ $0 == $1 }) else {
      throw BigsliceError.wrongArguments(
        func: key, expected: argumentTypes.map { "\($0)" }, found: found.map { "\($0)" })
    }
    return values
  }
}

/// The process-wide table of funcs by key.
public enum FuncRegistry {
  private struct Entry: @unchecked Sendable {
    let instance: ObjectIdentifier
    let signature: String
    var duplicate: Bool
    let argumentTypes: [Any.Type]
    let invoke: ([Any]) throws -> SliceNode
  }

  private static let table = Mutex<[String: Entry]>([:])

  static func register(
    key: String, func instance: AnyObject, signature: String, argumentTypes: [Any.Type],
    invoke: @escaping ([Any]) throws -> SliceNode
  ) {
    table.withLock {
      if $0[key] != nil {
        $0[key]!.duplicate = true
      } else {
        $0[key] = Entry(
          instance: ObjectIdentifier(instance), signature: signature, duplicate: false, argumentTypes: argumentTypes,
          invoke: invoke)
      }
    }
  }

  /// The argument types and the body of the func registered under `key` (on a worker, which
  /// has only the key).
  /// - Throws: `unregisteredFunc`, `duplicateFunc`.
  static func lookup(_ key: String) throws -> (argumentTypes: [Any.Type], invoke: ([Any]) throws -> SliceNode) {
    guard let entry = table.withLock({ $0[key] }) else { throw BigsliceError.unregisteredFunc(key) }
    if entry.duplicate { throw BigsliceError.duplicateFunc(key) }
    return (entry.argumentTypes, entry.invoke)
  }

  static func check(key: String, func instance: AnyObject) throws {
    let entry = table.withLock { $0[key] }
    guard let entry else { throw BigsliceError.unregisteredFunc(key) }
    if entry.duplicate { throw BigsliceError.duplicateFunc(key) }
    guard entry.instance == ObjectIdentifier(instance) else { throw BigsliceError.unregisteredFunc(key) }
  }

  /// The signature of the func registered under `key`, nil if there is none.
  static func signature(_ key: String) -> String? { table.withLock { $0[key]?.signature } }

  /// The sorted `key: signature` lines of every registered func: two processes with the
  /// same fingerprint compile every job the same way.
  public static var fingerprint: [String] {
    table.withLock { $0.map { "\($0.key): \($0.value.signature)" }.sorted() }
  }
}
