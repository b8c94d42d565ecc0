import Frame

/// Reads values of one column as `T`, by row. Built once per column per frame; the layout
/// switch in `get` is a predictable branch, never a dynamic cast.
///
/// It holds raw pointers only, so copying it (as generic code does for every row, packs not
/// being specialised) retains nothing. The column's storage must outlive it: the frame is a
/// parameter of the function using the getter, or is kept with `withExtendedLifetime`.
@usableFromInline
struct ColumnGetter<T> {
  @usableFromInline enum Layout { case scalar, string, bytes, boxed, packedLists, record }
  @usableFromInline let layout: Layout
  /// Scalars: the first value. Boxed: the first value, inside the storage's immutable array.
  /// Packed lists: the unretained `PackedListColumn`, whose rows from `offsets`' bit pattern
  /// minus one on are this column's. Kept in these fields on purpose: a getter with a field
  /// more (an object reference, or even an `Int`) makes the caller's specialised scan loop look
  /// up generic metadata on every row.
  @usableFromInline let base: UnsafeRawPointer?
  /// Strings and byte arrays: `count + 1` absolute offsets into `bytes`.
  @usableFromInline let offsets: UnsafePointer<Int64>?
  @usableFromInline let bytes: UnsafePointer<UInt8>?

  @usableFromInline
  init(_ column: Column) {
    if let (lists, first) = column.packedLists(as: T.self) {
      layout = .packedLists
      base = UnsafeRawPointer(Unmanaged.passUnretained(lists).toOpaque())
      offsets = UnsafePointer(bitPattern: first + 1)
      bytes = nil
      return
    }
    switch column.type {
    case .scalar:
      layout = .scalar
      base = column.rawBase
      offsets = nil
      bytes = nil
    case .string, .bytes:
      layout = column.type == .string ? .string : .bytes
      let view = column.variableWidth
      base = nil
      offsets = view.offsets
      bytes = view.bytes
    case .boxed:
      layout = .boxed
      base = column.boxedValues(T.self).withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
      offsets = nil
      bytes = nil
    case .record:
      // The rows built as values once, and kept by the column's storage.
      layout = .boxed
      base = column.recordBase(T.self)
      offsets = nil
      bytes = nil
    }
  }

  /// Row `i`'s value. Scalars, the common case, take one load inlined into the caller's loop;
  /// the other layouts go through `getOther`, out of line.
  @inlinable @inline(__always)
  func get(_ i: Int) -> T {
    if layout == .scalar { return base.unsafelyUnwrapped.load(fromByteOffset: i &* MemoryLayout<T>.stride, as: T.self) }
    return getOther(i)
  }

  @usableFromInline @inline(never)
  func getOther(_ i: Int) -> T {
    switch layout {
    case .scalar: return base.unsafelyUnwrapped.load(fromByteOffset: i &* MemoryLayout<T>.stride, as: T.self)
    case .string: return unsafeBitCast(String(decoding: raw(i), as: UTF8.self), to: T.self)
    case .bytes: return unsafeBitCast(Array(raw(i)), to: T.self)
    case .boxed, .record: return base.unsafelyUnwrapped.assumingMemoryBound(to: T.self)[i]
    case .packedLists:
      let lists = Unmanaged<PackedListColumn>.fromOpaque(base.unsafelyUnwrapped).takeUnretainedValue()
      return lists.row(Int(bitPattern: offsets) &- 1 &+ i, as: T.self)
    }
  }

  @inlinable
  func raw(_ i: Int) -> UnsafeBufferPointer<UInt8> {
    let offsets = offsets.unsafelyUnwrapped
    let start = Int(offsets[i])
    return UnsafeBufferPointer(start: bytes.unsafelyUnwrapped + start, count: Int(offsets[i &+ 1]) &- start)
  }
}

/// Collects values of type `T` into a new column.
@usableFromInline
final class ColumnAppender<T> {
  @usableFromInline let layout: ColumnGetter<T>.Layout
  /// The scalar buffer and the row count live behind a pointer: the per-row path then
  /// mutates no class property, so it pays no dynamic exclusivity check.
  @usableFromInline let state: UnsafeMutablePointer<AppendState>
  @usableFromInline var strings: [String] = []
  @usableFromInline var byteArrays: [[UInt8]] = []
  @usableFromInline var values: [T] = []
  let type: ColumnType
  /// Scalars: the column whose storage `state` writes into, handed over by `finish` when full.
  private var scalars: Column?

  @usableFromInline
  init(_ type: ColumnType, capacity: Int = 1024) {
    self.type = type
    switch type {
    case .scalar: layout = .scalar
    case .string: layout = .string
    case .bytes: layout = .bytes
    case .boxed: layout = .boxed
    case .record: layout = .record
    }
    let slots = layout == .scalar || layout == .record ? max(capacity, 16) : 0
    state = .allocate(capacity: 1)
    if layout == .scalar, let (column, base) = try? Column.unfilledScalars(type, count: slots) {
      scalars = column
      state.initialize(to: AppendState(base: base, capacity: slots, count: 0))
    } else {
      state.initialize(
        to: AppendState(
          base: .allocate(byteCount: max(slots * MemoryLayout<T>.stride, 1), alignment: 16), capacity: slots, count: 0))
    }
  }

  deinit {
    if layout == .record { state.pointee.base.assumingMemoryBound(to: T.self).deinitialize(count: count) }
    if scalars == nil { state.pointee.base.deallocate() }
    state.deallocate()
  }

  /// Rows appended since the last `finish`.
  @inlinable var count: Int { state.pointee.count }

