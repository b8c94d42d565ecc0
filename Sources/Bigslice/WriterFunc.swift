import Frame
import SliceIO

/// A batch of typed rows, as a writer or scanner sees it.
public struct RowBatch<each C> {
  private let getters: Getters<repeat each C>?
  /// The rows in the batch.
  public let count: Int
  /// The batch as a frame.
  public let frame: Frame

  init(_ frame: Frame) {
    self.frame = frame
    count = frame.count
    getters = frame.count > 0 ? Getters<repeat each C>(frame) : nil
  }

  /// Row `i` as a tuple.
  public subscript(i: Int) -> (repeat each C) {
    precondition(i >= 0 && i < count, "row \(i) out of 0..<\(count)")
    let g = getters!.getters
    return (repeat (each g).get(i))
  }
}

extension Slice {
  /// The same rows, passed through unchanged, after `write` has seen each batch. `write` is
  /// called with the shard, its state (made by `initial(shard)`), the batch, and nil; at the
  /// end once more with a nil batch and the error that ended the shard, or nil when it ended
  /// normally. A throw from `write` fails the task.
  public func writerFunc<S>(
    initial: @escaping @Sendable (Int) throws -> S, file: StaticString = #fileID, line: UInt = #line,
    _ write:
      @escaping @Sendable (_ shard: Int, _ state: inout S, _ batch: RowBatch<repeat each C>?, _ error: Error?) throws
      -> Void
  ) -> Slice<repeat each C> {
    narrow("writer", schema: schema, file: file, line: line) { shard, input in
      var state = try initial(shard)
      return FunctionReader {
        let frame: Frame?
        do {
          frame = try input.read()
        } catch {
          try write(shard, &state, nil, error)
          throw error
        }
        guard let frame else {
          try write(shard, &state, nil, nil)
          return nil
        }
        try write(shard, &state, RowBatch<repeat each C>(frame), nil)
        return frame
      }
    }
  }

  /// The key prefix reset to the first column (the inverse of `prefixed`).
  public func unwrap(file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    prefixed(1, file: file, line: line)
  }

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
