import CSupport

/// A hash table that groups rows by key and combines their values, column-at-a-time, in C.
///
/// Keys are one or more columns of scalars (grouped by their bits), strings or byte arrays; a
/// key of several columns is held as one packed or encoded key (`KeyRows`). Two modes:
/// - built-in aggregates (`sum`, `min`, `max` over `Int64` or `Double` columns, and `count`),
///   folded in C with no closure per row;
/// - group ids (`groupIDs`), with which the caller combines any other value type itself.
///
/// `byteCount` reports the memory held and `room(within:)` how many new keys fit under a byte
/// limit, so the owner can drain before the table would outgrow its budget. Not thread-safe:
/// one combiner per task.
public final class Combiner {
  /// A built-in aggregate.
  public enum Aggregate: Sendable, Hashable {
    case sum, min, max, count
  }

  /// The types of the key columns.
  public let keyTypes: [ColumnType]
  /// The type of the first key column.
  public var keyType: ColumnType { keyTypes[0] }
  /// The declared aggregates with their value types (`count` has `.int64`).
  public private(set) var aggregates: [(aggregate: Aggregate, valueType: ScalarKind)] = []
  private let handle: OpaquePointer
  /// The width of a one-column scalar key, which is widened to 64 bits; nil otherwise.
  private let keyWidth: Int?
  private let rows: KeyRows
  /// Whether a key column is a record, held as its leaves.
  private let hasRecordKey: Bool
  private var encoded = KeyRows.Rows()
  private var scratchKeys: UnsafeMutablePointer<UInt64>?
  private var scratchCapacity = 0
  private var batchHashes: UnsafeMutablePointer<UInt64>?
  private var batchGIDs: UnsafeMutablePointer<UInt32>?
  private var batchCapacity = 0

  /// A combiner for keys of one column of `keyType`, sized for about `expectedGroups` groups.
  /// - Throws: `FrameError.unsupported` for boxed keys; `FrameError.outOfMemory`.
  public convenience init(keyType: ColumnType, expectedGroups: Int = 1024) throws {
    try self.init(keyTypes: [keyType], expectedGroups: expectedGroups)
  }

  /// A combiner for keys of the columns `keyTypes` (at least one), sized for about
  /// `expectedGroups` groups.
  /// - Throws: `FrameError.unsupported` for boxed keys; `FrameError.outOfMemory`.
  public init(keyTypes: [ColumnType], expectedGroups: Int = 1024) throws {
    guard !keyTypes.isEmpty else { throw FrameError.invalidArgument("a combiner key of no columns") }
    self.keyTypes = keyTypes
    guard !keyTypes.flatMap(\.leafTypes).isEmpty else {
      throw FrameError.unsupported("a combiner key of records with no fields")
    }
    hasRecordKey = keyTypes.contains { $0.fields != nil }
    // A record key is held as its leaf columns.
    rows = try KeyRows(keyTypes.flatMap(\.leafTypes))
    let made: OpaquePointer?
    switch (rows.form, rows.types.first ?? keyTypes[0]) {
    case (.single, .scalar(let k)):
      made = bs_comb_new(BS_COMB_KEY_U64, expectedGroups)
      keyWidth = k.width
    case (.packed, _):
      made = bs_comb_new(BS_COMB_KEY_U64, expectedGroups)
      keyWidth = nil
    case (.fixed(let width), _):
      made = bs_comb_new_fixed(width, expectedGroups)
      keyWidth = nil
    default:
      made = bs_comb_new(BS_COMB_KEY_BYTES, expectedGroups)
      keyWidth = nil
    }
    guard let h = made else {
      throw FrameError.outOfMemory("combiner table for \(expectedGroups) groups")
    }
    handle = h
  }

  deinit {
    bs_comb_free(handle)
    scratchKeys?.deallocate()
    batchHashes?.deallocate()
    batchGIDs?.deallocate()
  }

