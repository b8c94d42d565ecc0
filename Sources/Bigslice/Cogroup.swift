import Frame
import SliceIO

/// Groups the rows of several slices by key: one row per key that appears in any input, with
/// the values of each input collected into an array (empty where an input lacks the key).
/// The result has as many shards as the largest input. Each input is shuffled by key; within a
/// shard, inputs are sorted by (hash, key) and merged.
///
/// Each group is held in memory, as the user asked for its values together.
public func cogroup<K, each V>(
  _ slices: repeat Slice<K, each V>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K, repeat [each V]> {
  var deps: [Dependency] = []
  var shards = 1
  var problem: BigsliceError?
  for slice in repeat each slices {
    deps.append(Dependency(node: slice.node, shuffle: true, partitioner: .hash))
    shards = max(shards, slice.shards)
    if slice.schema.prefix != 1 { problem = .invalidArgument("cogroup inputs must have a one-column key") }
  }
  let (types, typeProblem) = columnTypes(K.self, repeat [each V].self)
  let inputSchemas = deps.map(\.node.schema)
  let node = SliceNode(
    op: "cogroup", location: location(file, line), schema: Schema(types), shards: shards, deps: deps,
    problem: problem ?? typeProblem
  ) { _, readers, _ in
    var done = false
    return FunctionReader {
      if done { return nil }
      done = true
      var frames: [Frame] = []
      var hashes: [[UInt64]] = []
      for (i, reader) in readers.enumerated() {
        let frame = try readFrame(reader)?.sorted(.hash(seed: combineSeed)) ?? Frame.empty(inputSchemas[i])
        frames.append(frame)
        hashes.append(try frame.hashKeys(seed: combineSeed))
      }
      return try mergeGroups(frames, hashes, types: types, repeat (each V).self)
    }
  }
  return Slice<K, repeat [each V]>(node)
}

/// Walks inputs sorted by (hash, key) in step, emitting one row per key.
private func mergeGroups<each V>(
  _ frames: [Frame], _ hashes: [[UInt64]], types: [ColumnType], _: repeat (each V).Type
) throws -> Frame {
  var k = -1
  func getter<T>(_: T.Type) -> ColumnGetter<T> {
    k += 1
    return ColumnGetter<T>(frames[k].columns[1])
  }
  let values = (repeat getter((each V).self))
  k = 0
  func appender<T>(_: T.Type) -> ColumnAppender<[T]> {
    k += 1
    return ColumnAppender<[T]>(types[k])
  }
  let groups = (repeat appender((each V).self))
  let keyFrames = try frames.map { try Frame([$0.columns[0]]) }
  var keyChunks: [UInt32] = []
  var keyRows: [UInt32] = []
  var position = [Int](repeating: 0, count: frames.count)
  // Where each group's rows end in each input: group g of input i is
  // ends[i][g - 1] ..< ends[i][g] (from 0 for the first group).
  var ends = [[Int32]](repeating: [], count: frames.count)
  while true {
    var best = -1
    for i in frames.indices where position[i] < frames[i].count {
      if best < 0 {
        best = i
        continue
      }
      let (h, hb) = (hashes[i][position[i]], hashes[best][position[best]])
      if h < hb || (h == hb && frames[i].compareKeys(position[i], frames[best], position[best]) < 0) { best = i }
    }
    if best < 0 { break }
    let hash = hashes[best][position[best]]
    keyChunks.append(UInt32(best))
    keyRows.append(UInt32(position[best]))
    let bestRow = position[best]
    for i in frames.indices {
      var j = position[i]
      while j < frames[i].count && hashes[i][j] == hash && frames[i].equalKeys(j, frames[best], bestRow) { j += 1 }
      ends[i].append(Int32(j))
      position[i] = j
    }
  }
  // Then each input's values into its arrays: one generic call per input, not per row.
  k = -1
  func collect<T>(_ getter: ColumnGetter<T>, _ out: ColumnAppender<[T]>) {
    k += 1
    var start = 0
    for end in ends[k] {
      out.append((start..<Int(end)).map { getter.get($0) })
      start = Int(end)
    }
  }
  repeat collect(each values, each groups)
  var columns = [try Frame.interleave(keyFrames, chunkIndices: keyChunks, rows: keyRows).columns[0]]
  for group in repeat each groups { columns.append(try group.finish()) }
  return try Frame(columns, prefix: 1)
}

extension SliceProtocol {
  /// One row per key with `f` folded over its values in arrival order, starting from
  /// `initial`. Unlike `reduce`, `f` need not be associative, so there is no map-side
  /// combining; each shard's accumulators are held in memory.
  public func fold<K, V, A: Sendable>(
    _ initial: A, file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, V) -> A
  ) -> Slice<K, A> where Self == Slice<K, V> {
    let (types, typeProblem) = columnTypes(K.self, A.self)
    var problem = typeProblem
    if self.schema.prefix != 1 {
      problem = problem ?? .invalidArgument("fold needs a one-column key (unwrap it first)")
    }
    let node = SliceNode(
      op: "fold", location: location(file, line), schema: Schema(types), shards: self.shards,
      deps: [Dependency(node: self.node, shuffle: true, partitioner: .hash)], problem: problem
    ) { _, readers, _ in
      var done = false
      let input = readers[0]
      return FunctionReader {
        if done { return nil }
        done = true
        guard let frame = try readFrame(input), frame.count > 0 else { return nil }
        return try foldKeyRuns(frame, valueType: types[1], first: { (v: V) in f(initial, v) }, next: f)
      }
    }
    return Slice<K, A>(node)
  }
}
