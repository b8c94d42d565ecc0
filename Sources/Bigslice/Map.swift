import Frame
import SliceIO

extension Slice {
  /// A slice of `f` applied to every row. Pipelined with its input: no shuffle.
  public func map<each O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (repeat each C) throws -> (repeat each O)
  ) -> Slice<repeat each O> {
    let (types, problem) = columnTypes(repeat (each O).self)
    return narrow("map", schema: Schema(types), problem: problem, file: file, line: line) { _, input in
      TransformReader(input) { frame in
        let g = getters(frame, repeat (each C).self)
        let out = RowEmitter<repeat each O>(types: types, prefix: 1)
        for i in 0..<frame.count {
          let row = try f(repeat (each g).get(i))
          out.emit(repeat each row)
        }
        return try out.frame()
      }
    }
  }

  /// A one-column slice of `f` applied to every row.
  @_disfavoredOverload
  public func map<O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (repeat each C) throws -> O
  ) -> Slice<O> {
    map(file: file, line: line) { (values: repeat each C) -> (O) in try f(repeat each values) }
  }

  /// The rows for which `keep` is true. Rows are selected column-at-a-time (one gather per
  /// frame), and the key prefix is kept.
  public func filter(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (repeat each C) throws -> Bool
  ) -> Slice<repeat each C> {
    narrow("filter", schema: schema, file: file, line: line) { _, input in
      TransformReader(input) { frame in
        let g = getters(frame, repeat (each C).self)
        var kept: [UInt32] = []
        kept.reserveCapacity(frame.count)
        for i in 0..<frame.count where try keep(repeat (each g).get(i)) { kept.append(UInt32(i)) }
        return kept.count == frame.count ? frame : frame.gather(kept)
      }
    }
  }

  /// A slice of the rows `f` emits for every input row: zero, one or many each.
  public func flatMap<each O>(
    _: repeat (each O).Type, file: StaticString = #fileID, line: UInt = #line,
    _ f: @escaping @Sendable (RowEmitter<repeat each O>, repeat each C) throws -> Void
  ) -> Slice<repeat each O> {
    let (types, problem) = columnTypes(repeat (each O).self)
    return narrow("flatmap", schema: Schema(types), problem: problem, file: file, line: line) { _, input in
      TransformReader(input) { frame in
        let g = getters(frame, repeat (each C).self)
        let out = RowEmitter<repeat each O>(types: types, prefix: 1)
        for i in 0..<frame.count { try f(out, repeat (each g).get(i)) }
        return try out.frame()
      }
    }
  }

  /// The first `n` rows of each shard.
  public func head(_ n: Int, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    narrow(
      "head", schema: schema, problem: n < 0 ? .invalidArgument("head needs n >= 0, got \(n)") : nil, file: file,
      line: line
    ) {
      _, input in
      var left = max(n, 0)
      return FunctionReader {
        guard left > 0, let frame = try input.read() else { return nil }
        let take = min(left, frame.count)
        left -= take
        return frame.slice(0..<take)
      }
    }
  }

  /// The same rows with the first `prefix` columns as the key.
  public func prefixed(_ prefix: Int, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    let count = schema.count
    let problem: BigsliceError? =
      prefix < 1 || prefix > count ? .invalidArgument("prefix \(prefix) out of 1...\(count)") : nil
    return narrow("prefixed", schema: Schema(schema.types, prefix: prefix), problem: problem, file: file, line: line) {
      _, input in TransformReader(input) { try Frame($0.columns, prefix: prefix) }
    }
  }

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

extension SliceProtocol {
  /// The words of every string: each split at `separator` (an ASCII character, a space by
  /// default), empty words dropped. A built-in kernel, column-at-a-time with no closure or
  /// `String` per row: the fast way to tokenize lines (`scanReader(…).split().count()`).
  public func split(separator: Unicode.Scalar = " ", file: StaticString = #fileID, line: UInt = #line) -> Slice<String>
  where Self == Slice<String> {
    let problem: BigsliceError? =
      separator.isASCII
      ? nil : .invalidArgument("split needs an ASCII separator, got \(separator.escaped(asASCII: true))")
    let byte = UInt8(truncatingIfNeeded: separator.value)
    return self.narrow("split", schema: Schema([.string]), problem: problem, file: file, line: line) { _, input in
      TransformReader(input) { frame in try Frame([frame.columns[0].splitTokens(separator: byte)]) }
    }
  }
}
