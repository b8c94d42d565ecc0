import CSupport

extension Frame {
  /// Splits the rows into `partitions` frames by hash: row `i` goes to partition
  /// `(hashes[i] * partitions) >> 64` (multiply-shift, monotone in the hash). Row order is
  /// kept within each partition. Cost: one counting sort and one gather per column.
  /// - Precondition: `partitions >= 1`, and `hashes` holds `count` values.
  public func partition(hashes: UnsafePointer<UInt64>, into partitions: Int) -> [Frame] {
    precondition(partitions >= 1 && partitions <= Int(UInt32.max), "partition count \(partitions) out of range")
    if partitions == 1 { return [self] }
    let n = count
    var parts = [UInt32](repeating: 0, count: n)
    var starts = [UInt64](repeating: 0, count: partitions + 1)
    var perm = [UInt32](repeating: 0, count: n)
    parts.withUnsafeMutableBufferPointer { p in
      _ = bs_hash_partition(hashes, n, UInt32(partitions), p.baseAddress)
      starts.withUnsafeMutableBufferPointer { s in
        perm.withUnsafeMutableBufferPointer { q in
          _ = bs_partition_permutation(p.baseAddress, n, UInt32(partitions), s.baseAddress, q.baseAddress)
        }
      }
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
}