  /// Declares a built-in aggregate over a value column of `valueType` (`.int64` or `.double`;
  /// ignored for `count`) and returns its index. Declare all aggregates before the first row.
  /// - Throws: `FrameError.unsupported` for another value type or after rows were added.
  @discardableResult
  public func addAggregate(_ aggregate: Aggregate, valueType: ScalarKind = .int64) throws -> Int {
    let kind: bs_agg_kind
    switch (aggregate, valueType) {
    case (.count, _): kind = BS_AGG_COUNT
    case (.sum, .int64): kind = BS_AGG_SUM_I64
    case (.min, .int64): kind = BS_AGG_MIN_I64
    case (.max, .int64): kind = BS_AGG_MAX_I64
    case (.sum, .double): kind = BS_AGG_SUM_F64
    case (.min, .double): kind = BS_AGG_MIN_F64
    case (.max, .double): kind = BS_AGG_MAX_F64
    default: throw FrameError.unsupported("built-in \(aggregate) over \(valueType) values (use int64 or double)")
    }
    let index = bs_comb_add_agg(handle, kind)
    if index == Int64(BS_ENOMEM.rawValue) { throw FrameError.outOfMemory("aggregate \(aggregate) of the combiner") }
    guard index >= 0 else { throw FrameError.unsupported("declaring aggregate \(aggregate) after rows were added") }
    aggregates.append((aggregate, aggregate == .count ? .int64 : valueType))
    return Int(index)
  }

  /// The number of groups.
  public var groupCount: Int { Int(bs_comb_groups(handle)) }
  /// Keys the direct map covers (0 when keys go through the hash table alone).
  package var directMapEntries: Int { Int(bs_comb_direct_span(handle)) }
  /// Bytes of memory held by the table, keys and aggregates (not the per-batch scratch, which
  /// like the batch itself is a frame's worth).
  public var byteCount: Int { Int(bs_comb_bytes(handle)) }

  /// How many new keys the combiner can take before its memory, counting the old and new
  /// blocks held while it grows, would pass `limit` bytes; `extraPerGroup` bytes per group are
  /// the caller's, in arrays that grow as the combiner's do. 0 when it is full.
  public func room(within limit: Int, extraPerGroup: Int = 0) -> Int {
    Int(bs_comb_room(handle, max(limit, 0), max(extraPerGroup, 0)))
  }

  /// Maps each key to its group id (dense, in order of first appearance), inserting new keys.
  /// `hashes` are the keys' hashes (`Column.hash`). Returns the number of new groups.
  /// - Throws: `FrameError.typeMismatch`, `FrameError.outOfMemory`.
  @discardableResult
  package func groupIDs(keys: Column, hashes: UnsafePointer<UInt64>, into gids: UnsafeMutablePointer<UInt32>) throws
    -> Int
  {
    try groupIDs(keys: [keys], hashes: hashes, into: gids)
  }

  /// Maps each key of the columns `keys` to its group id, as `groupIDs(keys:hashes:into:)`;
  /// `hashes` are the rows' key hashes (`Frame.hashKeys`).
  @discardableResult
  package func groupIDs(keys: [Column], hashes: UnsafePointer<UInt64>, into gids: UnsafeMutablePointer<UInt32>) throws
    -> Int
  {
    guard keys.map(\.type) == keyTypes else {
      throw FrameError.typeMismatch(
        expected: keyTypes.map(\.description).joined(separator: ", "),
        found: keys.map(\.type.description).joined(separator: ", "))
    }
    let n = keys[0].count
    for (i, k) in keys.enumerated() where k.count != n {
      throw FrameError.lengthMismatch(column: i, expected: n, found: k.count)
    }
    let keys = hasRecordKey ? keys.flatMap(\.leaves) : keys
    let result: Int64
    switch rows.form {
    case .packed:
      let packed = scratch(n)
      rows.pack(keys, into: packed)
      result = bs_comb_groups_u64(handle, packed, hashes, n, gids)
    case .fixed:
      rows.packFixed(keys, into: &encoded)
      result = bs_comb_groups_fixed(handle, encoded.bytes, hashes, n, gids)
    case .rows:
      try rows.encode(keys, into: &encoded)
      result = bs_comb_groups_bytes(handle, encoded.offsets, encoded.bytes, hashes, n, gids)
    case .single:
      result = try groupIDs(single: keys[0], hashes: hashes, into: gids)
    }
    if result < 0 { throw FrameError.outOfMemory("combiner table growing past \(groupCount) groups") }
    return Int(result)
  }

