import CSupport
import Synchronization

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// Lists of scalars (`[Int]`, `[Double]`, …: the columns a cogroup makes). A boxed column of
/// them is coded as packed binary, not as JSON, which costs a dynamic cast and an allocation
/// per element (see `PackedListCoding`).
protocol PackedList {
  static func pack(_ values: ArraySlice<Self>) -> [UInt8]
  /// XXH3 of the list's values' bytes: what a boxed column of lists hashes by, unless its
  /// type was registered with a hash of its own.
  static func hash(_ value: Self, seed: UInt64) -> UInt64
  /// The bytes `values` take in memory: each list's own buffer (its header and capacity)
  /// besides its reference.
  static func heapBytes(_ values: ArraySlice<Self>) -> Int
  /// The lists coded in `bytes`, held packed.
  /// - Throws: `FrameError.corrupt` when a count or length is out of bounds.
  static func unpack(_ bytes: UnsafeRawBufferPointer) throws -> PackedListColumn
}

/// The binary coding of a column of lists of scalars: a marker byte (a JSON column starts
/// with `[`), the row count (u64), each list's length (u64), then every list's values, all
/// native little-endian. With `shuffled`, the lengths and then the values are each stored
/// byte-transposed (`bs_byte_shuffle`, the element width; as a scalar column's
/// `.byteShuffle`), so that the codec sees the zero high bytes of small numbers together,
/// which zstd codes several times faster both ways. Plain lists (marker 0) are still read.
enum PackedListCoding {
  static let plain: UInt8 = 0
  static let shuffled: UInt8 = 1

  /// Whether `byte` starts a packed coding.
  static func isMarker(_ byte: UInt8) -> Bool { byte == plain || byte == shuffled }

  /// The shuffled coding of lists of the given `lengths` whose `total` values, `width` bytes
  /// each, lie contiguously at `values`.
  static func encode(_ lengths: some Collection<Int>, total: Int, width: Int, values: UnsafeRawPointer?) -> [UInt8] {
    let n = lengths.count
    let size = 9 + n * 8 + total * width
    let lengthWords = UnsafeMutablePointer<UInt64>.allocate(capacity: max(n, 1))
    defer { lengthWords.deallocate() }
    for (i, length) in lengths.enumerated() { lengthWords[i] = UInt64(length) }
    return [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
      let out = UnsafeMutableRawPointer(buffer.baseAddress!)
      out.storeBytes(of: shuffled, as: UInt8.self)
      withUnsafeBytes(of: UInt64(n).littleEndian) { (out + 1).copyMemory(from: $0.baseAddress!, byteCount: 8) }
      transpose(lengthWords, width: 8, count: n, into: out + 9)
      if let values { transpose(values, width: width, count: total, into: out + 9 + n * 8) }
      count = size
    }
  }

  /// `bs_byte_shuffle` (or with `inverse`, `bs_byte_unshuffle`) of `count` values of `width`
  /// bytes; a copy for one-byte values.
  static func transpose(
    _ src: UnsafeRawPointer, width: Int, count: Int, into dst: UnsafeMutableRawPointer, inverse: Bool = false
  ) {
    guard count > 0 else { return }
    if width == 1 {
      dst.copyMemory(from: src, byteCount: count)
    } else {
      let rc = inverse ? bs_byte_unshuffle(src, width, count, dst) : bs_byte_shuffle(src, width, count, dst)
      precondition(rc == BS_OK, "byte transposition of width \(width)")
    }
  }
}

// The list element is generic here; unspecialized, every list built costs a runtime lookup of
// its array type's metadata, which was most of a driver's time reading back a cogroup's result.
// The common element types get their own copies.
extension Array: PackedList where Element: ScalarValue {
  @_specialize(where Element == Int)
  @_specialize(where Element == Int64)
  @_specialize(where Element == Int32)
  @_specialize(where Element == Double)
  @_specialize(where Element == Float)
  @_specialize(where Element == UInt64)
  @_specialize(where Element == UInt32)
  @_specialize(where Element == Bool)
  static func pack(_ values: ArraySlice<[Element]>) -> [UInt8] {
    let total = values.reduce(0) { $0 + $1.count }
    // The lists' values, one after another, to be transposed in one pass.
    let flat = UnsafeMutableRawPointer.allocate(
      byteCount: Swift.max(total * MemoryLayout<Element>.stride, 1), alignment: 16)
    defer { flat.deallocate() }
    var at = flat
    for list in values {
      list.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
      at += list.count * MemoryLayout<Element>.stride
    }
    return PackedListCoding.encode(
      values.lazy.map(\.count), total: total, width: MemoryLayout<Element>.stride, values: flat)
  }

  @_specialize(where Element == Int)
  @_specialize(where Element == Double)
  static func heapBytes(_ values: ArraySlice<Self>) -> Int {
    // An array's buffer: a 32-byte header, then its capacity (none for an empty array).
    values.reduce(0) { $0 + ($1.capacity == 0 ? 0 : 32 + $1.capacity * MemoryLayout<Element>.stride) }
  }

