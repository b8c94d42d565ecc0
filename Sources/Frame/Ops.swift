import CSupport

/// Per-column operations: hash, compare, equal, gather and concatenate.
///
/// Each function switches on the column type once and then runs one C kernel (or one typed
/// loop) over the whole column, never a dynamic dispatch per row. Boxed columns go through the
/// ops registered in `BoxedOps`.
extension Column {
  /// Writes the seeded XXH3-64 hash of every row to `out[0..<count]`.
  ///
  /// Scalars hash their bits (so `-0.0` and `+0.0` are distinct keys), strings and byte
  /// arrays their bytes. Identical across processes and machines.
  /// - Throws: `FrameError.unregisteredType` for a boxed type with no ops.
  package func hash(seed: UInt64, into out: UnsafeMutablePointer<UInt64>) throws {
    switch storage {
    case .scalar(let s):
      let width = type.scalarWidth!
      _ = bs_hash_fixed(s.base + offset * width, width, count, seed, out)
    case .bytes(let s):
      bs_hash_bytes(s.offsets + offset, s.bytes, count, seed, out)
    case .boxed:
      guard case .boxed(let name) = type else { preconditionFailure("boxed storage without boxed type") }
      try BoxedOps.lookup(name).hash(self, seed: seed, into: out)
    case .record:
      // Hashed as its leaves, the way a key of those columns is: a record key flattened for
      // the combiner hashes as the record does.
      try Column.hashRows(leaves, count: count, seed: seed, into: out)
    }
  }

  /// Three-way comparison of row `i` with row `j` of `other` (same type) in the column's
  /// natural order: numeric for scalars (floats in IEEE total order), unsigned bytes then
  /// length for strings and byte arrays, the registered order for boxed values.
  /// Cost: one type switch; use the sort kernels for bulk work.
  public func compare(_ i: Int, _ other: Column, _ j: Int) -> Int {
    switch type {
    case .scalar(let kind):
      let a = radixKey(kind, at: i)
      let b = other.radixKey(kind, at: j)
      return a == b ? 0 : (a < b ? -1 : 1)
    case .string, .bytes:
      return variableWidth.compare(i, other.variableWidth, j)
    case .boxed(let name):
      return (try? BoxedOps.lookup(name).compare(self, i, other, j)) ?? 0
    case .record:
      // Field by field, in the order the record lists them.
      guard let mine = fields, let theirs = other.fields else { return 0 }
      for (a, b) in zip(mine, theirs) {
        let r = a.compare(i, b, j)
        if r != 0 { return r }
      }
      return 0
    }
  }

  /// True when row `i` equals row `j` of `other` (same type). Scalars compare by bits.
  public func equal(_ i: Int, _ other: Column, _ j: Int) -> Bool {
    switch type {
    case .scalar(let kind):
      return rawBits(kind, at: i) == other.rawBits(kind, at: j)
    case .string, .bytes:
      let a = variableWidth.raw(at: i)
      let b = other.variableWidth.raw(at: j)
      return a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    case .boxed(let name):
      return (try? BoxedOps.lookup(name).equal(self, i, other, j)) ?? false
    case .record:
      guard let mine = fields, let theirs = other.fields else { return false }
      return zip(mine, theirs).allSatisfy { a, b in a.equal(i, b, j) }
    }
  }

  /// The bits of one scalar row, zero-extended.
  @inline(__always)
  func rawBits(_ kind: ScalarKind, at i: Int) -> UInt64 {
    guard case .scalar(let s) = storage else { preconditionFailure("scalar type without scalar storage") }
    let p = UnsafeRawPointer(s.base) + (offset + i) * kind.width
    switch kind.width {
    case 1: return UInt64(p.load(as: UInt8.self))
    case 2: return UInt64(p.loadUnaligned(as: UInt16.self))
    case 4: return UInt64(p.loadUnaligned(as: UInt32.self))
    default: return p.loadUnaligned(as: UInt64.self)
    }
  }

  /// The order-preserving u64 of one scalar row: the same transform as `bs_radix_keys`,
  /// inline, since ties and merges call it per row.
  @inline(__always)
  func radixKey(_ kind: ScalarKind, at i: Int) -> UInt64 {
    let bits = rawBits(kind, at: i)
    switch kind {
    case .uint8, .uint16, .uint32, .uint64, .bool: return bits
    case .int8: return bits ^ 0x80
    case .int16: return bits ^ 0x8000
    case .int32: return bits ^ 0x8000_0000
    case .int64: return bits ^ 0x8000_0000_0000_0000
    case .float:
      return UInt64(
        bits & 0x8000_0000 != 0 ? ~UInt32(truncatingIfNeeded: bits) : UInt32(truncatingIfNeeded: bits) | 0x8000_0000)
    case .double: return bits & 0x8000_0000_0000_0000 != 0 ? ~bits : bits | 0x8000_0000_0000_0000
    }
  }