  /// Maps a one-column integer key to group ids through the combiner's direct map, with no
  /// hash per row, when the batch's key range is narrow enough (`bs_comb_direct_prepare`).
  /// False, with nothing done, when it is not.
  private func groupIDsDirect(keys: [Column], seed: UInt64, into gids: UnsafeMutablePointer<UInt32>) throws -> Bool {
    guard rows.form == .single, !hasRecordKey, keys.count == 1, keys[0].type == keyTypes[0],
      case .scalar(let s) = keys[0].storage, let width = keyWidth
    else { return false }
    let n = keys[0].count
    let wide = wideKeys(keys[0], s, width: width)
    let result = try withExtendedLifetime(keys) { () throws -> Int64 in
      guard bs_comb_direct_prepare(handle, wide, n) == 1 else { return -1 }
      let r = bs_comb_groups_direct(handle, wide, n, width, seed, gids)
      if r < 0 { throw FrameError.outOfMemory("combiner table growing past \(groupCount) groups") }
      return r
    }
    return result >= 0
  }

  /// The keys of a scalar key column of `width` bytes (its storage `s`) as 64-bit values:
  /// the column itself for 8-byte keys, else widened into the scratch buffer.
  private func wideKeys(_ keys: Column, _ s: ScalarStorage, width: Int) -> UnsafePointer<UInt64> {
    let base = s.base + keys.offset * width
    if width == 8 { return UnsafePointer(base.assumingMemoryBound(to: UInt64.self)) }
    let wide = scratch(keys.count)
    switch width {
    case 1: widen(base.assumingMemoryBound(to: UInt8.self), keys.count, wide)
    case 2: widen(base.assumingMemoryBound(to: UInt16.self), keys.count, wide)
    default: widen(base.assumingMemoryBound(to: UInt32.self), keys.count, wide)
    }
    return UnsafePointer(wide)
  }

  private func groupIDs(single keys: Column, hashes: UnsafePointer<UInt64>, into gids: UnsafeMutablePointer<UInt32>)
    throws -> Int64
  {
    let n = keys.count
    let result: Int64
    switch keys.storage {
    case .scalar(let s):
      result = bs_comb_groups_u64(handle, wideKeys(keys, s, width: keyWidth!), hashes, n, gids)
    case .bytes(let s):
      result = bs_comb_groups_bytes(handle, s.offsets + keys.offset, s.bytes, hashes, n, gids)
    case .boxed, .record:
      throw FrameError.unsupported("boxed combiner keys")
    }
    return result
  }

  /// Folds `values` (an `.int64` or `.double` column; any column for `count`) into aggregate
  /// `index`, row `i` into group `gids[i]`. `gids` must hold `values.count` ids from
  /// `groupIDs` (C checks each id against the groups; the buffer length is the caller's).
  /// - Throws: `FrameError.typeMismatch` when the column does not match the aggregate.
  package func update(_ index: Int, values: Column, gids: UnsafePointer<UInt32>) throws {
    let (aggregate, valueType) = aggregates[index]
    if aggregate == .count {
      _ = bs_comb_update_count(handle, Int32(index), gids, values.count)
      return
    }
    guard values.type == .scalar(valueType) else {
      throw FrameError.typeMismatch(expected: "\(valueType)", found: values.type.description)
    }
    switch valueType {
    case .int64:
      values.scalars(Int64.self).withUnsafeBufferPointer {
        _ = bs_comb_update_i64(handle, Int32(index), gids, $0.baseAddress, $0.count)
      }
    default:
      values.scalars(Double.self).withUnsafeBufferPointer {
        _ = bs_comb_update_f64(handle, Int32(index), gids, $0.baseAddress, $0.count)
      }
    }
  }

  /// Hashes `keys` with `seed` and maps each to its group id, inserting new keys. The ids live
  /// in the combiner's scratch buffer, valid until its next `groupIDs(keys:seed:)` or `add`.
  package func groupIDs(keys: Column, seed: UInt64) throws -> UnsafeBufferPointer<UInt32> {
    try groupIDs(keys: [keys], seed: seed)
  }

