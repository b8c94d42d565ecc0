import Frame

/// A built-in aggregate folded by the C combiner over every value column, with no closure
/// per row.
final class BuiltInAccumulator: KeyedAccumulator {
  private let combiner: Combiner
  private let keys: Int

  /// Keys of the columns `keyTypes`, then one value column of each of `kinds`.
  init(keyTypes: [ColumnType], _ aggregate: Combiner.Aggregate, _ kinds: [ScalarKind]) throws {
    combiner = try Combiner(keyTypes: keyTypes)
    keys = keyTypes.count
    for kind in kinds { try combiner.addAggregate(aggregate, valueType: kind) }
  }

  func add(_ frame: Frame) throws {
    try combiner.add(
      keys: Array(frame.columns[..<keys]), values: Array(frame.columns[keys...]), seed: combineSeed)
  }

  func finish() throws -> Frame? { combiner.groupCount > 0 ? try combiner.drainUnordered() : nil }

  var byteCount: Int { combiner.byteCount }

  func room(within limit: Int) -> Int { combiner.room(within: limit) }
}
