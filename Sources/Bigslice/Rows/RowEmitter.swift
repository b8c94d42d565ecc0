import Frame

/// Appends rows of a typed pack into new columns.
public final class RowEmitter<each T> {
  @usableFromInline let appenders: (repeat ColumnAppender<each T>)
  @usableFromInline let types: [ColumnType]
  let prefix: Int
  /// Rows emitted since the last frame was taken.
  public var count: Int { emitted.pointee }
  /// Behind a pointer, so emitting a row mutates no class property (no exclusivity check).
  @usableFromInline let emitted = UnsafeMutablePointer<Int>.allocate(capacity: 1)

  deinit { emitted.deallocate() }

  init(types: [ColumnType], prefix: Int) {
    emitted.initialize(to: 0)
    self.types = types
    self.prefix = prefix
    var k = -1
    func make<U>(_: U.Type) -> ColumnAppender<U> {
      k += 1
      return ColumnAppender<U>(types[k])
    }
    appenders = (repeat make((each T).self))
  }

  /// Emits one row.
  @inlinable
  public func emit(_ values: repeat each T) {
    repeat (each appenders).append(each values)
    emitted.pointee &+= 1
  }

  func frame() throws -> Frame {
    defer { emitted.pointee = 0 }
    var columns: [Column] = []
    for appender in repeat each appenders { columns.append(try appender.finish()) }
    return try Frame(columns, prefix: prefix)
  }
}