  /// Hashes the key columns `keys` with `seed` as `Frame.hashKeys` does and maps each row to
  /// its group id, as `groupIDs(keys:seed:)`.
  package func groupIDs(keys: [Column], seed: UInt64) throws -> UnsafeBufferPointer<UInt32> {
    let n = keys.first?.count ?? 0
    if n > batchCapacity {
      batchHashes?.deallocate()
      batchGIDs?.deallocate()
      batchCapacity = n
      batchHashes = .allocate(capacity: n)
      batchGIDs = .allocate(capacity: n)
    }
    guard n > 0, let hashes = batchHashes, let gids = batchGIDs else {
      return UnsafeBufferPointer(start: nil, count: 0)
    }
    if try groupIDsDirect(keys: keys, seed: seed, into: gids) {
      return UnsafeBufferPointer(start: gids, count: n)
    }
    try Column.hashRows(keys, count: n, seed: seed, into: hashes)
    try groupIDs(keys: keys, hashes: hashes, into: gids)
    return UnsafeBufferPointer(start: gids, count: n)
  }

  /// Groups a whole frame: hashes `keys` with `seed`, then folds each aggregate's value column.
  /// `values[i]` feeds aggregate `i`. The convenience path for built-in reductions.
  public func add(keys: Column, values: [Column], seed: UInt64) throws {
    try add(keys: [keys], values: values, seed: seed)
  }

  /// `add(keys:values:seed:)` for a key of several columns.
  public func add(keys: [Column], values: [Column], seed: UInt64) throws {
    let n = keys.first?.count ?? 0
    for (i, v) in values.enumerated() where v.count != n {
      throw FrameError.lengthMismatch(column: i + keys.count, expected: n, found: v.count)
    }
    let gids = try groupIDs(keys: keys, seed: seed)
    guard let base = gids.baseAddress else { return }
    for (i, v) in values.enumerated() { try update(i, values: v, gids: base) }
  }

  /// Every group as a frame `[key columns, aggregate 0, aggregate 1, …]` (its prefix the key
  /// columns) in no particular order (the order keys first arrived in), then empties the
  /// combiner: the cheap drain for output that stays in memory. Cost: one copy of keys and
  /// aggregates, no sort.
  public func drainUnordered() throws -> Frame {
    let groups = groupCount
    var columns = try keyColumnsInGroupOrder(groups)
    for (i, (_, valueType)) in aggregates.enumerated() {
      let values = bs_comb_agg_values(handle, Int32(i))!
      columns.append(try Column.copyScalars(.scalar(valueType), from: values, count: groups))
    }
    let frame = Frame(unchecked: columns, count: groups, prefix: keyTypes.count)
    reset()
    return frame
  }

  /// Every group as a frame `[key columns, aggregate 0, aggregate 1, …]` sorted by
  /// (hash, key), with the hashes in the same order; then empties the combiner. The order is
  /// the one `SortOrder.hash` gives, so drained runs merge directly.
  public func drain() throws -> (frame: Frame, hashes: [UInt64]) {
    let groups = groupCount
    var perm = [UInt32](repeating: 0, count: groups)
    var sortedHashes = [UInt64](repeating: 0, count: groups)
    var tmpKeys = [UInt64](repeating: 0, count: groups)
    var tmpPerm = [UInt32](repeating: 0, count: groups)
    perm.withUnsafeMutableBufferPointer { p in
      sortedHashes.withUnsafeMutableBufferPointer { k in
        tmpKeys.withUnsafeMutableBufferPointer { tk in
          tmpPerm.withUnsafeMutableBufferPointer { tp in
            _ = bs_comb_hash_order(handle, p.baseAddress, k.baseAddress, tk.baseAddress, tp.baseAddress)
          }
        }
      }
    }
    // `sortedHashes` holds the hashes in sorted order (the radix sort sorted them in place).
    let keys = Frame(unchecked: try keyColumnsInGroupOrder(groups), count: groups, prefix: keyTypes.count)
    var start = 0
    while start < groups {
      var end = start + 1
      while end < groups && sortedHashes[end] == sortedHashes[start] { end += 1 }
      if end - start > 1 {
        perm[start..<end].sort { a, b in
          let c = keys.compareKeys(Int(a), keys, Int(b))
          return c != 0 ? c < 0 : a < b
        }
      }
      start = end
    }
    var columns = keys.columns.map { $0.gather(perm) }
    for (i, (_, valueType)) in aggregates.enumerated() {
      let values = bs_comb_agg_values(handle, Int32(i))!
      columns.append(Column.gatherScalar(kind: valueType, from: values, perm: perm))
    }
    let frame = Frame(unchecked: columns, count: groups, prefix: keyTypes.count)
    reset()
    return (frame, sortedHashes)
  }