  /// A new column with rows `self[perm[0]], self[perm[1]], …`. Every index must be < count.
  package func gather(_ perm: UnsafeBufferPointer<UInt32>, lasting: Bool = false) -> Column {
    switch storage {
    case .scalar(let s):
      let width = type.scalarWidth!
      let out = ScalarStorage(byteCount: perm.count * width, lasting: lasting)
      _ = bs_gather_fixed(s.base + offset * width, width, perm.baseAddress, perm.count, out.base)
      return Column(type: type, count: perm.count, offset: 0, storage: .scalar(out))
    case .bytes(let s):
      let offsets = UnsafeMutablePointer<Int64>.allocate(capacity: perm.count + 1)
      let total = bs_gather_bytes_offsets(s.offsets + offset, perm.baseAddress, perm.count, offsets)
      let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(Int(total), 1))
      bs_gather_bytes(s.offsets + offset, s.bytes, perm.baseAddress, perm.count, offsets, bytes)
      let out = BytesStorage(offsets: offsets, rows: perm.count, bytes: bytes, byteCount: Int(total))
      return Column(type: type, count: perm.count, offset: 0, storage: .bytes(out))
    case .boxed:
      guard case .boxed(let name) = type, let ops = try? BoxedOps.lookup(name) else {
        preconditionFailure("boxed column of an unregistered type")
      }
      return ops.gather(self, perm)
    case .record:
      let gathered = (fields ?? []).map { $0.gather(perm, lasting: lasting) }
      let storage = RecordStorage(fields: gathered, rows: perm.count)
      return Column(type: type, count: perm.count, offset: 0, storage: .record(storage))
    }
  }

  /// A new column with rows `self[perm[0]], self[perm[1]], …`.
  public func gather(_ perm: [UInt32]) -> Column {
    perm.withUnsafeBufferPointer { gather($0) }
  }

  /// One column holding the rows of `columns` in order. All must have the same type.
  /// - Throws: `FrameError.typeMismatch` when they do not; `FrameError.unregisteredType`.
  public static func concat(_ columns: [Column]) throws -> Column {
    if columns.count == 1 { return columns[0] }
    return try concat(ranges: columns.map { ($0, 0..<$0.count) })
  }

  /// One column holding rows `range` of each column in order, copied without slicing each
  /// first (a shuffle gathers thousands of small pieces). All must have the same type.
  /// - Throws: `FrameError.typeMismatch` when they do not; `FrameError.unregisteredType`.
  public static func concat(ranges pieces: [(column: Column, rows: Range<Int>)]) throws -> Column {
    guard let first = pieces.first?.column else { throw FrameError.unsupported("concatenating no columns") }
    for (c, range) in pieces {
      guard c.type == first.type else {
        throw FrameError.typeMismatch(expected: first.type.description, found: c.type.description)
      }
      precondition(range.lowerBound >= 0 && range.upperBound <= c.count, "rows \(range) out of 0..<\(c.count)")
    }
    let rows = pieces.reduce(0) { $0 + $1.rows.count }
    switch first.type {
    case .scalar(let kind):
      let out = ScalarStorage(byteCount: rows * kind.width)
      var at = out.base
      for (c, range) in pieces {
        guard case .scalar(let s) = c.storage else { continue }
        let n = range.count * kind.width
        at.copyMemory(from: s.base + (c.offset + range.lowerBound) * kind.width, byteCount: n)
        at += n
      }
      return Column(type: first.type, count: rows, offset: 0, storage: .scalar(out))
    case .string, .bytes:
      let total = pieces.reduce(0) { acc, piece in
        let v = piece.column.variableWidth
        return acc + Int(v.offsets[piece.rows.upperBound] - v.offsets[piece.rows.lowerBound])
      }
      let out = BytesStorage(rows: rows, byteCount: total)
      var row = 0
      var byte: Int64 = 0
      out.offsets[0] = 0
      for (c, range) in pieces {
        let v = c.variableWidth
        let start = v.offsets[range.lowerBound]
        let n = Int(v.offsets[range.upperBound] - start)
        if n > 0 { (out.bytes + Int(byte)).update(from: v.bytes + Int(start), count: n) }
        for i in 0..<range.count { out.offsets[row + i + 1] = v.offsets[range.lowerBound + i + 1] - start + byte }
        row += range.count
        byte += Int64(n)
      }
      return Column(type: first.type, count: rows, offset: 0, storage: .bytes(out))
    case .boxed(let name):
      let columns = pieces.map { $0.rows.count == $0.column.count ? $0.column : $0.column.slice($0.rows) }
      return try BoxedOps.lookup(name).concat(columns)
    case .record(let record):
      let fields = try record.fields.indices.map { f in
        try Column.concat(ranges: pieces.map { ($0.column.fields![f], $0.rows) })
      }
      return try Column(record: record, fields: fields, count: rows)
    }
  }
}
