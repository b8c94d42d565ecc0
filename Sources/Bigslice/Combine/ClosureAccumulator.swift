import Frame

/// Sorts a (key columns, value) frame by (hash, key) — stably, so each key's values keep their
/// order — and folds the values of each key: `first` starts an accumulator from a key's first
/// value, `next` folds in each later one. The key is the frame's prefix. Returns one row per
/// key: (key columns, accumulator of `valueType`).
func foldKeyRuns<V, A>(
  _ frame: Frame, valueType: ColumnType, first: (V) -> A, next: (A, V) -> A
) throws -> Frame {
  let keys = frame.prefix
  let sorted = try frame.sorted(.hash(seed: combineSeed))
  let hashes = try sorted.hashKeys(seed: combineSeed)
  let values = ColumnGetter<V>(sorted.columns[keys])
  let out = ColumnAppender<A>(valueType, capacity: sorted.count)
  var starts: [UInt32] = []
  var i = 0
  let n = sorted.count
  while i < n {
    var acc = first(values.get(i))
    var j = i + 1
    while j < n && hashes[j] == hashes[i] && sorted.equalKeys(i, sorted, j) {
      acc = next(acc, values.get(j))
      j += 1
    }
    starts.append(UInt32(i))
    out.append(acc)
    i = j
  }
  return try Frame(sorted.columns[..<keys].map { $0.gather(starts) } + [out.finish()], prefix: keys)
}

/// Folds values per key with a user closure: the C combiner maps each key to a dense group id,
/// and the accumulators live in a Swift array indexed by it. Boxed keys, which the C table
/// cannot hold, are grouped by sorting instead.
final class ClosureAccumulator<V>: KeyedAccumulator {
  private let f: (V, V) -> V
  private let valueType: ColumnType
  private let combiner: Combiner?
  private let keys: Int
  private var accumulators: [V] = []
  private var pending: [Frame] = []
  private var pendingRows = 0
  private var combinedRows = 0

  /// Keys of the columns `keyTypes`, then one value column of `valueType`.
  init(keyTypes: [ColumnType], valueType: ColumnType, _ f: @escaping (V, V) -> V) throws {
    self.f = f
    self.valueType = valueType
    keys = keyTypes.count
    if keyTypes.contains(where: \.isBoxed) {
      combiner = nil
    } else {
      combiner = try Combiner(keyTypes: keyTypes)
    }
  }

  func add(_ frame: Frame) throws {
    guard frame.count > 0 else { return }
    guard let combiner else { return try addSorted(frame) }
    let n = frame.count
    let g = try combiner.groupIDs(keys: Array(frame.columns[..<keys]), seed: combineSeed)
    let values = ColumnGetter<V>(frame.columns[keys])
    // The loop works on a local array, uniquely held: no class property access, exclusivity
    // check or retain per row.
    var accumulators: [V] = []
    swap(&accumulators, &self.accumulators)
    defer { swap(&accumulators, &self.accumulators) }
    let ahead = 16
    let f = self.f
    withExtendedLifetime(frame) {
      for i in 0..<n {
        let group = Int(g[i])
        if group == accumulators.count {
          accumulators.append(values.get(i))
          continue
        }
        if i + ahead < n {
          // The accumulators are indexed at random: fetch the line of a later row now.
          let later = Int(g[i + ahead])
          if later < accumulators.count { Prefetch.forWriting(accumulators, at: later) }
        }
        accumulators[group] = f(accumulators[group], values.get(i))
      }
    }
  }

  func finish() throws -> Frame? {
    guard let combiner else {
      if pendingRows > 0 { try compact() }
      defer {
        pending = []
        combinedRows = 0
      }
      return pending.first
    }
    guard combiner.groupCount > 0 else { return nil }
    let keyColumns = try combiner.drainUnordered().columns
    let values = try Column.make(erasing: accumulators)
    accumulators = []
    return try Frame(keyColumns + [values], prefix: keys)
  }

  var byteCount: Int {
    guard let combiner else { return pending.reduce(0) { $0 + $1.byteCount } }
    return combiner.byteCount + accumulators.capacity * MemoryLayout<V>.stride
  }

  func room(within limit: Int) -> Int {
    guard let combiner else { return byteCount < limit ? Int.max : 0 }
    // The accumulators are one more per-group array, doubling as the combiner's do.
    return combiner.room(within: limit, extraPerGroup: MemoryLayout<V>.stride)
  }

  /// Boxed keys: buffer frames and fold them by sorting when the new rows outnumber the
  /// folded ones, so the buffer stays near one row per key.
  private func addSorted(_ frame: Frame) throws {
    pending.append(frame)
    pendingRows += frame.count
    if pendingRows > max(65_536, combinedRows) { try compact() }
  }

  private func compact() throws {
    let combined = try foldKeyRuns(
      try Frame.concat(pending), valueType: valueType, first: { (v: V) in v }, next: f)
    pending = [combined]
    pendingRows = 0
    combinedRows = combined.count
  }
}

/// A `ClosureAccumulator` for `V`, specialised by the compiler for the common value types.
///
/// Generic code whose type is known only at run time pays a metadata lookup and a value-witness
/// call per value, a large share of a closure `reduce`'s time. Behind a non-generic shell
/// the concrete type is visible, so the whole per-row loop is specialised.
func makeAccumulator<V>(keyTypes: [ColumnType], valueType: ColumnType, _ f: @escaping (V, V) -> V) throws
  -> any KeyedAccumulator
{
  switch V.self {
  case is Int.Type:
    return try IntAccumulator(
      ClosureAccumulator(keyTypes: keyTypes, valueType: valueType, unsafeBitCast(f, to: ((Int, Int) -> Int).self)))
  case is Double.Type:
    return try DoubleAccumulator(
      ClosureAccumulator(
        keyTypes: keyTypes, valueType: valueType, unsafeBitCast(f, to: ((Double, Double) -> Double).self)))
  case is Int64.Type:
    return try Int64Accumulator(
      ClosureAccumulator(keyTypes: keyTypes, valueType: valueType, unsafeBitCast(f, to: ((Int64, Int64) -> Int64).self))
    )
  default: return try ClosureAccumulator<V>(keyTypes: keyTypes, valueType: valueType, f)
  }
}

final class IntAccumulator: KeyedAccumulator {
  let inner: ClosureAccumulator<Int>
  init(_ inner: ClosureAccumulator<Int>) { self.inner = inner }
  func add(_ frame: Frame) throws { try inner.add(frame) }
  func finish() throws -> Frame? { try inner.finish() }
  var byteCount: Int { inner.byteCount }
  func room(within limit: Int) -> Int { inner.room(within: limit) }
}

final class Int64Accumulator: KeyedAccumulator {
  let inner: ClosureAccumulator<Int64>
  init(_ inner: ClosureAccumulator<Int64>) { self.inner = inner }
  func add(_ frame: Frame) throws { try inner.add(frame) }
  func finish() throws -> Frame? { try inner.finish() }
  var byteCount: Int { inner.byteCount }
  func room(within limit: Int) -> Int { inner.room(within: limit) }
}

final class DoubleAccumulator: KeyedAccumulator {
  let inner: ClosureAccumulator<Double>
  init(_ inner: ClosureAccumulator<Double>) { self.inner = inner }
  func add(_ frame: Frame) throws { try inner.add(frame) }
  func finish() throws -> Frame? { try inner.finish() }
  var byteCount: Int { inner.byteCount }
  func room(within limit: Int) -> Int { inner.room(within: limit) }
}
