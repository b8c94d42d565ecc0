import Frame
import Logging

/// The rows of a computed slice, shard by shard, held in memory.
///
/// A result is also a slice (`slice`) that other jobs read without computing it again, and
/// can be passed as an argument to a func. `discard()` releases its rows; reading it after
/// that computes them again.
///
/// Reading the rows can fail: a shard that was discarded, or whose machine was lost, is
/// computed again, and that can throw. So every way to read them throws: `rows()`,
/// `makeRowReader()` and `count` from synchronous code, `for try await` (`makeAsyncIterator()`)
/// from async code.
public struct SliceResult<each C>: @unchecked Sendable {
  let tasks: [ShardTask]
  /// The session that ran it; nil on a machine, where a func received it as an argument.
  private let session: Session?
  /// On a machine: notes a func body that reads the rows (see `ResultOnMachine`).
  private let onMachine: ResultOnMachine?
  /// The column types and key prefix.
  public let schema: Schema
  /// The user counters of every task, summed.
  public let metrics: [String: Int]
  /// The computed slice: reading it reads the stored rows, shard for shard.
  public let slice: Slice<repeat each C>

  init(tasks: [ShardTask], slice: Slice<repeat each C>, session: Session, counters: [String: Int]) {
    self.tasks = tasks
    self.session = session
    onMachine = nil
    schema = slice.schema
    metrics = counters
    let node = SliceNode(
      op: "result", location: slice.node.location, schema: slice.schema, shards: tasks.count,
      deps: [Dependency(node: slice.node, shuffle: false, partitioner: .hash)]
    ) { _, deps, _ in deps[0] }
    node.resultTasks = tasks
    self.slice = Slice(node)
  }

  /// The result of invocation `roots[0].ref.invocation` as a machine compiled it, for a func
  /// that takes it as an argument: there it is only a slice over those tasks.
  init(onMachine roots: [ShardTask], use: ResultOnMachine) {
    tasks = roots
    session = nil
    onMachine = use
    let top = Slice<repeat each C>(roots[0].chain[0])
    schema = top.schema
    metrics = [:]
    let node = SliceNode(
      op: "result", location: top.node.location, schema: top.schema, shards: roots.count,
      deps: [Dependency(node: top.node, shuffle: false, partitioner: .hash)]
    ) { _, deps, _ in deps[0] }
    node.resultTasks = roots
    slice = Slice(node)
  }

  var logger: Logger { session?.logger ?? Logger(label: "bigslice") }

  /// The session, or nil after noting that a func body on a machine reads the rows.
  private func driverSession() -> Session? {
    if let session { return session }
    onMachine?.readRows.store(true, ordering: .relaxed)
    return nil
  }

  /// Computes the rows again if they were discarded (or lost).
  /// - Throws: what computing them throws.
  public func reload() throws {
    guard let session = driverSession() else { throw BigsliceError.invalidArgument(ResultOnMachine.message) }
    guard tasks.contains(where: { !$0.isComputed }) else { return }
    try session.evaluate(tasks, name: slice.name, counters: Counters())
  }

  /// Computes the rows again if they were discarded (or lost), from async code.
  /// - Throws: what computing them throws; `CancellationError`.
  public func reload() async throws {
    guard let session = driverSession() else { throw BigsliceError.invalidArgument(ResultOnMachine.message) }
    guard tasks.contains(where: { !$0.isComputed }) else { return }
    try await session.evaluate(tasks, name: slice.name, counters: Counters())
  }

  /// Releases the rows. The result stays usable: reading it or a slice made from it
  /// computes them again.
  public func discard() {
    guard driverSession() != nil else { return }
    for task in tasks { task.output = nil }
  }

  /// The frames of every shard, in shard order, read into memory (from the machines that hold
  /// them, on machines).
  /// - Throws: what computing a discarded or lost shard again throws.
  public var frames: [Frame] {
    get throws { try (0..<shards).flatMap(frames(shard:)) }
  }

  /// The number of shards.
  public var shards: Int { tasks.count }

  /// The frames of shard `shard`, read into memory.
  /// - Throws: what computing it again throws.
  public func frames(shard: Int) throws -> [Frame] {
    var out: [Frame] = []
    try forEachFrame(shard: shard) { out.append($0) }
    return out
  }

  /// Calls `body` with each frame of shard `shard` in turn, streamed (from its machine, on
  /// machines), none kept.
  /// - Throws: what computing it again throws, or what `body` throws.
  func forEachFrame(shard: Int, _ body: (Frame) throws -> Void) throws {
    guard driverSession() != nil else { return }
    let feed = ResultFeed(tasks: [tasks[shard]], result: reload, logger: logger)
    while let frame = try feed.next() { try body(frame) }
  }

  /// The number of rows; a discarded or lost result is computed again first.
  /// - Throws: what computing it again throws.
  public var count: Int {
    get throws {
      guard driverSession() != nil else { return 0 }
      if tasks.contains(where: { !$0.isComputed }) { try reload() }
      return tasks.reduce(0) { $0 + ($1.output?.rows ?? 0) }
    }
  }

  /// Reads the rows one at a time, shard by shard, reading each shard's frames as it goes: on
  /// machines, streaming them from the machine that holds them, so the result is never all in
  /// memory. A discarded result, or a shard whose machine is lost while it is read, is
  /// computed again (and the rows already seen are skipped); when that fails, the reader's
  /// `next()` throws.
  public func makeRowReader() -> RowReader<repeat each C> {
    RowReader(ResultFeed(tasks: driverSession() == nil ? [] : tasks, result: reload, logger: logger))
  }

  /// Every row, in shard order, read into memory as frames: a sequence of typed rows
  /// (`for (k, v) in try result.rows()`, `Array(try result.rows())`).
  /// - Throws: what computing a discarded or lost shard again throws.
  public func rows() throws -> ResultRows<repeat each C> { ResultRows(try frames) }
}

extension SliceResult: ResultArgument {
  var resultTasks: [ShardTask] { tasks }
  func belongs(to session: Session) -> Bool { self.session === session }
  static func onMachine(_ roots: [ShardTask], use: ResultOnMachine) throws -> Any {
    let expected = columnTypes(repeat (each C).self).0
    let found = roots[0].chain[0].schema.types
    guard found == expected else {
      throw BigsliceError.invalidArgument(
        "a result argument of columns \(expected) refers to a run whose slice has columns \(found)")
    }
    return SliceResult(onMachine: roots, use: use)
  }
}
