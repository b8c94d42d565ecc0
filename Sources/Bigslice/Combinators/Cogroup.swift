import Frame
import SliceIO

/// Groups the rows of several slices by key: one row per key that appears in any input, with
/// the values of each input collected into an array (empty where an input lacks the key).
/// The result has as many shards as the largest input, and its rows come in no particular
/// order. Each input is shuffled by key.
///
/// Each input is a key and one value column; the overloads below take keys of two and three
/// columns (inputs made with `prefixed(2)` or `prefixed(3)`). An input with several values
/// carries them in one column of a struct or tuple-like type.
///
/// Within a shard the groups are found by hashing: one table maps every input's keys to dense
/// group ids, then each input's values are put in group order by a counting sort, all
/// column-at-a-time. When the inputs outgrow the task's share of the memory limit, every input
/// is split into hash buckets on disk, and the buckets are cogrouped one at a time (splitting
/// again while still too big). Only a group itself must fit in memory, as the user asked for
/// its values together.
public func cogroup<K, each V>(
  _ slices: repeat Slice<K, each V>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K, repeat [each V]> {
  var nodes: [SliceNode] = []
  for slice in repeat each slices { nodes.append(slice.node) }
  let (types, problem) = columnTypes(K.self, repeat [each V].self)
  return Slice(cogroupNode(nodes, keys: 1, types: types, problem, file, line, repeat (each V).self))
}

/// `cogroup` of inputs keyed on their first two columns (`prefixed(2)`): one row per key
/// `(K1, K2)`, then each input's values as an array.
public func cogroup<K1, K2, each V>(
  _ slices: repeat Slice<K1, K2, each V>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K1, K2, repeat [each V]> {
  var nodes: [SliceNode] = []
  for slice in repeat each slices { nodes.append(slice.node) }
  let (types, problem) = columnTypes(K1.self, K2.self, repeat [each V].self)
  return Slice(cogroupNode(nodes, keys: 2, types: types, problem, file, line, repeat (each V).self))
}

/// `cogroup` of inputs keyed on their first three columns (`prefixed(3)`).
public func cogroup<K1, K2, K3, each V>(
  _ slices: repeat Slice<K1, K2, K3, each V>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K1, K2, K3, repeat [each V]> {
  var nodes: [SliceNode] = []
  for slice in repeat each slices { nodes.append(slice.node) }
  let (types, problem) = columnTypes(K1.self, K2.self, K3.self, repeat [each V].self)
  return Slice(cogroupNode(nodes, keys: 3, types: types, problem, file, line, repeat (each V).self))
}

// Two and three inputs, typed one by one: Swift infers these where the variadic forms above
// leave it stuck (a func body returning a cogroup with no declared type, or a `map` after one).

/// `cogroup` of two inputs keyed on one column.
public func cogroup<K, A, B>(
  _ a: Slice<K, A>, _ b: Slice<K, B>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K, [A], [B]> {
  let (types, problem) = columnTypes(K.self, [A].self, [B].self)
  return Slice(cogroupNode([a.node, b.node], keys: 1, types: types, problem, file, line, A.self, B.self))
}

/// `cogroup` of three inputs keyed on one column.
public func cogroup<K, A, B, C>(
  _ a: Slice<K, A>, _ b: Slice<K, B>, _ c: Slice<K, C>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K, [A], [B], [C]> {
  let (types, problem) = columnTypes(K.self, [A].self, [B].self, [C].self)
  return Slice(
    cogroupNode([a.node, b.node, c.node], keys: 1, types: types, problem, file, line, A.self, B.self, C.self))
}

/// `cogroup` of two inputs keyed on two columns.
public func cogroup<K1, K2, A, B>(
  _ a: Slice<K1, K2, A>, _ b: Slice<K1, K2, B>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K1, K2, [A], [B]> {
  let (types, problem) = columnTypes(K1.self, K2.self, [A].self, [B].self)
  return Slice(cogroupNode([a.node, b.node], keys: 2, types: types, problem, file, line, A.self, B.self))
}

/// `cogroup` of three inputs keyed on two columns.
public func cogroup<K1, K2, A, B, C>(
  _ a: Slice<K1, K2, A>, _ b: Slice<K1, K2, B>, _ c: Slice<K1, K2, C>, file: StaticString = #fileID,
  line: UInt = #line
) -> Slice<K1, K2, [A], [B], [C]> {
  let (types, problem) = columnTypes(K1.self, K2.self, [A].self, [B].self, [C].self)
  return Slice(
    cogroupNode([a.node, b.node, c.node], keys: 2, types: types, problem, file, line, A.self, B.self, C.self))
}

/// `cogroup` of two inputs keyed on three columns.
public func cogroup<K1, K2, K3, A, B>(
  _ a: Slice<K1, K2, K3, A>, _ b: Slice<K1, K2, K3, B>, file: StaticString = #fileID, line: UInt = #line
) -> Slice<K1, K2, K3, [A], [B]> {
  let (types, problem) = columnTypes(K1.self, K2.self, K3.self, [A].self, [B].self)
  return Slice(cogroupNode([a.node, b.node], keys: 3, types: types, problem, file, line, A.self, B.self))
}

/// `cogroup` of three inputs keyed on three columns.
public func cogroup<K1, K2, K3, A, B, C>(
  _ a: Slice<K1, K2, K3, A>, _ b: Slice<K1, K2, K3, B>, _ c: Slice<K1, K2, K3, C>,
  file: StaticString = #fileID, line: UInt = #line
) -> Slice<K1, K2, K3, [A], [B], [C]> {
  let (types, problem) = columnTypes(K1.self, K2.self, K3.self, [A].self, [B].self, [C].self)
  return Slice(
    cogroupNode([a.node, b.node, c.node], keys: 3, types: types, problem, file, line, A.self, B.self, C.self))
}

/// The node of a cogroup of `inputs` keyed on their first `keys` columns, each with one value
/// column of the pack's type; `types` are the output's columns.
private func cogroupNode<each V>(
  _ inputs: [SliceNode], keys: Int, types: [ColumnType], _ typeProblem: BigsliceError?, _ file: StaticString,
  _ line: UInt, _: repeat (each V).Type
) -> SliceNode {
  var problem: BigsliceError?
  for (i, input) in inputs.enumerated() where input.schema.prefix != keys {
    problem =
      problem
      ?? .invalidArgument(
        "cogroup keys on every column of its inputs but the last (\(keys) here), and input \(i + 1) has key prefix "
          + "\(input.schema.prefix): call prefixed(\(keys)) on it, or carry several values in one column")
  }
  let deps = inputs.map { Dependency(node: $0, shuffle: true, partitioner: .hash) }
  let inputSchemas = inputs.map(\.schema)
  let boxedKey = types[..<keys].contains(where: \.isBoxed)
  return SliceNode(
    op: "cogroup", location: location(file, line), schema: Schema(types, prefix: keys),
    shards: inputs.map(\.shards).max() ?? 1, deps: deps, problem: problem ?? typeProblem
  ) { _, readers, context in
    let build = { (inputs: [[Frame]]) throws -> Frame? in
      let frames = try inputs.enumerated().map { i, frames in
        frames.isEmpty ? try Frame.empty(inputSchemas[i]) : frames.count == 1 ? frames[0] : try Frame.concat(frames)
      }
      guard frames.contains(where: { $0.count > 0 }) else { return nil }
      if boxedKey {
        let sorted = try frames.map { try Frame($0.columns, prefix: keys).sorted(.hash(seed: combineSeed)) }
        return try mergeGroups(
          sorted, try sorted.map { try $0.hashKeys(seed: combineSeed) }, keys: keys, types: types,
          repeat (each V).self)
      }
      return try groupByHash(frames, keys: keys, types: types, packed: context.rowsOnlyEncoded, repeat (each V).self)
    }
    var inner: (any Reader)?
    return FunctionReader {
      if inner == nil {
        inner = try CogroupInputs(schemas: inputSchemas, store: context.store, level: 0).read(readers, build: build)
      }
      return try inner!.read()
    }
  }
}

/// The inputs of one cogroup task (or of one of its buckets): held in memory while they are
/// small, split into hash buckets on disk beyond a quarter of the task's working share (the
/// grouping itself needs about three times the input's memory again).
final class CogroupInputs {
  private let schemas: [Schema]
  private let store: OutputStore?
  private let level: Int

  init(schemas: [Schema], store: OutputStore?, level: Int) {
    self.schemas = schemas
    self.store = store
    self.level = level
  }

  /// Reads every input and returns a reader of the groups that `build` makes.
  func read(_ readers: [any Reader], build: @escaping ([[Frame]]) throws -> Frame?) throws -> any Reader {
    let limit = level < HashBuckets.maxLevel && store != nil ? store!.workingLimit / 4 : Int.max
    var held = [[Frame]](repeating: [], count: readers.count)
    var bytes = 0
    var buckets: [HashBuckets]?
    for (i, reader) in readers.enumerated() {
      while let frame = try reader.read() {
        guard frame.count > 0 else { continue }
        if let buckets {
          try buckets[i].write(frame)
          continue
        }
        held[i].append(frame)
        bytes += frame.byteCount
        if bytes > limit, let store {
          let encoder = FrameEncoder()
          let made = schemas.map { HashBuckets(schema: $0, store: store, level: level, encoder: encoder) }
          for (j, frames) in held.enumerated() {
            for frame in frames { try made[j].write(frame) }
          }
          held = []
          buckets = made
          store.spilled(SpillCounts(runs: 1))
        }
      }
    }
    guard let buckets else {
      if let store, bytes > store.workingLimit / 4 {
        // Split as far as hashes go: these rows share one key (or a hash), and the group must
        // be whole.
        store.spilled(SpillCounts(heldOverLimit: 1))
      }
      return FrameReader(try build(held).map { [$0] } ?? [])
    }
    // files[input][bucket]; a bucket's files are let go once its readers exist, so each is
    // removed as soon as its bucket is grouped.
    var files = try buckets.map { try $0.finish() }
    var bucket = 0
    var current: (any Reader)?
    return FunctionReader { [schemas, store, level] in
      while true {
        if let frame = try current?.read() { return frame }
        guard bucket < HashBuckets.fanOut else { return nil }
        let inputs: [any Reader] = try files.map { file in
          try file[bucket].map { try $0.reader() as any Reader } ?? FrameReader([])
        }
        for i in files.indices { files[i][bucket] = nil }
        bucket += 1
        current = try CogroupInputs(schemas: schemas, store: store, level: level + 1).read(inputs, build: build)
      }
    }
  }
}

/// Groups in memory by hash: a combiner gives every key of every input a dense group id, and
/// each input's values are gathered into group order by a counting sort on the ids. With
/// `packed`, lists of scalars stay packed (offsets into one buffer), as they will be coded.
private func groupByHash<each V>(
  _ frames: [Frame], keys: Int, types: [ColumnType], packed: Bool, _: repeat (each V).Type
) throws -> Frame {
  let rows = frames.reduce(0) { $0 + $1.count }
  let combiner = try Combiner(keyTypes: Array(types[..<keys]), expectedGroups: max(1024, rows / 4))
  var gids: [[UInt32]] = []
  for frame in frames {
    gids.append(Array(try combiner.groupIDs(keys: Array(frame.columns[..<keys]), seed: combineSeed)))
  }
  let groups = combiner.groupCount
  let keyColumns = try combiner.drainUnordered().columns
  var k = -1
  func collect<T>(_: T.Type) throws -> Column {
    k += 1
    let column = frames[k].columns[keys]
    // Each input's ids and permutation go as soon as they are used: the lists are built while
    // every input is still held.
    var ids: [UInt32] = []
    swap(&ids, &gids[k])
    // Fixed-width values go straight into group order in one pass, then into one list per group.
    if let grouped = try GroupedValues(column, groupIDs: ids, groups: groups) {
      ids = []
      if packed, let scalar = T.self as? any (ScalarValue & Codable).Type { return packedLists(scalar, grouped) }
      return try grouped.arrays(T.self)
    }
    var (permutation, starts) = try Grouping.order(groupIDs: ids, groups: groups)
    ids = []
    let values = column.gather(permutation)
    permutation = []
    let out = ColumnAppender<[T]>(types[keys + k], capacity: groups)
    let getter = ColumnGetter<T>(values)
    withExtendedLifetime(values) {
      for g in 0..<groups { out.append((Int(starts[g])..<Int(starts[g + 1])).map { getter.get($0) }) }
    }
    return try out.finish()
  }
  var columns = keyColumns
  for column in repeat try collect((each V).self) { columns.append(column) }
  return try Frame(columns, prefix: keys)
}

private func packedLists<S: ScalarValue & Codable>(_: S.Type, _ grouped: GroupedValues) -> Column {
  grouped.packedLists(S.self)
}

/// Walks inputs sorted by (hash, key) in step, emitting one row per key.
private func mergeGroups<each V>(
  _ frames: [Frame], _ hashes: [[UInt64]], keys: Int, types: [ColumnType], _: repeat (each V).Type
) throws -> Frame {
  var k = -1
  func getter<T>(_: T.Type) -> ColumnGetter<T> {
    k += 1
    return ColumnGetter<T>(frames[k].columns[keys])
  }
  let values = (repeat getter((each V).self))
  k = keys - 1
  func appender<T>(_: T.Type) -> ColumnAppender<[T]> {
    k += 1
    return ColumnAppender<[T]>(types[k])
  }
  let groups = (repeat appender((each V).self))
  let keyFrames = try frames.map { try Frame(Array($0.columns[..<keys]), prefix: keys) }
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
  var columns = try Frame.interleave(keyFrames, chunkIndices: keyChunks, rows: keyRows).columns
  for group in repeat each groups { columns.append(try group.finish()) }
  return try Frame(columns, prefix: keys)
}
