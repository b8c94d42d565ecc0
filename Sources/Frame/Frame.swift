import CSupport

/// A batch of rows: a schema plus equal-length columns.
///
/// Frames are values; their columns share immutable storage, so slicing and copying a frame
/// are free. Operators pass frames of a few thousand to a few tens of thousands of rows
/// (`Frame.defaultRows`) between each other.
public struct Frame: Sendable {
  /// The rows in a frame when an operator is free to choose: large enough that per-frame costs
  /// vanish, small enough to stay in cache.
  public static let defaultRows = 16_384

  /// The columns, all of length `count`.
  public let columns: [Column]
  /// The number of rows.
  public let count: Int
  /// The number of leading columns that form the key.
  public let prefix: Int

  /// A frame of `columns` whose first `prefix` columns form the key.
  /// - Throws: `FrameError.lengthMismatch` when the columns differ in length.
  public init(_ columns: [Column], prefix: Int = 1) throws {
    let count = columns.first?.count ?? 0
    for (i, c) in columns.enumerated() where c.count != count {
      throw FrameError.lengthMismatch(column: i, expected: count, found: c.count)
    }
    self.columns = columns
    self.count = count
    self.prefix = max(0, min(prefix, columns.count))
  }

  init(unchecked columns: [Column], count: Int, prefix: Int) {
    self.columns = columns
    self.count = count
    self.prefix = prefix
  }

  /// An empty frame of `schema`.
  public static func empty(_ schema: Schema) throws -> Frame {
    Frame(unchecked: try schema.types.map { try Column.empty($0) }, count: 0, prefix: schema.prefix)
  }

  /// The column types and key prefix.
  public var schema: Schema { Schema(columns.map(\.type), prefix: prefix) }

  /// Whether the columns have exactly `types`, checked without building a schema.
  package func hasTypes(_ types: [ColumnType]) -> Bool {
    guard columns.count == types.count else { return false }
    for (i, column) in columns.enumerated() where column.type != types[i] { return false }
    return true
  }

  /// The key columns (the first `prefix`; all columns when `prefix` is 0).
  public var keyColumns: ArraySlice<Column> { prefix == 0 ? columns[...] : columns[..<prefix] }

  /// The columns this frame is stored as, records expanded into their fields' leaves.
  package var leaves: [Column] { columns.flatMap(\.leaves) }

  /// The key columns as leaves (see `leaves`).
  package var keyLeaves: [Column] { keyColumns.flatMap(\.leaves) }

  /// Bytes of memory the rows occupy: what a buffer of this frame charges to a budget.
  public var byteCount: Int { columns.reduce(0) { $0 + $1.byteCount } }

  /// A zero-copy frame of rows `range`.
  public func slice(_ range: Range<Int>) -> Frame {
    Frame(unchecked: columns.map { $0.slice(range) }, count: range.count, prefix: prefix)
  }

  /// A new frame with rows `self[perm[0]], self[perm[1]], …`.
  package func gather(_ perm: UnsafeBufferPointer<UInt32>, lasting: Bool = false) -> Frame {
    Frame(unchecked: columns.map { $0.gather(perm, lasting: lasting) }, count: perm.count, prefix: prefix)
  }

  /// A new frame with rows `self[perm[0]], self[perm[1]], …`; with `lasting`, its fixed-width
  /// columns are allocated for data that outlives the task making it (an output held in
  /// memory), outside the heap its short-lived buffers come from.
  public func gather(_ perm: [UInt32], lasting: Bool = false) -> Frame {
    perm.withUnsafeBufferPointer { gather($0, lasting: lasting) }
  }

  /// One frame holding the rows of `frames` in order.
  /// - Throws: `FrameError.typeMismatch` when the schemas differ.
  public static func concat(_ frames: [Frame]) throws -> Frame {
    guard let first = frames.first else { throw FrameError.unsupported("concatenating no frames") }
    if frames.count == 1 { return first }
    for f in frames where f.columns.count != first.columns.count {
      throw FrameError.typeMismatch(expected: first.schema.description, found: f.schema.description)
    }
    let columns = try (0..<first.columns.count).map { i in try Column.concat(frames.map { $0.columns[i] }) }
    return Frame(unchecked: columns, count: frames.reduce(0) { $0 + $1.count }, prefix: first.prefix)
  }