  @_specialize(where Element == Int)
  @_specialize(where Element == Double)
  static func hash(_ value: Self, seed: UInt64) -> UInt64 {
    value.withUnsafeBytes { bs_hash_one($0.count > 0 ? $0.baseAddress : nil, $0.count, seed) }
  }

  static func unpack(_ bytes: UnsafeRawBufferPointer) throws -> PackedListColumn {
    let stride = MemoryLayout<Element>.stride
    var reader = ByteReader(bytes)
    let marker = try reader.read(UInt8.self, "packed list marker")
    let n = try reader.readCount("packed list rows", limit: reader.remaining / 8)
    var offsets: [Int] = []
    offsets.reserveCapacity(n + 1)
    offsets.append(0)
    var total = 0
    func add(_ length: Int, _ row: Int, _ remaining: Int) throws {
      guard length >= 0, length <= remaining / stride - total else {
        throw FrameError.corrupt("packed lists: \(length) values in row \(row), more than the bytes hold")
      }
      total += length
      offsets.append(total)
    }
    let shuffled = marker == PackedListCoding.shuffled
    if shuffled {
      let raw = try reader.take(n * 8, "packed list lengths")
      var lengths = [UInt64](repeating: 0, count: n)
      lengths.withUnsafeMutableBytes {
        PackedListCoding.transpose(raw.baseAddress!, width: 8, count: n, into: $0.baseAddress!, inverse: true)
      }
      for row in 0..<n {
        guard lengths[row] <= UInt64(Int.max) else {
          throw FrameError.corrupt("packed list \(row) length \(lengths[row])")
        }
        try add(Int(lengths[row]), row, reader.remaining)
      }
    } else {
      for row in 0..<n {
        let length = try reader.readCount("packed list \(row) length", limit: reader.remaining / stride)
        try add(length, row, reader.remaining)
      }
    }
    guard total * stride == reader.remaining else {
      throw FrameError.corrupt("packed lists: \(total) values of \(stride) bytes, but \(reader.remaining) bytes")
    }
    // The values follow a 9-byte header, so they are not aligned for `Element`: the storage
    // copies them once, aligned.
    let packed = try reader.take(total * stride, "packed list values")
    if Element.self == Bool.self, packed.contains(where: { $0 > 1 }) {
      throw FrameError.corrupt("packed lists of Bool hold a byte other than 0 or 1")
    }
    return PackedListStorage<Element>(
      offsets: offsets, copying: packed.baseAddress.map(UnsafeRawPointer.init), transposed: shuffled)
  }
}

/// A column's lists already in the packed layout, which encode with one copy of their values
/// and hash in place (as `PackedList.hash`), with no array built.
protocol PackedListEncoding {
  func encode(offset: Int, count: Int) -> [UInt8]
  func hash(offset: Int, count: Int, seed: UInt64, into out: UnsafeMutablePointer<UInt64>)
}

/// A column of packed lists, read row by row (see `Column.packedLists(as:)`): each row's
/// array is built by the reader that wants it, on its own thread, used and freed there. A
/// class, not a protocol, so that a reader can hold it as a plain pointer.
public class PackedListColumn: @unchecked Sendable {
  /// The lists held.
  public var rows: Int { 0 }
  /// Whether the lists are `T` values.
  public func holds<T>(_: T.Type) -> Bool { false }
  /// The list of row `i` (of the storage, not of a column's view) as `T`, which `holds`.
  public func row<T>(_ i: Int, as: T.Type) -> T { preconditionFailure("an abstract PackedListColumn") }
}

/// Lists of scalars held the way they are coded: `offsets` (`rows + 1`) into one buffer of
/// values. A cogroup whose rows go straight to a file makes them, so no array per row is built
/// (and freed) only to be copied into a block; decoding makes them, so each row's array is
/// built by its reader. Whatever reads the whole column as `[E]` values gets the arrays, built
/// once, on first use.
final class PackedListStorage<E: ScalarValue>: PackedListColumn, @unchecked Sendable {
  let offsets: [Int]
  let values: UnsafeMutableBufferPointer<E>
  private let built = Mutex<[[E]]?>(nil)

