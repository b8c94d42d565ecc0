import Frame
import Synchronization

/// A shuffle that partitions by what a sample of every upstream output shows: each upstream
/// task sums up its whole output in a frame, and once every sample is in, `partition` makes
/// the partitioner that cuts each output into shards. `sorted` cuts by key ranges this way; the
/// runtime only carries the samples (between machines too) and calls these two methods.
protocol SampledPartitioning: Sendable {
  /// The sample of one upstream output, for a shuffle into `shards` shards.
  func sample(_ output: TaskOutput, schema: Schema, shards: Int) throws -> Frame
  /// The partition of each row of a frame, given the samples of every upstream task (those
  /// with no rows left out).
  func partition(samples: [Frame], shards: Int) throws -> any RowPartitioner
}

/// Says which partition each row of a frame goes to. (An object, not a closure: a closure kept
/// in a `Mutex` is reabstracted on every access, and its thunks pile up.)
protocol RowPartitioner: Sendable {
  func partitionIDs(_ frame: Frame) throws -> [UInt32]
}

/// One compiled sampled shuffle: the upstream tasks whose samples decide it, and the
/// partitioner made from them once, shared by every task that partitions for it.
final class SampledSplit: @unchecked Sendable {
  /// The upstream tasks whose samples decide the partitions.
  let upstream: [ShardTask]
  /// The number of partitions.
  let shards: Int
  let partitioning: any SampledPartitioning
  private let made = Mutex<(any RowPartitioner)?>(nil)

  init(upstream: [ShardTask], shards: Int, partitioning: any SampledPartitioning) {
    self.upstream = upstream
    self.shards = shards
    self.partitioning = partitioning
  }

  /// The sample of `output`, an upstream task's.
  func sample(_ output: TaskOutput, schema: Schema) throws -> Frame {
    try partitioning.sample(output, schema: schema, shards: shards)
  }

  /// The partition of each row of `frame`.
  /// - Throws: what making the partitioner from the samples throws, or what it throws.
  func partitionIDs(_ frame: Frame) throws -> [UInt32] {
    let partitioner = try made.withLock { made -> any RowPartitioner in
      if let made { return made }
      let samples = upstream.compactMap(\.sample).filter { $0.count > 0 }
      let partitioner = try partitioning.partition(samples: samples, shards: shards)
      made = partitioner
      return partitioner
    }
    return try partitioner.partitionIDs(frame)
  }
}
