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
        var kept: [UInt32] = []
        kept.reserveCapacity(frame.count)
        for i in 0..<frame.count where try keep(repeat (each g).get(i)) { kept.append(UInt32(i)) }
        return kept.count == frame.count ? frame : frame.gather(kept)
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
        var kept: [UInt32] = []
        kept.reserveCapacity(frame.count)
        var i: UInt32 = 0
        try forEachRow(frame) { (a: A) in
          if try keep(a) { kept.append(i) }
          i &+= 1
        }
        return kept.count == frame.count ? frame : frame.gather(kept)
      })
  }

  /// `filter` of a slice of two columns, specialised for their types.
  @inlinable
  public func filter<A, B>(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (A, B) throws -> Bool
  ) -> Slice<A, B> where Self == Slice<A, B> {
    Slice<A, B>(
      rowwiseNode(self.node, "filter", schema: self.schema, problem: nil, file: file, line: line) { frame in
        var kept: [UInt32] = []
        kept.reserveCapacity(frame.count)
        var i: UInt32 = 0
        try forEachRow(frame) { (a: A, b: B) in
          if try keep(a, b) { kept.append(i) }
          i &+= 1
        }
        return kept.count == frame.count ? frame : frame.gather(kept)
      })
  }

  /// `filter` of a slice of three columns, specialised for their types.
  @inlinable
  public func filter<A, B, C>(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (A, B, C) throws -> Bool
  ) -> Slice<A, B, C> where Self == Slice<A, B, C> {
    Slice<A, B, C>(
      rowwiseNode(self.node, "filter", schema: self.schema, problem: nil, file: file, line: line) { frame in
        var kept: [UInt32] = []
        kept.reserveCapacity(frame.count)
        var i: UInt32 = 0
        try forEachRow(frame) { (a: A, b: B, c: C) in
          if try keep(a, b, c) { kept.append(i) }
          i &+= 1
        }
        return kept.count == frame.count ? frame : frame.gather(kept)
      })
  }
}
