import Frame
import SliceIO

extension SliceProtocol {
  /// One row per key with `f` folded over its values in arrival order, starting from
  /// `initial`. Unlike `reduce`, `f` need not be associative, so there is no map-side
  /// combining; each shard's accumulators are held in memory (as the user asked), but not its
  /// rows: they stream through a table mapping each key to its accumulator.
  public func fold<K, V, A: Sendable>(
    _ initial: A, file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, V) -> A
  ) -> Slice<K, A> where Self == Slice<K, V> {
    let (types, typeProblem) = columnTypes(K.self, A.self)
    var problem = typeProblem
    if self.schema.prefix != 1 {
      problem = problem ?? .invalidArgument("fold needs a one-column key (unwrap it first)")
    }
    let node = SliceNode(
      op: "fold", location: location(file, line), schema: Schema(types), shards: self.shards,
      deps: [Dependency(node: self.node, shuffle: true, partitioner: .hash)], problem: problem
    ) { _, readers, _ in
      var done = false
      let input = readers[0]
      return FunctionReader {
        if done { return nil }
        done = true
        if case .boxed = types[0] {
          // Keys the C table cannot hold are grouped by sorting the whole shard.
          guard let frame = try readFrame(input), frame.count > 0 else { return nil }
          return try foldKeyRuns(frame, valueType: types[1], first: { (v: V) in f(initial, v) }, next: f)
        }
        let fold = try StreamingFold(keyType: types[0], initial: initial, f)
        while let frame = try input.read() { try fold.add(frame) }
        return try fold.finish()
      }
    }
    return Slice<K, A>(node)
  }
}

/// A fold over rows as they stream by: the C combiner maps each key to a dense group id, in
/// order of first appearance, and the accumulators live in an array indexed by it, so each
/// row is folded into its key's accumulator in arrival order.
final class StreamingFold<V, A> {
  private let combiner: Combiner
  private let initial: A
  private let f: (A, V) -> A
  private var accumulators: [A] = []

  init(keyType: ColumnType, initial: A, _ f: @escaping (A, V) -> A) throws {
    combiner = try Combiner(keyType: keyType)
    self.initial = initial
    self.f = f
  }

  func add(_ frame: Frame) throws {
    let gids = try combiner.groupIDs(keys: frame.columns[0], seed: combineSeed)
    let values = ColumnGetter<V>(frame.columns[1])
    for i in 0..<gids.count {
      let group = Int(gids[i])
      if group == accumulators.count {
        accumulators.append(f(initial, values.get(i)))
      } else {
        accumulators[group] = f(accumulators[group], values.get(i))
      }
    }
  }

  /// One row per key seen, or nil when there was none.
  func finish() throws -> Frame? {
    guard combiner.groupCount > 0 else { return nil }
    let keys = try combiner.drainUnordered().columns[0]
    let values = try Column.make(erasing: accumulators)
    accumulators = []
    return try Frame([keys, values], prefix: 1)
  }
}
