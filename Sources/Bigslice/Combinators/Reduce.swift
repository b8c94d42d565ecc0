import Frame
import SliceIO

extension SliceProtocol {
  /// One row per key, its values combined with `f`, which must be associative and
  /// commutative (the order values meet in is unspecified). Rows are combined map-side in
  /// every upstream task, then again after the shuffle. Keys are grouped by the C combiner
  /// (one hash-table probe per row, column-at-a-time); only `f` runs per row.
  public func reduce<K, V>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (V, V) -> V
  ) -> Slice<K, V> where Self == Slice<K, V> {
    let keyType = self.schema.types[0]
    let valueType = self.schema.types[1]
    let factory: @Sendable () throws -> any KeyedAccumulator = {
      try makeAccumulator(keyType: keyType, valueType: valueType, f)
    }
    return combined(op: "reduce", combining: .closure(factory), file: file, line: line)
  }

  /// One row per key with the sum, minimum or maximum of its values, computed in C with no
  /// closure per row. Values must be `Int`, `Int64` or `Double`.
  public func reduce<K, V>(
    _ aggregate: Combiner.Aggregate, file: StaticString = #fileID, line: UInt = #line
  ) -> Slice<K, V> where Self == Slice<K, V> {
    let kind: ScalarKind
    switch (aggregate, self.schema.types[1]) {
    case (.sum, .scalar(.int64)), (.min, .scalar(.int64)), (.max, .scalar(.int64)): kind = .int64
    case (.sum, .scalar(.double)), (.min, .scalar(.double)), (.max, .scalar(.double)): kind = .double
    default:
      return combined(
        op: "reduce", combining: .builtIn(.sum, .int64), file: file, line: line,
        problem: .invalidArgument("built-in reduce(.\(aggregate)) needs Int, Int64 or Double values, not \(V.self)"))
    }
    return combined(op: "reduce", combining: .builtIn(aggregate, kind), file: file, line: line)
  }

  private func combined<K, V>(
    op: String, combining: Combining, file: StaticString, line: UInt, problem: BigsliceError? = nil
  ) -> Slice<K, V> where Self == Slice<K, V> {
    var problem = problem
    if case .builtIn = combining, case .boxed(let name) = self.schema.types[0] {
      problem = problem ?? .unsupportedType("built-in reduce keys of boxed type \(name); use reduce with a closure")
    }
    let node = SliceNode(
      op: op, location: location(file, line), schema: Schema(self.schema.types, prefix: 1), shards: self.shards,
      deps: [Dependency(node: self.node, shuffle: true, partitioner: .hash)], combining: combining, problem: problem
    ) { _, deps, _ in deps[0] }
    return Slice<K, V>(node)
  }
}

extension SliceProtocol {
  /// The number of rows of each distinct value: `(value, count)`, combined in C.
  public func count<K>(file: StaticString = #fileID, line: UInt = #line) -> Slice<K, Int> where Self == Slice<K> {
    // A column of ones beside the values, column-at-a-time (no closure or value copy per
    // row), then the C combiner's sum.
    let ones: Slice<K, Int> = self.narrow(
      "count", schema: Schema([self.schema.types[0], .scalar(.int64)]), file: file, line: line
    ) { _, input in
      TransformReader(input) { frame in
        try Frame(
          [frame.columns[0], Column.scalar(Int.self, count: frame.count) { $0.initialize(repeating: 1) }], prefix: 1)
      }
    }
    return ones.reduce(Combiner.Aggregate.sum, file: file, line: line)
  }
}