  /// The rows of `frames` in order as one slice of the frame they were all sliced from, when
  /// each follows the one before in every column (nil otherwise, or for no frames): a
  /// concatenation with no copy. The slice keeps that whole frame alive.
  package static func joinedSlices(_ frames: [Frame]) -> Frame? {
    guard let first = frames.first else { return nil }
    var columns = first.columns
    for next in frames.dropFirst() {
      guard next.columns.count == columns.count else { return nil }
      for (i, column) in next.columns.enumerated() {
        guard let joined = columns[i].followed(by: column) else { return nil }
        columns[i] = joined
      }
    }
    return Frame(unchecked: columns, count: frames.reduce(0) { $0 + $1.count }, prefix: first.prefix)
  }

  /// One frame holding rows `rows` of each frame in order, copied without slicing each first.
  /// - Throws: `FrameError.typeMismatch` when the schemas differ.
  public static func concat(ranges pieces: [(frame: Frame, rows: Range<Int>)]) throws -> Frame {
    guard let first = pieces.first?.frame else { throw FrameError.unsupported("concatenating no frames") }
    for (f, _) in pieces where f.columns.count != first.columns.count {
      throw FrameError.typeMismatch(expected: first.schema.description, found: f.schema.description)
    }
    let columns = try (0..<first.columns.count).map { i in
      try Column.concat(ranges: pieces.map { ($0.frame.columns[i], $0.rows) })
    }
    return Frame(unchecked: columns, count: pieces.reduce(0) { $0 + $1.rows.count }, prefix: first.prefix)
  }

  /// The seeded hash of each row's key: the hash of the single key column, or the combined
  /// hashes of several. Equal keys hash equal on every machine.
  package func hashKeys(seed: UInt64, into out: UnsafeMutablePointer<UInt64>) throws {
    try Column.hashRows(keyColumns, count: count, seed: seed, into: out)
  }

  /// The seeded hash of each row's key, as an array.
  public func hashKeys(seed: UInt64) throws -> [UInt64] {
    try [UInt64](unsafeUninitializedCapacity: count) { buf, n in
      try hashKeys(seed: seed, into: buf.baseAddress!)
      n = count
    }
  }

  /// Three-way comparison of the key of row `i` with the key of row `j` of `other`,
  /// column by column.
  public func compareKeys(_ i: Int, _ other: Frame, _ j: Int) -> Int {
    for (k, c) in keyColumns.enumerated() {
      let r = c.compare(i, other.columns[k], j)
      if r != 0 { return r }
    }
    return 0
  }

  /// True when the key of row `i` equals the key of row `j` of `other`.
  public func equalKeys(_ i: Int, _ other: Frame, _ j: Int) -> Bool {
    for (k, c) in keyColumns.enumerated() where !c.equal(i, other.columns[k], j) { return false }
    return true
  }

  /// The value at row `row` of column `column`, type-erased. For tests and printing.
  public func anyValue(row: Int, column: Int) -> AnyHashable { columns[column].anyValue(at: row) }

  /// Every row as type-erased values. Slow: for tests and printing.
  public var anyRows: [[AnyHashable]] {
    (0..<count).map { r in columns.map { $0.anyValue(at: r) } }
  }
}

extension Column {
  /// The seeded hash of each row of the key columns `columns` (`count` rows each): the hash of
  /// a single column, or the combined hashes of several. Equal keys hash equal on every
  /// machine.
  package static func hashRows(
    _ columns: some Collection<Column>, count: Int, seed: UInt64, into out: UnsafeMutablePointer<UInt64>
  ) throws {
    guard !columns.isEmpty else {
      // A key of no columns (a record of no fields): every row the same.
      out.update(repeating: 0, count: count)
      return
    }
    if columns.contains(where: { $0.fields != nil }) {
      // Records hash as their leaves, so a key hashes the same before and after flattening.
      return try hashRows(columns.flatMap(\.leaves), count: count, seed: seed, into: out)
    }
    try columns.first?.hash(seed: seed, into: out)
    if columns.count > 1 {
      let scratch = UnsafeMutablePointer<UInt64>.allocate(capacity: max(count, 1))
      defer { scratch.deallocate() }
      for c in columns.dropFirst() {
        try c.hash(seed: seed, into: scratch)
        bs_hash_combine(out, scratch, count)
      }
    }
  }
}
