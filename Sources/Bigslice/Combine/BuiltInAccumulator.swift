import Frame

/// A built-in aggregate folded by the C combiner over every value column, with no closure
/// per row. A record value is aggregated field by field (its leaf columns).
final class BuiltInAccumulator: KeyedAccumulator {
  private let combiner: Combiner
  private let keys: Int
  /// The value columns' types when one is a record, to assemble the drained leaves; else nil.
  private let recordValues: [ColumnType]?

  /// Keys of the columns `keyTypes`, then value columns of `valueTypes`, whose leaves are all
  /// `Int64` or `Double`; a table sized for about `expectedGroups` groups.
  init(keyTypes: [ColumnType], _ aggregate: Combiner.Aggregate, valueTypes: [ColumnType], expectedGroups: Int = 1024)
    throws
  {
    combiner = try Combiner(keyTypes: keyTypes, expectedGroups: expectedGroups)
    keys = keyTypes.count
    recordValues = valueTypes.contains { $0.fields != nil } ? valueTypes : nil
    for leaf in valueTypes.flatMap(\.leafTypes) {
      guard case .scalar(let kind) = leaf else {
        throw FrameError.unsupported("built-in \(aggregate) over \(leaf) values (use int64 or double)")
      }
      try combiner.addAggregate(aggregate, valueType: kind)
    }
  }

  func add(_ frame: Frame) throws {
    let values = frame.columns[keys...]
    try combiner.add(
      keys: Array(frame.columns[..<keys]), values: recordValues == nil ? Array(values) : values.flatMap(\.leaves),
      seed: combineSeed)
  }

  func finish() throws -> Frame? {
    guard combiner.groupCount > 0 else { return nil }
    let drained = try combiner.drainUnordered()
    guard let recordValues else { return drained }
    let values = try Column.assemble(recordValues, count: drained.count, from: Array(drained.columns[keys...]))
    return try Frame(Array(drained.columns[..<keys]) + values, prefix: keys)
  }

  var byteCount: Int { combiner.byteCount }

  func room(within limit: Int) -> Int { combiner.room(within: limit) }
}
