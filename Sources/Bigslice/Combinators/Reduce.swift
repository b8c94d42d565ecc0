import Frame
import SliceIO

extension SliceProtocol {
  /// One row per key, its values combined with `f`, which must be associative and
  /// commutative (the order values meet in is unspecified). The key is every column but the
  /// last, the value the last: here one key column; the overloads below take keys of two and
  /// three columns (after `prefixed(2)` or `prefixed(3)`). Rows are combined map-side in every
  /// upstream task, then again after the shuffle. Keys are grouped by the C combiner (one
  /// hash-table probe per row, column-at-a-time); only `f` runs per row.
  public func reduce<K, V>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (V, V) -> V
  ) -> Slice<K, V> where Self == Slice<K, V> {
    Slice<K, V>(closureReduce(self.node, f, file: file, line: line))
  }

  /// `reduce` keyed on the first two columns.
  public func reduce<K1, K2, V>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (V, V) -> V
  ) -> Slice<K1, K2, V> where Self == Slice<K1, K2, V> {
    Slice<K1, K2, V>(closureReduce(self.node, f, file: file, line: line))
  }

  /// `reduce` keyed on the first three columns.
  public func reduce<K1, K2, K3, V>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (V, V) -> V
  ) -> Slice<K1, K2, K3, V> where Self == Slice<K1, K2, K3, V> {
    Slice<K1, K2, K3, V>(closureReduce(self.node, f, file: file, line: line))
  }
}

/// The node of a reduce of `input` with `f`, keyed on every column but the last.
private func closureReduce<V>(
  _ input: SliceNode, _ f: @escaping @Sendable (V, V) -> V, file: StaticString, line: UInt
) -> SliceNode {
  let schema = input.schema
  let keyTypes = Array(schema.types.dropLast())
  let valueType = schema.types[schema.count - 1]
  let factory: @Sendable () throws -> any KeyedAccumulator = {
    try makeAccumulator(keyTypes: keyTypes, valueType: valueType, f)
  }
  let problem: BigsliceError? =
    schema.prefix == schema.count - 1
    ? nil
    : .invalidArgument(
      "reduce with a closure keys on every column but the last, and this slice of \(schema.count) columns has key "
        + "prefix \(schema.prefix): call prefixed(\(schema.count - 1)) first")
  return combinedNode(input, op: "reduce", combining: .closure(factory), file: file, line: line, problem: problem)
}

extension Slice {
  /// One row per key with the sum, minimum or maximum of each value column (every column
  /// after the key prefix), computed in C with no closure per row. Values must be `Int`,
  /// `Int64` or `Double`.
  public func reduce(
    _ aggregate: Combiner.Aggregate, file: StaticString = #fileID, line: UInt = #line
  ) -> Slice<repeat each C> {
    Slice(builtInReduce(node, aggregate, file: file, line: line))
  }
}

/// The node of a built-in reduce of `input`: `aggregate` over each value column.
private func builtInReduce(
  _ input: SliceNode, _ aggregate: Combiner.Aggregate, file: StaticString, line: UInt
) -> SliceNode {
  let schema = input.schema
  let values = Array(schema.types[schema.prefix...])
  var problem: BigsliceError?
  if aggregate == .count {
    problem = .invalidArgument("built-in reduce(.count): use count() on the keys instead")
  }
  for type in values where !type.leafTypes.allSatisfy({ $0 == .scalar(.int64) || $0 == .scalar(.double) }) {
    problem =
      problem
      ?? .invalidArgument(
        "built-in reduce(.\(aggregate)) needs Int, Int64 or Double values (or records of them), not \(type)")
  }
  if values.flatMap(\.leafTypes).isEmpty && problem == nil {
    problem = .invalidArgument("built-in reduce(.\(aggregate)) of a slice with no value column after its key")
  }
  if let name = schema.types[..<schema.prefix].first(where: \.isBoxed) {
    problem = problem ?? .unsupportedType("built-in reduce keys of boxed type \(name); use reduce with a closure")
  }
  return combinedNode(
    input, op: "reduce", combining: .builtIn(aggregate, problem == nil ? values : []), file: file, line: line,
    problem: problem)
}

extension SliceProtocol {
  /// `reduce(_:)` of a (key, value) slice, typed as one: the general form's pack result does
  /// not convert to a (key, value) tuple where Swift needs one, as in
  /// `Dictionary(uniqueKeysWithValues:)` of its rows.
  public func reduce<K, V>(
    _ aggregate: Combiner.Aggregate, file: StaticString = #fileID, line: UInt = #line
  ) -> Slice<K, V> where Self == Slice<K, V> {
    Slice<K, V>(builtInReduce(self.node, aggregate, file: file, line: line))
  }
}

/// A node that shuffles `input` by its key and combines rows of equal keys as `combining` says
/// (map-side and after the shuffle); its schema is the input's.
private func combinedNode(
  _ input: SliceNode, op: String, combining: Combining, file: StaticString, line: UInt, problem: BigsliceError?
) -> SliceNode {
  SliceNode(
    op: op, location: location(file, line), schema: input.schema, shards: input.shards,
    deps: [Dependency(node: input, shuffle: true, partitioner: .hash)], combining: combining, problem: problem
  ) { _, deps, _ in deps[0] }
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
