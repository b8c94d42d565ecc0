import Frame

extension Combining {
  /// A fresh accumulator for keys of the columns `keyTypes`, a built-in one sized for about
  /// `expectedGroups` groups.
  func accumulator(keyTypes: [ColumnType], expectedGroups: Int = 1024) throws -> any KeyedAccumulator {
    switch self {
    case .builtIn(let aggregate, let valueTypes):
      return try BuiltInAccumulator(
        keyTypes: keyTypes, aggregate, valueTypes: valueTypes, expectedGroups: expectedGroups)
    case .closure(let make): return try make()
    }
  }
}

/// How the shuffle into a node combines rows with equal keys, map-side and reduce-side.
enum Combining: @unchecked Sendable {
  /// A built-in aggregate over each value column (`Int64` or `Double`, or records of them,
  /// aggregated field by field), in C.
  case builtIn(Combiner.Aggregate, [ColumnType])
  /// A user closure over one value column, folded per key by an accumulator that the
  /// factory makes for each task (and again for each reading shard).
  case closure(@Sendable () throws -> any KeyedAccumulator)
}

/// Folds (key columns, value columns) rows into one row per key, frame by frame.
protocol KeyedAccumulator: AnyObject {
  func add(_ frame: Frame) throws
  /// One row per key, or nil when nothing was added; the accumulator is then empty again and
  /// takes more rows, including rows it returned before (the output has the input's schema).
  func finish() throws -> Frame?
  /// The memory it holds, in bytes.
  var byteCount: Int { get }
  /// How many new keys it can take before it would hold more than `limit` bytes, counting
  /// the moment it grows; 0 when it must be finished first.
  func room(within limit: Int) -> Int
}

extension KeyedAccumulator {
  /// Accumulators that buffer rows and compact them grow by the rows added, not by doubling:
  /// a whole frame goes in while they are under the limit.
  func room(within limit: Int) -> Int { byteCount < limit ? Int.max : 0 }
}

/// The seed of the hash that orders rows for combining (distinct from the partition hash).
let combineSeed: UInt64 = 0x9acb_0442
