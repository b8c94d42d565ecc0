import Frame
import SliceIO

extension SliceProtocol {
  /// One row per key with `f` folded over its values in arrival order, starting from
  /// `initial`. The key is every column but the last, the value the last: here one key
  /// column; the overloads below take keys of two and three columns (after `prefixed(2)` or
  /// `prefixed(3)`). Unlike `reduce`, `f` need not be associative, so there is no map-side
  /// combining; each shard's accumulators are held in memory (as the user asked), but not its
  /// rows: they stream through a table mapping each key to its accumulator.
  public func fold<K, V, A: Sendable>(
    _ initial: A, file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, V) -> A
  ) -> Slice<K, A> where Self == Slice<K, V> {
    let (types, problem) = columnTypes(K.self, A.self)
    return Slice<K, A>(foldNode(self.node, types, problem, initial, f, file: file, line: line))
  }

  /// `fold` keyed on the first two columns.
  public func fold<K1, K2, V, A: Sendable>(
    _ initial: A, file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, V) -> A
  ) -> Slice<K1, K2, A> where Self == Slice<K1, K2, V> {
    let (types, problem) = columnTypes(K1.self, K2.self, A.self)
    return Slice<K1, K2, A>(foldNode(self.node, types, problem, initial, f, file: file, line: line))
  }

  /// `fold` keyed on the first three columns.
  public func fold<K1, K2, K3, V, A: Sendable>(
    _ initial: A, file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, V) -> A
  ) -> Slice<K1, K2, K3, A> where Self == Slice<K1, K2, K3, V> {
    let (types, problem) = columnTypes(K1.self, K2.self, K3.self, A.self)
    return Slice<K1, K2, K3, A>(foldNode(self.node, types, problem, initial, f, file: file, line: line))
  }
}

/// The node of a fold of `input`, whose output columns are `types` (the key's, then `A`).
private func foldNode<V, A: Sendable>(
  _ input: SliceNode, _ types: [ColumnType], _ typeProblem: BigsliceError?, _ initial: A,
  _ f: @escaping @Sendable (A, V) -> A, file: StaticString, line: UInt
) -> SliceNode {
  let keys = types.count - 1
  let accumulatorType = types[keys]
  var problem = typeProblem
  if input.schema.prefix != keys {
    problem =
      problem
      ?? .invalidArgument(
        "fold keys on every column but the last, and this slice of \(keys + 1) columns has key prefix "
          + "\(input.schema.prefix): call prefixed(\(keys)) first")
  }
  return SliceNode(
    op: "fold", location: location(file, line), schema: Schema(types, prefix: keys), shards: input.shards,
    deps: [Dependency(node: input, shuffle: true, partitioner: .hash)], problem: problem
  ) { _, readers, _ in
    var done = false
    let input = readers[0]
    return FunctionReader {
      if done { return nil }
      done = true
      if types[..<keys].contains(where: \.isBoxed) {
        // Keys the C table cannot hold are grouped by sorting the whole shard.
        guard let frame = try readFrame(input), frame.count > 0 else { return nil }
        return try foldKeyRuns(
          try Frame(frame.columns, prefix: keys), valueType: accumulatorType, first: { (v: V) in f(initial, v) },
          next: f)
      }
      let fold = try StreamingFold(keyTypes: Array(types[..<keys]), initial: initial, f)
      while let frame = try input.read() { try fold.add(frame) }
      return try fold.finish()
    }
  }
}

/// A fold over rows as they stream by: the C combiner maps each key to a dense group id, in
/// order of first appearance, and the accumulators live in an array indexed by it, so each
/// row is folded into its key's accumulator in arrival order.
final class StreamingFold<V, A> {
  private let combiner: Combiner
  private let keys: Int
  private let initial: A
  private let f: (A, V) -> A
  private var accumulators: [A] = []

  init(keyTypes: [ColumnType], initial: A, _ f: @escaping (A, V) -> A) throws {
    combiner = try Combiner(keyTypes: keyTypes)
    keys = keyTypes.count
    self.initial = initial
    self.f = f
  }

  func add(_ frame: Frame) throws {
    let gids = try combiner.groupIDs(keys: Array(frame.columns[..<keys]), seed: combineSeed)
    let values = ColumnGetter<V>(frame.columns[keys])
    // A local, uniquely held array: no class property access or retain per row.
    var accumulators: [A] = []
    swap(&accumulators, &self.accumulators)
    defer { swap(&accumulators, &self.accumulators) }
    let (f, initial) = (self.f, self.initial)
    withExtendedLifetime(frame) {
      for i in 0..<gids.count {
        let group = Int(gids[i])
        if group == accumulators.count {
          accumulators.append(f(initial, values.get(i)))
        } else {
          accumulators[group] = f(accumulators[group], values.get(i))
        }
      }
    }
  }

  /// One row per key seen, or nil when there was none.
  func finish() throws -> Frame? {
    guard combiner.groupCount > 0 else { return nil }
    let keyColumns = try combiner.drainUnordered().columns
    let values = try Column.make(erasing: accumulators)
    accumulators = []
    return try Frame(keyColumns + [values], prefix: keys)
  }
}