  /// Appends a value. Scalars, the common case, take a store inlined into the caller's loop;
  /// the other layouts go through `appendOther`, out of line.
  @inlinable @inline(__always)
  func append(_ value: T) {
    let s = state
    if layout == .scalar && s.pointee.count != s.pointee.capacity {
      s.pointee.base.storeBytes(of: value, toByteOffset: s.pointee.count &* MemoryLayout<T>.stride, as: T.self)
      s.pointee.count &+= 1
      return
    }
    if layout == .record && s.pointee.count != s.pointee.capacity {
      // Records are split into their field columns straight from this buffer at `finish`.
      (s.pointee.base + s.pointee.count &* MemoryLayout<T>.stride).initializeMemory(as: T.self, to: value)
      s.pointee.count &+= 1
      return
    }
    appendOther(value)
  }

  @usableFromInline @inline(never)
  func appendOther(_ value: T) {
    let s = state
    switch layout {
    case .scalar:
      if s.pointee.count == s.pointee.capacity { grow() }
      s.pointee.base.storeBytes(of: value, toByteOffset: s.pointee.count &* MemoryLayout<T>.stride, as: T.self)
    case .record:
      if s.pointee.count == s.pointee.capacity { grow() }
      (s.pointee.base + s.pointee.count &* MemoryLayout<T>.stride).initializeMemory(as: T.self, to: value)
    case .string: strings.append(unsafeBitCast(value, to: String.self))
    case .bytes: byteArrays.append(unsafeBitCast(value, to: [UInt8].self))
    case .boxed, .packedLists: values.append(value)
    }
    s.pointee.count &+= 1
  }

  @usableFromInline
  func grow() {
    let s = state
    let capacity = max(s.pointee.capacity * 2, 16)
    if scalars != nil {
      // The scalar path always has its column (`init`): a bigger one takes over.
      let (column, base) = try! Column.unfilledScalars(type, count: capacity)
      base.copyMemory(from: s.pointee.base, byteCount: s.pointee.count * MemoryLayout<T>.stride)
      scalars = column
      s.pointee.base = base
      s.pointee.capacity = capacity
      return
    }
    let grown = UnsafeMutableRawPointer.allocate(
      byteCount: capacity * MemoryLayout<T>.stride, alignment: max(16, MemoryLayout<T>.alignment))
    if layout == .record {
      grown.moveInitializeMemory(
        as: T.self, from: s.pointee.base.assumingMemoryBound(to: T.self), count: s.pointee.count)
    } else {
      grown.copyMemory(from: s.pointee.base, byteCount: s.pointee.count * MemoryLayout<T>.stride)
    }
    s.pointee.base.deallocate()
    s.pointee.base = grown
    s.pointee.capacity = capacity
  }

  /// The column of everything appended; the appender starts over empty.
  func finish() throws -> Column {
    defer {
      if layout == .record { state.pointee.base.assumingMemoryBound(to: T.self).deinitialize(count: count) }
      state.pointee.count = 0
      strings = []
      byteArrays = []
      values = []
    }
    switch layout {
    case .scalar:
      // A full column is the output as it stands, and a fresh one of the same size takes the
      // next rows (a copy would cost as much as writing them). Any other is copied out at its
      // size, so that a frame holds no more memory than its rows count for.
      guard let full = scalars, count == state.pointee.capacity else {
        return try Column.copyScalars(type, from: UnsafeRawPointer(state.pointee.base), count: count)
      }
      let (column, base) = try Column.unfilledScalars(type, count: count)
      scalars = column
      state.pointee.base = base
      return full
    case .record:
      return try Column.records(T.self, at: UnsafeRawPointer(state.pointee.base), count: count)
    case .string: return Column(strings: strings)
    case .bytes: return Column(byteArrays: byteArrays)
    case .boxed, .packedLists: return try Column.make(erasing: values)
    }
  }
}

/// Writes one value per row of an input frame into a new column: the output of a `map`, whose
/// rows are as many as its input's. A scalar goes straight to its row's slot, with no count or
/// capacity to check and update per row; other layouts go through an appender, in row order.
@usableFromInline
final class ColumnWriter<T> {
  /// Scalars: where the values of `scalars` go.
  @usableFromInline let base: UnsafeMutableRawPointer?
  @usableFromInline let others: ColumnAppender<T>?
  /// Scalars: the column written in place.
  private let scalars: Column?

  /// A writer of `count` values of `type`.
  @usableFromInline
  init(_ type: ColumnType, count: Int) {
    if case .scalar = type, let (column, base) = try? Column.unfilledScalars(type, count: count) {
      scalars = column
      self.base = base
      others = nil
    } else {
      scalars = nil
      base = nil
      others = ColumnAppender<T>(type, capacity: count)
    }
  }

  /// Sets row `i`, which must be below `count`; rows of other layouts must come in order.
  @inlinable @inline(__always)
  func set(_ i: Int, _ value: T) {
    if let base {
      base.storeBytes(of: value, toByteOffset: i &* MemoryLayout<T>.stride, as: T.self)
    } else {
      others.unsafelyUnwrapped.append(value)
    }
  }

  /// The column of the `count` values set. Call it once.
  @usableFromInline
  func finish() throws -> Column {
    if let scalars { return scalars }
    return try others.unsafelyUnwrapped.finish()
  }
}

/// The mutable state of a `ColumnAppender`'s scalar path.
@usableFromInline
struct AppendState {
  @usableFromInline var base: UnsafeMutableRawPointer
  @usableFromInline var capacity: Int
  @usableFromInline var count: Int

  @usableFromInline
  init(base: UnsafeMutableRawPointer, capacity: Int, count: Int) {
    self.base = base
    self.capacity = capacity
    self.count = count
  }
}
