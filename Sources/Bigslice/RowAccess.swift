import Frame

/// Reads values of one column as `T`, by row. Built once per column per frame; the layout
/// switch in `get` is a predictable branch, never a dynamic cast.
@usableFromInline
struct ColumnGetter<T> {
  @usableFromInline enum Layout { case scalar, string, bytes, boxed }
  @usableFromInline let layout: Layout
  @usableFromInline let column: Column
  @usableFromInline let base: UnsafeRawPointer?
  @usableFromInline let view: BytesView?
  @usableFromInline let boxed: ArraySlice<T>?

  @usableFromInline
  init(_ column: Column) {
    self.column = column
    switch column.type {
    case .scalar:
      layout = .scalar
      base = column.rawBase
      view = nil
      boxed = nil
    case .string:
      layout = .string
      base = nil
      view = column.variableWidth
      boxed = nil
    case .bytes:
      layout = .bytes
      base = nil
      view = column.variableWidth
      boxed = nil
    case .boxed:
      layout = .boxed
      base = nil
      view = nil
      boxed = column.boxedValues(T.self)
    }
  }

  @inlinable
  func get(_ i: Int) -> T {
    switch layout {
    case .scalar: return base!.load(fromByteOffset: i &* MemoryLayout<T>.stride, as: T.self)
    case .string: return unsafeBitCast(view!.string(at: i), to: T.self)
    case .bytes: return unsafeBitCast(view!.bytes(at: i), to: T.self)
    case .boxed: return boxed![boxed!.startIndex &+ i]
    }
  }
}

/// Collects values of type `T` into a new column.
@usableFromInline
final class ColumnAppender<T> {
  @usableFromInline let layout: ColumnGetter<T>.Layout
  @usableFromInline var scalars: UnsafeMutableRawPointer
  @usableFromInline var capacity: Int
  @usableFromInline var count = 0
  @usableFromInline var strings: [String] = []
  @usableFromInline var byteArrays: [[UInt8]] = []
  @usableFromInline var values: [T] = []
  let type: ColumnType

  @usableFromInline
  init(_ type: ColumnType, capacity: Int = 1024) {
    self.type = type
    switch type {
    case .scalar: layout = .scalar
    case .string: layout = .string
    case .bytes: layout = .bytes
    case .boxed: layout = .boxed
    }
    self.capacity = layout == .scalar ? max(capacity, 16) : 0
    scalars = .allocate(byteCount: self.capacity * MemoryLayout<T>.stride, alignment: 16)
  }

  deinit { scalars.deallocate() }

  @inlinable
  func append(_ value: T) {
    switch layout {
    case .scalar:
      if count == capacity { grow() }
      scalars.storeBytes(of: value, toByteOffset: count &* MemoryLayout<T>.stride, as: T.self)
    case .string: strings.append(unsafeBitCast(value, to: String.self))
    case .bytes: byteArrays.append(unsafeBitCast(value, to: [UInt8].self))
    case .boxed: values.append(value)
    }
    count &+= 1
  }

  @usableFromInline
  func grow() {
    let grown = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2 * MemoryLayout<T>.stride, alignment: 16)
    grown.copyMemory(from: scalars, byteCount: count * MemoryLayout<T>.stride)
    scalars.deallocate()
    scalars = grown
    capacity *= 2
  }

  /// The column of everything appended; the appender starts over empty.
  func finish() throws -> Column {
    defer {
      count = 0
      strings = []
      byteArrays = []
      values = []
    }
    switch layout {
    case .scalar:
      return try Column.copyScalars(type, from: UnsafeRawPointer(scalars), count: count)
    case .string: return Column(strings: strings)
    case .bytes: return Column(byteArrays: byteArrays)
    case .boxed: return try Column.make(erasing: values)
    }
  }
}
