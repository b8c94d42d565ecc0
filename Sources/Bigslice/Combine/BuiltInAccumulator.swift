import Frame

/// A built-in aggregate folded by the C combiner, with no closure per row.
final class BuiltInAccumulator: KeyedAccumulator {
  private let combiner: Combiner

  init(keyType: ColumnType, _ aggregate: Combiner.Aggregate, _ kind: ScalarKind) throws {
    combiner = try Combiner(keyType: keyType)
    try combiner.addAggregate(aggregate, valueType: kind)
  }

  func add(_ frame: Frame) throws {
    try combiner.add(keys: frame.columns[0], values: [frame.columns[1]], seed: combineSeed)
  }

  func finish() throws -> Frame? { combiner.groupCount > 0 ? try combiner.drainUnordered() : nil }

  var byteCount: Int { combiner.byteCount }

  func room(within limit: Int) -> Int { combiner.room(within: limit) }
}
