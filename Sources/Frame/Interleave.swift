/// Building a frame from rows picked out of several frames: the output step of a k-way merge.
extension Frame {
  /// A new frame whose row `i` is row `rows[i]` of `chunks[Int(chunkIndices[i])]`. All chunks
  /// must have the same column types. Each column is built in one typed pass.
  public static func interleave(_ chunks: [Frame], chunkIndices: [UInt32], rows: [UInt32]) throws -> Frame {
    precondition(chunkIndices.count == rows.count, "interleave needs a chunk and a row per output row")
    guard let first = chunks.first else { throw FrameError.unsupported("interleaving no frames") }
    let columns = try (0..<first.columns.count).map { c in
      try Column.interleave(chunks.map { $0.columns[c] }, chunkIndices: chunkIndices, rows: rows)
    }
    return Frame(unchecked: columns, count: rows.count, prefix: first.prefix)
  }
}

extension Column {
  /// A new column whose row `i` is row `rows[i]` of `chunks[chunkIndices[i]]`.
  static func interleave(_ chunks: [Column], chunkIndices: [UInt32], rows: [UInt32]) throws -> Column {
    let type = chunks[0].type
    for c in chunks where c.type != type {
      throw FrameError.typeMismatch(expected: type.description, found: c.type.description)
    }
    let n = rows.count
    switch type {
    case .scalar(let kind):
      let bases = chunks.map { c -> UnsafeRawPointer in
        guard case .scalar(let s) = c.storage else { preconditionFailure("scalar type without scalar storage") }
        return UnsafeRawPointer(s.base + c.offset * kind.width)
      }
      let out = ScalarStorage(byteCount: n * kind.width)
      switch kind.width {
      case 1: pick(UInt8.self, bases, chunkIndices, rows, out.base)
      case 2: pick(UInt16.self, bases, chunkIndices, rows, out.base)
      case 4: pick(UInt32.self, bases, chunkIndices, rows, out.base)
      default: pick(UInt64.self, bases, chunkIndices, rows, out.base)
      }
      return Column(type: type, count: n, offset: 0, storage: .scalar(out))
    case .string, .bytes:
      let views = chunks.map(\.variableWidth)
      let offsets = UnsafeMutablePointer<Int64>.allocate(capacity: n + 1)
      offsets[0] = 0
      for i in 0..<n {
        let v = views[Int(chunkIndices[i])]
        let r = Int(rows[i])
        offsets[i + 1] = offsets[i] + (v.offsets[r + 1] - v.offsets[r])
      }
      let total = Int(offsets[n])
      let bytes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(total, 1))
      for i in 0..<n {
        let v = views[Int(chunkIndices[i])]
        let r = Int(rows[i])
        let len = Int(offsets[i + 1] - offsets[i])
        if len > 0 { (bytes + Int(offsets[i])).update(from: v.bytes + Int(v.offsets[r]), count: len) }
      }
      withExtendedLifetime(views) {}
      let out = BytesStorage(offsets: offsets, rows: n, bytes: bytes, byteCount: total)
      return Column(type: type, count: n, offset: 0, storage: .bytes(out))
    case .record(let record):
      let fields = try record.fields.indices.map { f in
        try Column.interleave(chunks.map { $0.fields![f] }, chunkIndices: chunkIndices, rows: rows)
      }
      return try Column(record: record, fields: fields, count: n)
    case .boxed:
      // Boxed columns concatenate the chunks and gather: the escape hatch, not the fast path.
      let all = try Column.concat(chunks)
      var starts: [UInt32] = [0]
      for c in chunks { starts.append(starts.last! + UInt32(c.count)) }
      let perm = (0..<n).map { starts[Int(chunkIndices[$0])] + rows[$0] }
      return perm.withUnsafeBufferPointer { all.gather($0) }
    }
  }
}

private func pick<T>(
  _: T.Type, _ bases: [UnsafeRawPointer], _ chunkIndices: [UInt32], _ rows: [UInt32], _ out: UnsafeMutableRawPointer
) {
  let typed = bases.map { $0.assumingMemoryBound(to: T.self) }
  let dst = out.assumingMemoryBound(to: T.self)
  typed.withUnsafeBufferPointer { b in
    chunkIndices.withUnsafeBufferPointer { c in
      rows.withUnsafeBufferPointer { r in
        for i in 0..<r.count { dst[i] = b[Int(c[i])][Int(r[i])] }
      }
    }
  }
}
