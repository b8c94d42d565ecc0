import Frame

extension Slice {
  /// The same rows, hash-partitioned by key into `shards` shards.
  public func reshard(_ shards: Int, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    shuffled(op: "reshard", shards: shards, partitioner: .hash, file: file, line: line)
  }

  /// The same rows, hash-partitioned by key over the same number of shards: every row of a
  /// key ends up in one shard.
  public func reshuffle(file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    shuffled(op: "reshuffle", shards: shards, partitioner: .hash, file: file, line: line)
  }

  /// The same rows, with row r going to shard `partition(shards, r)`.
  public func repartition(
    file: StaticString = #fileID, line: UInt = #line, _ partition: @escaping @Sendable (Int, repeat each C) -> Int
  ) -> Slice<repeat each C> {
    let custom: @Sendable (Frame, Int) throws -> [UInt32] = { frame, shards in
      let g = getters(frame, repeat (each C).self)
      return try (0..<frame.count).map { i in
        let p = partition(shards, repeat (each g).get(i))
        guard p >= 0 && p < shards else {
          throw BigsliceError.invalidArgument("repartition sent a row to shard \(p) of \(shards)")
        }
        return UInt32(p)
      }
    }
    return shuffled(op: "repartition", shards: shards, partitioner: .custom(custom), file: file, line: line)
  }

  func shuffled(op: String, shards: Int, partitioner: Partitioner, file: StaticString, line: UInt) -> Slice<
    repeat each C
  > {
    let node = SliceNode(
      op: op, location: location(file, line), schema: schema, shards: max(shards, 1),
      deps: [Dependency(node: self.node, shuffle: true, partitioner: partitioner)],
      problem: shards < 1 ? .invalidArgument("\(op) needs at least 1 shard, got \(shards)") : nil
    ) { _, deps, _ in deps[0] }
    return Slice(node)
  }
}
