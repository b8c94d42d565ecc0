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
    switch order {
    case .hash(let seed):
      return SortPrefixes(values: try hashKeys(seed: seed), exact: false)
    case .keys:
      let keys = keyColumns
      guard let first = keys.first else { return SortPrefixes(values: [UInt64](repeating: 0, count: count), exact: true) }
      let values = first.orderPrefixes()
      let exact = keys.count == 1 && first.type.scalarWidth != nil
      return SortPrefixes(values: values, exact: exact)
    }
  }

  /// The permutation that sorts the rows by `order`, stable (equal keys keep their order).
  ///
  /// Scalar keys sort entirely by LSD radix sort, one stable pass set per key column from the
  /// last to the first. Other keys radix-sort on their prefixes, then order each run of equal
  /// prefixes by comparing full keys.
  public func sortPermutation(_ order: SortOrder) throws -> [UInt32] {
    let n = count
    var perm = [UInt32](unsafeUninitializedCapacity: n) { buf, count in
      bs_iota_u32(buf.baseAddress, n)
      count = n
    }
    guard n > 1 else { return perm }
    // Scratch for the radix passes: written before read, so left uninitialised.
    var tmpKeys = [UInt64](unsafeUninitializedCapacity: n) { _, count in count = n }
    var tmpPerm = [UInt32](unsafeUninitializedCapacity: n) { _, count in count = n }

    let keys = keyColumns
    if order == .keys, keys.allSatisfy({ $0.type.scalarWidth != nil }) {
      for (k, column) in keys.enumerated().reversed() {
        var radix = column.orderPrefixes()
        if k != keys.count - 1 {
          // Later passes sort the keys in the order the previous passes left the rows in.
          radix = perm.map { radix[Int($0)] }
        }
        radixSort(&radix, &perm, &tmpKeys, &tmpPerm)
      }
      return perm
    }

    var prefixes = try sortPrefixes(order)
    radixSort(&prefixes.values, &perm, &tmpKeys, &tmpPerm)
    if !prefixes.exact {
      breakTies(sortedPrefixes: prefixes.values, perm: &perm)
    }
    return perm
  }

  /// This frame with its rows sorted by `order`.
  public func sorted(_ order: SortOrder) throws -> Frame {
    gather(try sortPermutation(order))
  }

  /// Orders each run of equal prefixes by the full key, then by row index (stability).
  private func breakTies(sortedPrefixes: [UInt64], perm: inout [UInt32]) {
    var start = 0
    let n = sortedPrefixes.count
    while start < n {
      var end = start + 1
      while end < n && sortedPrefixes[end] == sortedPrefixes[start] { end += 1 }
      if end - start > 1 {
        perm[start..<end].sort { a, b in
          let c = compareKeys(Int(a), self, Int(b))
          return c != 0 ? c < 0 : a < b
        }
      }
      start = end
    }
  }
}

private func radixSort(_ keys: inout [UInt64], _ perm: inout [UInt32], _ tmpKeys: inout [UInt64], _ tmpPerm: inout [UInt32]) {
  let n = keys.count
  keys.withUnsafeMutableBufferPointer { k in
    perm.withUnsafeMutableBufferPointer { p in
      tmpKeys.withUnsafeMutableBufferPointer { tk in
        tmpPerm.withUnsafeMutableBufferPointer { tp in
          _ = bs_radix_sort_u64(k.baseAddress, p.baseAddress, n, tk.baseAddress, tp.baseAddress)
        }
      }
    }
  }
}

extension Column {
  /// Per-row u64s whose unsigned order agrees with `compare`: the exact order-preserving
  /// transform for scalars, the first 8 bytes big-endian (zero padded) for strings and byte
  /// arrays, and 0 for boxed values (every comparison then goes to the full key).
  func orderPrefixes() -> [UInt64] {
    [UInt64](unsafeUninitializedCapacity: count) { out, n in
      n = count
      switch storage {
      case .scalar(let s):
        let kind: ScalarKind
        if case .scalar(let k) = type { kind = k } else { preconditionFailure("scalar storage without scalar type") }
        _ = bs_radix_keys(kind.radixKind, s.base + offset * kind.width, count, out.baseAddress)
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
        out.initialize(repeating: 0)
      }
    }
  }
}
