import Frame

extension Slice {
  /// Each distinct row once. Rows are shuffled by the hash of all their columns and
  /// de-duplicated map-side and again after the shuffle; the key prefix is kept.
  public func distinct(file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    let all = Schema(schema.types, prefix: schema.count)
    let whole = SliceNode(
      op: "distinct", location: location(file, line), schema: all, shards: shards,
      deps: [Dependency(node: prefixed(schema.count, file: file, line: line).node, shuffle: true, partitioner: .hash)],
      combining: .closure({ DistinctAccumulator() })
    ) { _, deps, _ in deps[0] }
    return Slice(whole).prefixed(schema.prefix, file: file, line: line)
  }
}

/// Keeps one copy of each row (all columns form the key), compacting by a hash-order sort
/// whenever the new rows outnumber the distinct ones kept.
final class DistinctAccumulator: KeyedAccumulator {
  private var pending: [Frame] = []
  private var pendingRows = 0
  private var keptRows = 0

  func add(_ frame: Frame) throws {
    guard frame.count > 0 else { return }
    pending.append(frame)
    pendingRows += frame.count
    if pendingRows > max(65_536, keptRows) { try compact() }
  }

  func finish() throws -> Frame? {
    if pendingRows > 0 { try compact() }
    defer {
      pending = []
      keptRows = 0
    }
    return pending.first
  }

  var byteCount: Int { pending.reduce(0) { $0 + $1.byteCount } }

  private func compact() throws {
    let sorted = try Frame.concat(pending).sorted(.hash(seed: combineSeed))
    let hashes = try sorted.hashKeys(seed: combineSeed)
    var keep: [UInt32] = []
    for i in 0..<sorted.count where i == 0 || hashes[i] != hashes[i - 1] || !sorted.equalKeys(i, sorted, i - 1) {
      keep.append(UInt32(i))
    }
    let kept = sorted.gather(keep)
    pending = [kept]
    pendingRows = 0
    keptRows = kept.count
  }
}
