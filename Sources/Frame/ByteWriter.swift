/// A growable byte buffer that encoders append to. Reusable: `removeAll` keeps the capacity,
/// so a long-lived writer stops allocating once it has seen its largest payload.
public final class ByteWriter {
  /// The start of the written bytes, valid until the next append.
  package private(set) var base: UnsafeMutableRawPointer
  /// Bytes written.
  public private(set) var count = 0
  private var capacity: Int

  public init(capacity: Int = 1 << 16) {
    self.capacity = max(capacity, 64)
    base = .allocate(byteCount: self.capacity, alignment: 16)
  }

  deinit { base.deallocate() }

  /// Forgets the written bytes, keeping the memory.
  public func removeAll() { count = 0 }

  /// The written bytes, valid until the next append.
  package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

  /// Makes room for `n` more bytes and returns where they go; `commit(n)` then counts them.
  package func reserve(_ n: Int) -> UnsafeMutableRawPointer {
    if count + n > capacity {
      let newCapacity = max(capacity * 2, count + n)
      let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
      grown.copyMemory(from: base, byteCount: count)
      base.deallocate()
      base = grown
      capacity = newCapacity
    }
    return base + count
  }

  /// Counts `n` bytes written into the space `reserve` returned.
  public func commit(_ n: Int) {
    precondition(count + n <= capacity, "commit past reserved space")
    count += n
  }

  package func append(_ raw: UnsafeRawBufferPointer) {
    guard raw.count > 0 else { return }
    reserve(raw.count).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
    count += raw.count
  }

  public func append(_ bytes: [UInt8]) { bytes.withUnsafeBytes { append($0) } }

  /// Appends a fixed-width integer, little-endian.
  public func append<T: FixedWidthInteger>(_ value: T) {
    let size = MemoryLayout<T>.size
    reserve(size).storeBytes(of: value.littleEndian, as: T.self)
    count += size
  }
}

/// A cursor over bytes that an untrusted source produced. Every read checks the bounds first
/// and throws `FrameError.corrupt` with what was being read, never reads past the end.
public struct ByteReader {
  @usableFromInline package let bytes: UnsafeRawBufferPointer
  @usableFromInline var next = 0

  package init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

  /// The next byte to read.
  public var position: Int { next }

  @inlinable public var remaining: Int { bytes.count - next }

  /// Reads a little-endian fixed-width integer. Inlinable, so a decoder in another module
  /// reads at the width it names, not through generic metadata per field.
  @inlinable
  public mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
    let size = MemoryLayout<T>.size
    guard remaining >= size else { throw FrameError.corrupt("\(what()): needs \(size) bytes, \(remaining) left") }
    let value = bytes.loadUnaligned(fromByteOffset: next, as: T.self)
    next += size
    return T(littleEndian: value)
  }

  /// Reads a count that must be in `0...limit`.
  public mutating func readCount(_ what: @autoclosure () -> String, limit: Int) throws -> Int {
    let value = try read(UInt64.self, what())
    guard value <= UInt64(limit) else { throw FrameError.corrupt("\(what()): \(value) is over the bound \(limit)") }
    return Int(value)
  }

  /// Returns the next `n` bytes and moves past them.
  package mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawBufferPointer {
    guard n >= 0, remaining >= n else { throw FrameError.corrupt("\(what()): needs \(n) bytes, \(remaining) left") }
    let slice = UnsafeRawBufferPointer(rebasing: bytes[next..<(next + n)])
    next += n
    return slice
  }
}
