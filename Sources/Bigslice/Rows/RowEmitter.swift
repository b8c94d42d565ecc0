import Frame

/// Appends rows of a typed pack into new columns.
public final class RowEmitter<each T>: RowEmitterProtocol {
  @usableFromInline let appenders: (repeat ColumnAppender<each T>)
  @usableFromInline let types: [ColumnType]
  let prefix: Int
  /// Rows emitted since the last frame was taken.
  public var count: Int { emitted.pointee }
  /// Behind a pointer, so emitting a row mutates no class property (no exclusivity check).
  @usableFromInline let emitted = UnsafeMutablePointer<Int>.allocate(capacity: 1)

  deinit { emitted.deallocate() }

  @usableFromInline
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

  /// Emits one row: the variadic `emit`'s body, a method of the class so that it reaches the
  /// appenders through `self` with no lookup of the emitter's generic type.
  @usableFromInline
  func emitRow(_ values: repeat each T) {
    repeat (each appenders).append(each values)
    emitted.pointee &+= 1
  }

  @usableFromInline
  func frame() throws -> Frame {
    defer { emitted.pointee = 0 }
    var columns: [Column] = []
    for appender in repeat each appenders { columns.append(try appender.finish()) }
    return try Frame(columns, prefix: prefix)
  }
}

/// Lets `emit` have overloads for rows of one to four columns, beside the variadic form: Swift
/// runs a pack's elements through generic code (a value-witness call per value), while a
/// fixed number of type parameters is specialised where the caller's types are known.
public protocol RowEmitterProtocol: AnyObject {}

extension RowEmitterProtocol {
  /// Emits one row.
  @inlinable
  public func emit<each T>(_ values: repeat each T) where Self == RowEmitter<repeat each T> {
    (self as RowEmitter<repeat each T>).emitRow(repeat each values)
  }

  /// Emits one row of one column.
  @inlinable
  public func emit<A>(_ a: A) where Self == RowEmitter<A> {
    let out = self as RowEmitter<A>
    out.appenders.append(a)
    out.emitted.pointee &+= 1
  }

  /// Emits one row of two columns.
  @inlinable
  public func emit<A, B>(_ a: A, _ b: B) where Self == RowEmitter<A, B> {
    let out = self as RowEmitter<A, B>
    out.appenders.0.append(a)
    out.appenders.1.append(b)
    out.emitted.pointee &+= 1
  }

  /// Emits one row of three columns.
  @inlinable
  public func emit<A, B, C>(_ a: A, _ b: B, _ c: C) where Self == RowEmitter<A, B, C> {
    let out = self as RowEmitter<A, B, C>
    out.appenders.0.append(a)
    out.appenders.1.append(b)
    out.appenders.2.append(c)
    out.emitted.pointee &+= 1
  }

  /// Emits one row of four columns.
  @inlinable
  public func emit<A, B, C, D>(_ a: A, _ b: B, _ c: C, _ d: D) where Self == RowEmitter<A, B, C, D> {
    let out = self as RowEmitter<A, B, C, D>
    out.appenders.0.append(a)
    out.appenders.1.append(b)
    out.appenders.2.append(c)
    out.appenders.3.append(d)
    out.emitted.pointee &+= 1
  }
}
