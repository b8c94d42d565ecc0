import CSupport

/// A total order over the keys of a frame's rows.
public enum SortOrder: Sendable, Hashable, Codable {
  /// The natural order of the key columns, column by column (see `Column.compare`).
  case keys
  /// By the seeded hash of the key, ties broken by the natural key order. Equal keys end up
  /// adjacent, and any key type sorts at radix speed: the order for grouping and spilling.
  case hash(seed: UInt64)
}

/// Per-row u64 prefixes of a sort key: prefix order never contradicts key order, so a merge
/// compares prefixes first and the full keys only on ties. When `exact`, equal prefixes mean
/// equal keys and no tie-break is needed.
public struct SortPrefixes: Sendable {
  public var values: [UInt64]
  public var exact: Bool
}

extension Frame {
  /// The prefixes of every row's key under `order`.
  public func sortPrefixes(_ order: SortOrder) throws -> SortPrefixes {
    var exact = true
    let values = try [UInt64](unsafeUninitializedCapacity: count) { out, n in
      exact = try writeSortPrefixes(order, into: out.baseAddress!)
      n = count
    }
    return SortPrefixes(values: values, exact: exact)
  }

  /// The permutation that sorts the rows by `order`, stable (equal keys keep their order).
  ///
  /// Scalar keys sort entirely by LSD radix sort, one stable pass set per key column from the
  /// last to the first. Other keys radix-sort on their prefixes, then order each run of equal
  /// prefixes by comparing full keys.
  ///
  /// The result lives in `buffers` and is valid until their next use. Reusing buffers matters:
  /// first touching fresh memory (its page faults) costs more than the sort's passes over it.
  package func sortPermutation(_ order: SortOrder, buffers: SortBuffers) throws -> UnsafeBufferPointer<UInt32> {
    let n = count
    buffers.reserve(n)
    let perm = buffers.perm
    bs_iota_u32(perm, n)
    let result = UnsafeBufferPointer(start: perm, count: n)
    guard n > 1 else { return result }

    let keys = keyLeaves
    if order == .keys, keys.allSatisfy({ $0.type.scalarWidth != nil }) {
      for (k, column) in keys.enumerated().reversed() {
        if k == keys.count - 1 {
          column.writeOrderPrefixes(into: buffers.keys)
        } else {
          // Later passes sort the keys in the order the previous passes left the rows in.
          column.writeOrderPrefixes(into: buffers.tmpKeys)
          _ = bs_gather_fixed(buffers.tmpKeys, 8, perm, n, buffers.keys)
        }
        buffers.radixSort(n)
      }
      return result
    }

    let exact = try writeSortPrefixes(order, into: buffers.keys)
    buffers.radixSort(n)
    if !exact { breakTies(sortedPrefixes: buffers.keys, perm: perm) }
    return result
  }

  /// The permutation that sorts the rows by `order`, as a new array.
  package func sortPermutation(_ order: SortOrder) throws -> [UInt32] {
    let buffers = SortBuffers()
    return try withExtendedLifetime(buffers) { Array(try sortPermutation(order, buffers: buffers)) }
  }

  /// This frame with its rows sorted by `order`.
  public func sorted(_ order: SortOrder, buffers: SortBuffers = SortBuffers()) throws -> Frame {
    gather(try sortPermutation(order, buffers: buffers))
  }

  /// The rows of `frames` (of one schema) sorted by key, as one frame, stable.
  ///
  /// A frame that is a single scalar key column, the common case of sorting keys, takes a
  /// faster path: the keys are transformed straight from every frame into the sort buffer,
  /// sorted without a permutation, and transformed back in place, so there is neither a
  /// concatenation nor a gather. Other frames are concatenated and sorted by
  /// permutation.
  public static func sorted(_ frames: [Frame], schema: Schema, buffers: SortBuffers = SortBuffers()) throws -> Frame {
    let total = frames.reduce(0) { $0 + $1.count }
    guard total > 0 else { return try Frame.empty(schema) }
    guard schema.types.count == 1, schema.prefix == 1, case .scalar(let kind) = schema.types[0] else {
      return try (frames.count == 1 ? frames[0] : Frame.concat(frames)).sorted(.keys, buffers: buffers)
    }
    // 8-byte keys are sorted in the new column's own buffer and turned back into values
    // there, so the column is the only buffer that outlives the sort. The scratch buffers go
    // back to the pool of big buffers, already faulted in, where the next sort finds them.
    let inPlace = kind.width == 8
    let storage = ScalarStorage(byteCount: total * kind.width)
    let scratchBytes = total * 8 * (inPlace ? 1 : 2)
    guard let scratch = bs_buffer_alloc(scratchBytes) else {
      throw FrameError.outOfMemory("sort scratch for \(total) keys")
    }
    defer { bs_buffer_free(scratch, scratchBytes) }
    let spare = scratch.assumingMemoryBound(to: UInt64.self)
    let keys = inPlace ? storage.base.assumingMemoryBound(to: UInt64.self) : spare + total
    var at = 0
    for frame in frames {
      frame.columns[0].writeOrderPrefixes(into: keys + at)
      at += frame.count
    }
    let code = bs_radix_sort_u64(keys, nil, total, spare, nil)
    precondition(code == BS_OK, "radix sort of \(total) keys: \(String(cString: bs_error_name(code.rawValue)))")
    _ = bs_radix_keys_inverse(kind.radixKind, keys, total, storage.base)
    let column = Column(type: schema.types[0], count: total, offset: 0, storage: .scalar(storage))
    return Frame(unchecked: [column], count: total, prefix: 1)
  }