  /// Drops every group, keeping the declared aggregates and the table's capacity.
  public func reset() { _ = bs_comb_reset(handle) }

  private func keyColumnsInGroupOrder(_ groups: Int) throws -> [Column] {
    let leaves: [Column]
    switch rows.form {
    case .single: leaves = [keyColumnInGroupOrder(groups)]
    case .packed: leaves = rows.unpack(bs_comb_keys_u64(handle)!, count: groups)
    case .fixed: leaves = rows.unpack(fixed: bs_comb_keys_fixed(handle)!, count: groups)
    case .rows:
      leaves = try rows.decode(offsets: bs_comb_key_offsets(handle)!, bytes: bs_comb_key_bytes(handle), count: groups)
    }
    return hasRecordKey ? try Column.assemble(keyTypes, count: groups, from: leaves) : leaves
  }

  private func keyColumnInGroupOrder(_ groups: Int) -> Column {
    let keyType = rows.types[0]
    switch keyType {
    case .scalar(let kind):
      let keys = bs_comb_keys_u64(handle)!
      let out = ScalarStorage(byteCount: groups * kind.width)
      switch kind.width {
      case 1: narrow(keys, groups, out.base.assumingMemoryBound(to: UInt8.self))
      case 2: narrow(keys, groups, out.base.assumingMemoryBound(to: UInt16.self))
      case 4: narrow(keys, groups, out.base.assumingMemoryBound(to: UInt32.self))
      default: out.base.copyMemory(from: keys, byteCount: groups * 8)
      }
      return Column(type: keyType, count: groups, offset: 0, storage: .scalar(out))
    default:
      let offsets = bs_comb_key_offsets(handle)!
      let bytes = bs_comb_key_bytes(handle)!
      let total = Int(offsets[groups])
      let out = BytesStorage(rows: groups, byteCount: total)
      out.offsets.update(from: offsets, count: groups + 1)
      if total > 0 { out.bytes.update(from: bytes, count: total) }
      return Column(type: keyType, count: groups, offset: 0, storage: .bytes(out))
    }
  }

  private func scratch(_ n: Int) -> UnsafeMutablePointer<UInt64> {
    if n > scratchCapacity {
      scratchKeys?.deallocate()
      scratchKeys = .allocate(capacity: n)
      scratchCapacity = n
    }
    return scratchKeys!
  }
}

private func widen<T: FixedWidthInteger>(_ src: UnsafePointer<T>, _ n: Int, _ dst: UnsafeMutablePointer<UInt64>) {
  for i in 0..<n { dst[i] = UInt64(src[i]) }
}

private func narrow<T: FixedWidthInteger>(_ src: UnsafePointer<UInt64>, _ n: Int, _ dst: UnsafeMutablePointer<T>) {
  for i in 0..<n { dst[i] = T(truncatingIfNeeded: src[i]) }
}

extension Column {
  /// A scalar column with `values[perm[0]], values[perm[1]], …` read from raw memory.
  static func gatherScalar(kind: ScalarKind, from values: UnsafeRawPointer, perm: [UInt32]) -> Column {
    let out = ScalarStorage(byteCount: perm.count * kind.width)
    perm.withUnsafeBufferPointer { _ = bs_gather_fixed(values, kind.width, $0.baseAddress, $0.count, out.base) }
    return Column(type: .scalar(kind), count: perm.count, offset: 0, storage: .scalar(out))
  }
}
