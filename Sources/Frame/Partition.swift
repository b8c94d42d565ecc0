import CSupport

extension Frame {
  /// Splits the rows into `partitions` frames by hash: row `i` goes to partition
  /// `(hashes[i] * partitions) >> 64` (multiply-shift, monotone in the hash). Row order is
  /// kept within each partition. Cost: one counting sort and one gather per column.
  /// - Precondition: `partitions >= 1`, and `hashes` holds `count` values.
  package func partition(hashes: UnsafePointer<UInt64>, into partitions: Int) -> [Frame] {
    precondition(partitions >= 1 && partitions <= Int(UInt32.max), "partition count \(partitions) out of range")
    if partitions == 1 { return [self] }
    var parts = [UInt32](repeating: 0, count: count)
    parts.withUnsafeMutableBufferPointer { _ = bs_hash_partition(hashes, count, UInt32(partitions), $0.baseAddress) }
    return partition(ids: parts, into: partitions)
  }

  /// Each row's partition by the hash of its key (seed 0) among `partitions`, as
  /// `Frame.partitionIDs(hashes:partitions:)` gives it, in working memory that lives only for
  /// `body` (`Memory.withScratch`).
  /// - Throws: `FrameError.invalidArgument` for a partition count out of range; what hashing
  ///   the keys throws; `FrameError.outOfMemory`; what `body` throws.
  package func withHashPartitionIDs<R>(partitions: Int, _ body: (UnsafeBufferPointer<UInt32>) throws -> R) throws -> R {
    guard partitions >= 1 && partitions <= Int(UInt32.max) else {
      throw FrameError.invalidArgument("partition count \(partitions) out of range")
    }
    return try Memory.withScratch(UInt64.self, count: count) { hashes in
      try hashKeys(seed: 0, into: hashes.baseAddress!)
      return try Memory.withScratch(UInt32.self, count: count) { ids in
        _ = bs_hash_partition(hashes.baseAddress, count, UInt32(partitions), ids.baseAddress)
        return try body(UnsafeBufferPointer(ids))
      }
    }
  }

  /// Splits the rows into `partitions` frames: row `i` goes to partition `ids[i]`. Row order
  /// is kept within each partition. Cost: one counting sort and one gather per column.
  /// - Precondition: every id is below `partitions`, and `ids` holds `count` values.
  public func partition(ids: [UInt32], into partitions: Int) -> [Frame] {
    precondition(ids.count == count, "\(ids.count) partition ids for \(count) rows")
    if partitions == 1 { return [self] }
    let perm: [UInt32]
    let starts: [UInt64]
    do {
      (perm, starts) = try Grouping.order(groupIDs: ids, groups: partitions)
    } catch {
      preconditionFailure("partitioning \(count) rows into \(partitions): \(error)")
    }
    let grouped = gather(perm)
    return (0..<partitions).map { p in grouped.slice(Int(starts[p])..<Int(starts[p + 1])) }
  }

  /// The partition of each hash: `(hash * partitions) >> 64`.
  public static func partitionIDs(hashes: [UInt64], partitions: Int) -> [UInt32] {
    precondition(partitions >= 1 && partitions <= Int(UInt32.max), "partition count \(partitions) out of range")
    var out = [UInt32](repeating: 0, count: hashes.count)
    hashes.withUnsafeBufferPointer { h in
      out.withUnsafeMutableBufferPointer { o in
        _ = bs_hash_partition(h.baseAddress, h.count, UInt32(partitions), o.baseAddress)
      }
    }
    return out
  }

  /// For range partitioning: for each row, the number of `splitters` rows whose key is less
  /// than or equal to the row's key (`splitters` sorted by key, with the same key types).
  /// Rows with equal keys get equal ids, and ids grow with the key.
  ///
  /// Cost: a binary search per row over the splitters' order-preserving u64 prefixes; full
  /// keys are compared only where prefixes tie and are not exact (strings, several columns).
  public func rangePartitionIDs(splitters: Frame) throws -> [UInt32] {
    let rows = try sortPrefixes(.keys)
    let bounds = try splitters.sortPrefixes(.keys)
    let exact = rows.exact && bounds.exact
    let m = splitters.count
    if exact {
      var out = [UInt32](repeating: 0, count: count)
      rows.values.withUnsafeBufferPointer { r in
        bounds.values.withUnsafeBufferPointer { b in
          out.withUnsafeMutableBufferPointer {
            let rc = bs_range_partition_u64(r.baseAddress, count, b.baseAddress, m, $0.baseAddress)
            precondition(
              rc == BS_OK, "range partitioning refused its arguments: \(String(cString: bs_error_name(rc.rawValue)))")
          }
        }
      }
      return out
    }
    return rows.values.withUnsafeBufferPointer { r in
      bounds.values.withUnsafeBufferPointer { b in
        (0..<count).map { i in
          // Upper bound: the first splitter greater than row i.
          var lo = 0
          var hi = m
          let p = r[i]
          while lo < hi {
            let mid = (lo + hi) >> 1
            let greater: Bool
            if b[mid] != p {
              greater = b[mid] > p
            } else {
              greater = !exact && compareKeys(i, splitters, mid) < 0
            }
            if greater { hi = mid } else { lo = mid + 1 }
          }
          return UInt32(lo)
        }
      }
    }
  }
}