  /// Writes the key prefixes under `order` to `out[0..<count]`; returns whether they are exact.
  func writeSortPrefixes(_ order: SortOrder, into out: UnsafeMutablePointer<UInt64>) throws -> Bool {
    switch order {
    case .hash(let seed):
      try hashKeys(seed: seed, into: out)
      return false
    case .keys:
      let keys = keyLeaves
      guard let first = keys.first else {
        out.initialize(repeating: 0, count: count)
        return true
      }
      first.writeOrderPrefixes(into: out)
      return keys.count == 1 && first.type.scalarWidth != nil
    }
  }

  /// Orders each run of equal prefixes by the full key, then by row index (stability).
  private func breakTies(sortedPrefixes: UnsafeMutablePointer<UInt64>, perm: UnsafeMutablePointer<UInt32>) {
    var start = 0
    let n = count
    while start < n {
      var end = start + 1
      while end < n && sortedPrefixes[end] == sortedPrefixes[start] { end += 1 }
      if end - start > 1 {
        var run = UnsafeMutableBufferPointer(start: perm + start, count: end - start)
        run.sort { a, b in
          let c = compareKeys(Int(a), self, Int(b))
          return c != 0 ? c < 0 : a < b
        }
      }
      start = end
    }
  }
}

/// Reusable scratch memory for radix sorts: keys, permutation and their ping-pong copies.
/// Not thread-safe: one per sorting thread.
public final class SortBuffers {
  /// Rows the buffers hold.
  public private(set) var capacity = 0
  var keys = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
  var tmpKeys = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
  var perm = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
  var tmpPerm = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

  public init() {}

  deinit { release() }

  private func release() {
    keys.deallocate()
    tmpKeys.deallocate()
    perm.deallocate()
    tmpPerm.deallocate()
  }

  func reserve(_ n: Int) {
    guard n > capacity else { return }
    release()
    keys = .allocate(capacity: n)
    tmpKeys = .allocate(capacity: n)
    perm = .allocate(capacity: n)
    tmpPerm = .allocate(capacity: n)
    capacity = n
  }

  /// Sorts `keys[0..<n]` carrying `perm` along.
  func radixSort(_ n: Int) {
    let code = bs_radix_sort_u64(keys, perm, n, tmpKeys, tmpPerm)
    precondition(code == BS_OK, "radix sort of \(n) keys: \(String(cString: bs_error_name(code.rawValue)))")
  }
}

extension Column {
  /// Per-row u64s whose unsigned order agrees with `compare`: the exact order-preserving
  /// transform for scalars, the first 8 bytes big-endian (zero padded) for strings and byte
  /// arrays, its first leaf's for a record, and 0 for boxed values (every comparison then goes
  /// to the full key).
  func writeOrderPrefixes(into out: UnsafeMutablePointer<UInt64>) {
    switch storage {
    case .scalar(let s):
      guard case .scalar(let kind) = type else { preconditionFailure("scalar storage without scalar type") }
      _ = bs_radix_keys(kind.radixKind, s.base + offset * kind.width, count, out)
    case .bytes:
      let v = variableWidth
      for i in 0..<count {
        let start = Int(v.offsets[i])
        let len = min(Int(v.offsets[i + 1]) - start, 8)
        var key: UInt64 = 0
        for b in 0..<len { key |= UInt64(v.bytes[start + b]) << (56 - 8 * b) }
        out[i] = key
      }
    case .boxed:
      out.initialize(repeating: 0, count: count)
    case .record:
      // The first field leads the order.
      guard let first = leaves.first else {
        out.initialize(repeating: 0, count: count)
        return
      }
      first.writeOrderPrefixes(into: out)
    }
  }
}
