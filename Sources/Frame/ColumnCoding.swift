import CSupport

/// How a column's values are laid out before the block compressor sees them.
public enum ColumnTransform: UInt8, Sendable, Codable {
  /// The bytes as they are in memory.
  case none = 0
  /// Byte transposition of fixed-width values (byte j of every value together), which puts
  /// the zero high bytes of small integers into long runs.
  case byteShuffle = 1
}

extension Column {
  /// Appends this column's encoding to `out`.
  ///
  /// Layout (little-endian):
  /// - scalar: `u8 transform`, then `count × width` bytes (transposed if shuffled);
  /// - string / bytes: `u8 transform`, `u64 total bytes`, `count × u32` lengths (transposed
  ///   if shuffled), then the bytes;
  /// - boxed: `u64 length`, then the registered ops' encoding;
  /// - record: each field's encoding in turn.
  /// The row count and type are not written: the frame codec carries them.
  public func encode(into out: ByteWriter, transform: ColumnTransform) throws {
    switch storage {
    case .scalar(let s):
      let width = type.scalarWidth!
      let n = count * width
      let shuffle = transform == .byteShuffle && width > 1 && count > 0
      out.append(UInt8(shuffle ? ColumnTransform.byteShuffle.rawValue : 0))
      let src = s.base + offset * width
      if shuffle {
        _ = bs_byte_shuffle(src, width, count, out.reserve(n))
        out.commit(n)
      } else {
        out.append(UnsafeRawBufferPointer(start: src, count: n))
      }
    case .bytes(let s):
      let shuffle = transform == .byteShuffle && count > 0
      out.append(UInt8(shuffle ? ColumnTransform.byteShuffle.rawValue : 0))
      let start = s.offsets[offset]
      let total = Int(s.offsets[offset + count] - start)
      guard total <= Int(UInt32.max) || count == 0 else { throw FrameError.unsupported("a column of \(total) bytes") }
      out.append(UInt64(total))
      let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: max(count, 1))
      defer { lengths.deallocate() }
      for i in 0..<count { lengths[i] = UInt32(s.offsets[offset + i + 1] - s.offsets[offset + i]) }
      if shuffle {
        _ = bs_byte_shuffle(lengths, 4, count, out.reserve(count * 4))
        out.commit(count * 4)
      } else {
        out.append(UnsafeRawBufferPointer(start: lengths, count: count * 4))
      }
      out.append(UnsafeRawBufferPointer(start: s.bytes + Int(start), count: total))
    case .boxed:
      guard case .boxed(let name) = type else { preconditionFailure("boxed storage without boxed type") }
      let encoded = try BoxedOps.lookup(name).encode(self)
      out.append(UInt64(encoded.count))
      out.append(encoded)
    case .record:
      for field in fields ?? [] { try field.encode(into: out, transform: transform) }
    }
  }

  /// Decodes a column of `type` with `count` rows from `reader`, checking every length
  /// against the bytes that remain.
  /// - Throws: `FrameError.corrupt` naming what was malformed; `FrameError.unregisteredType`;
  ///   `FrameError.codable`.
  public static func decode(_ type: ColumnType, count: Int, from reader: inout ByteReader) throws -> Column {
    switch type {
    case .scalar(let kind):
      let transform = try reader.read(UInt8.self, "\(type) column transform")
      guard let t = ColumnTransform(rawValue: transform) else {
        throw FrameError.corrupt("unknown column transform \(transform)")
      }
      let (n, overflow) = count.multipliedReportingOverflow(by: kind.width)
      guard !overflow else { throw FrameError.corrupt("\(count) rows of \(kind)") }
      let src = try reader.take(n, "\(count) values of \(kind)")
      let out = ScalarStorage(byteCount: n)
      if t == .byteShuffle && kind.width > 1 && count > 0 {
        _ = bs_byte_unshuffle(src.baseAddress, kind.width, count, out.base)
      } else if n > 0 {
        out.base.copyMemory(from: src.baseAddress!, byteCount: n)
      }
      if kind == .bool {
        // Any byte but 0 or 1 would be undefined behaviour when read as a Swift Bool.
        let bytes = UnsafeRawBufferPointer(start: out.base, count: n)
        if let bad = bytes.firstIndex(where: { $0 > 1 }) {
          throw FrameError.corrupt("bool column holds byte \(bytes[bad]) at row \(bad)")
        }
      }
      return Column(type: type, count: count, offset: 0, storage: .scalar(out))
    case .string, .bytes:
      let transform = try reader.read(UInt8.self, "\(type) column transform")
      guard let t = ColumnTransform(rawValue: transform) else {
        throw FrameError.corrupt("unknown column transform \(transform)")
      }
      let total = try reader.readCount("\(type) column byte count", limit: reader.remaining)
      let (lengthBytes, overflow) = count.multipliedReportingOverflow(by: 4)
      guard !overflow else { throw FrameError.corrupt("\(count) rows of \(type)") }
      let rawLengths = try reader.take(lengthBytes, "\(count) lengths of \(type)")
      let lengths = UnsafeMutablePointer<UInt32>.allocate(capacity: max(count, 1))
      defer { lengths.deallocate() }
      if t == .byteShuffle && count > 0 {
        _ = bs_byte_unshuffle(rawLengths.baseAddress, 4, count, lengths)
      } else if count > 0 {
        UnsafeMutableRawPointer(lengths).copyMemory(from: rawLengths.baseAddress!, byteCount: lengthBytes)
      }
      let bytes = try reader.take(total, "\(total) bytes of \(type)")
      let out = BytesStorage(rows: count, byteCount: total)
      var at: Int64 = 0
      out.offsets[0] = 0
      for i in 0..<count {
        at += Int64(lengths[i])
        guard at <= Int64(total) else {
          throw FrameError.corrupt("\(type) lengths add up past the \(total) bytes given")
        }
        out.offsets[i + 1] = at
      }
      guard at == Int64(total) else { throw FrameError.corrupt("\(type) lengths add up to \(at), not \(total)") }
      if total > 0 { out.bytes.update(from: bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), count: total) }
      return Column(type: type, count: count, offset: 0, storage: .bytes(out))
    case .boxed(let name):
      let ops = try BoxedOps.lookup(name)
      let n = try reader.readCount("boxed column length", limit: reader.remaining)
      let column = try ops.makeColumn(decoding: Array(try reader.take(n, "boxed column of \(name)")))
      guard column.count == count else {
        throw FrameError.corrupt("boxed column of \(name) holds \(column.count) rows, expected \(count)")
      }
      return column
    case .record(let record):
      let fields = try record.fields.map { try decode($0, count: count, from: &reader) }
      return try Column(record: record, fields: fields, count: count)
    }
  }
}
