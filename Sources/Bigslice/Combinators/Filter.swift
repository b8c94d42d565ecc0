import Frame
import SliceIO

extension SliceProtocol {
  /// The rows for which `keep` is true. Rows are selected column-at-a-time (one gather per
  /// frame), and the key prefix is kept. The overloads below, for one to three columns, run
  /// the same loop specialised for the columns' types.
  public func filter<each C>(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (repeat each C) throws -> Bool
  ) -> Slice<repeat each C> where Self == Slice<repeat each C> {
    Slice<repeat each C>(
      rowwiseNode(self.node, "filter", schema: self.schema, problem: nil, file: file, line: line) { frame in
        let g = getters(frame, repeat (each C).self)
        let kept = RowSelection(capacity: frame.count)
        var n = 0
        for i in 0..<frame.count {
          kept.rows[n] = UInt32(i)
          n &+= try keep(repeat (each g).get(i)) ? 1 : 0
        }
        return kept.select(frame, count: n)
      })
  }
}

extension SliceProtocol {
  /// `filter` of a slice of one column, specialised for their types.
  @inlinable
  public func filter<A>(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (A) throws -> Bool
  ) -> Slice<A> where Self == Slice<A> {
    Slice<A>(
      rowwiseNode(self.node, "filter", schema: self.schema, problem: nil, file: file, line: line) { frame in
        let kept = RowSelection(capacity: frame.count)
        var i: UInt32 = 0
        var n = 0
        try forEachRow(frame) { (a: A) in
          // Every row is written, and counted only when kept: no branch on the outcome.
          kept.rows[n] = i
          n &+= try keep(a) ? 1 : 0
          i &+= 1
        }
        return kept.select(frame, count: n)
      })
  }

  /// `filter` of a slice of two columns, specialised for their types.
  @inlinable
  public func filter<A, B>(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (A, B) throws -> Bool
  ) -> Slice<A, B> where Self == Slice<A, B> {
    Slice<A, B>(
      rowwiseNode(self.node, "filter", schema: self.schema, problem: nil, file: file, line: line) { frame in
        let kept = RowSelection(capacity: frame.count)
        var i: UInt32 = 0
        var n = 0
        try forEachRow(frame) { (a: A, b: B) in
          // Every row is written, and counted only when kept: no branch on the outcome.
          kept.rows[n] = i
          n &+= try keep(a, b) ? 1 : 0
          i &+= 1
        }
        return kept.select(frame, count: n)
      })
  }

  /// `filter` of a slice of three columns, specialised for their types.
  @inlinable
  public func filter<A, B, C>(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (A, B, C) throws -> Bool
  ) -> Slice<A, B, C> where Self == Slice<A, B, C> {
    Slice<A, B, C>(
      rowwiseNode(self.node, "filter", schema: self.schema, problem: nil, file: file, line: line) { frame in
        let kept = RowSelection(capacity: frame.count)
        var i: UInt32 = 0
        var n = 0
        try forEachRow(frame) { (a: A, b: B, c: C) in
          // Every row is written, and counted only when kept: no branch on the outcome.
          kept.rows[n] = i
          n &+= try keep(a, b, c) ? 1 : 0
          i &+= 1
        }
        return kept.select(frame, count: n)
      })
  }
}

/// The rows of a frame that a filter keeps, as their indices: a buffer of one entry per row,
/// behind a constant pointer so that filling it in a loop mutates no class property.
@usableFromInline
final class RowSelection {
  @usableFromInline let rows: UnsafeMutablePointer<UInt32>

  @usableFromInline
  init(capacity: Int) { rows = .allocate(capacity: Swift.max(capacity, 1)) }

  deinit { rows.deallocate() }

  /// The first `count` rows selected from `frame` (the frame itself when all are).
  @usableFromInline
  func select(_ frame: Frame, count: Int) -> Frame {
    count == frame.count ? frame : frame.gather(UnsafeBufferPointer(start: rows, count: count))
  }
}