  /// Copies the values of lists `base[offsets[i] ..< offsets[i + 1]]` (`E` values; `base` need
  /// not be aligned, and may be nil when there are none). With `transposed`, `base` holds
  /// them byte-shuffled (`PackedListCoding`), and `offsets` start at 0.
  init(offsets: [Int], copying base: UnsafeRawPointer?, transposed: Bool = false) {
    self.offsets = offsets
    let first = offsets.first ?? 0
    let total = (offsets.last ?? 0) - first
    let bytes = max(total, 1) * MemoryLayout<E>.stride
    guard let raw = bs_buffer_alloc(bytes) else { fatalError("out of memory for \(total) list values") }
    values = UnsafeMutableBufferPointer(
      start: raw.bindMemory(to: E.self, capacity: max(total, 1)), count: max(total, 1))
    if total > 0, let base {
      if transposed {
        precondition(first == 0, "transposed lists start at offset 0")
        PackedListCoding.transpose(
          base, width: MemoryLayout<E>.stride, count: total, into: values.baseAddress!, inverse: true)
      } else {
        UnsafeMutableRawPointer(values.baseAddress!).copyMemory(
          from: base + first * MemoryLayout<E>.stride, byteCount: total * MemoryLayout<E>.stride)
      }
    }
  }

  deinit { bs_buffer_free(values.baseAddress, values.count * MemoryLayout<E>.stride) }

  override var rows: Int { offsets.count - 1 }

  override func holds<T>(_: T.Type) -> Bool { T.self == [E].self }

  @_specialize(where E == Int, T == [Int])
  @_specialize(where E == Int64, T == [Int64])
  @_specialize(where E == Int32, T == [Int32])
  @_specialize(where E == Double, T == [Double])
  @_specialize(where E == Float, T == [Float])
  @_specialize(where E == UInt64, T == [UInt64])
  @_specialize(where E == UInt32, T == [UInt32])
  @_specialize(where E == Bool, T == [Bool])
  override func row<T>(_ i: Int, as: T.Type) -> T { unsafeBitCast(list(i), to: T.self) }

  // Specialised for the common types: generic, building an array looks up its type's
  // metadata at run time, every time.
  @_specialize(where E == Int)
  @_specialize(where E == Int64)
  @_specialize(where E == Int32)
  @_specialize(where E == Double)
  @_specialize(where E == Float)
  @_specialize(where E == UInt64)
  @_specialize(where E == UInt32)
  @_specialize(where E == Bool)
  func list(_ i: Int) -> [E] {
    Array(UnsafeBufferPointer(rebasing: values[(offsets[i] - offsets[0])..<(offsets[i + 1] - offsets[0])]))
  }

  /// Every list as an array, built on first use.
  var lists: [[E]] {
    built.withLock { built in
      if let built { return built }
      let made = (0..<rows).map(list)
      built = made
      return made
    }
  }
}

extension PackedListStorage: AnyBoxedStorage, PackedListEncoding {
  func anyValue(at i: Int) -> AnyHashable { AnyHashable(list(i)) }
  func values<U>(as: U.Type) -> [U]? { U.self == [E].self ? unsafeBitCast(lists, to: [U].self) : nil }
  func estimatedBytes(offset: Int, count: Int) -> Int {
    (offsets[offset + count] - offsets[offset]) * MemoryLayout<E>.stride + 8 * count
  }

  func hash(offset: Int, count: Int, seed: UInt64, into out: UnsafeMutablePointer<UInt64>) {
    let stride = MemoryLayout<E>.stride
    let base = UnsafeRawPointer(values.baseAddress!)
    for i in 0..<count {
      let start = offsets[offset + i] - offsets[0]
      let bytes = (offsets[offset + i + 1] - offsets[offset + i]) * stride
      out[i] = bs_hash_one(bytes > 0 ? base + start * stride : nil, bytes, seed)
    }
  }

  /// Rows `offset ..< offset + count` in `PackedListCoding`.
  func encode(offset: Int, count: Int) -> [UInt8] {
    let stride = MemoryLayout<E>.stride
    let first = offsets[offset] - offsets[0]
    let total = offsets[offset + count] - offsets[offset]
    let lengths = (offset..<(offset + count)).lazy.map { self.offsets[$0 + 1] - self.offsets[$0] }
    return PackedListCoding.encode(
      lengths, total: total, width: stride, values: UnsafeRawPointer(values.baseAddress!) + first * stride)
  }
}

extension Column {
  /// A column of lists `base[starts[i] ..< starts[i + 1]]` of `E` values (`base` holds them
  /// contiguously, as `E`), kept packed: no array per row (see `PackedListStorage`).
  package static func packedLists<E: ScalarValue & Codable>(_: E.Type, base: UnsafeRawPointer, starts: [UInt64])
    -> Column
  {
    precondition(!starts.isEmpty, "starts needs rows + 1 entries")
    let ops = BoxedOps.opsOrRegisterDefault([E].self)
    let storage = PackedListStorage<E>(offsets: starts.map { Int($0) }, copying: base)
    return Column(type: .boxed(ops.name), count: storage.rows, offset: 0, storage: .boxed(storage))
  }

  /// The packed lists behind this column and its first row among them, when it holds lists
  /// packed and they are `T` values; nil otherwise.
  public func packedLists<T>(as _: T.Type) -> (lists: PackedListColumn, first: Int)? {
    guard case .boxed(let s) = storage, let lists = s as? PackedListColumn, lists.holds(T.self) else { return nil }
    return (lists, offset)
  }
}
