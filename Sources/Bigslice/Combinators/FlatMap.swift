import Frame
import SliceIO

extension SliceProtocol {
  /// A slice of the rows `f` emits for every input row: zero, one or many each. The overloads
  /// below, for one to three columns in and one or two out, run the same loop specialised for
  /// the columns' types and need no type tokens.
  public func flatMap<each C, each O>(
    _: repeat (each O).Type, file: StaticString = #fileID, line: UInt = #line,
    _ f: @escaping @Sendable (RowEmitter<repeat each O>, repeat each C) throws -> Void
  ) -> Slice<repeat each O> where Self == Slice<repeat each C> {
    let (types, problem) = columnTypes(repeat (each O).self)
    return Slice<repeat each O>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let g = getters(frame, repeat (each C).self)
        let out = RowEmitter<repeat each O>(types: types, prefix: 1)
        for i in 0..<frame.count { try f(out, repeat (each g).get(i)) }
        return try out.frame()
      })
  }
}

extension SliceProtocol {
  /// `flatMap` of a slice of one column to one column, specialised for their types; the output
  /// types come from the emitter's, so no type token is needed.
  @inlinable
  public func flatMap<A, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (RowEmitter<O>, A) throws -> Void
  ) -> Slice<O> where Self == Slice<A> {
    let (types, problem) = columnTypes(O.self)
    return Slice<O>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let out = RowEmitter<O>(types: types, prefix: 1)
        try forEachRow(frame) { (a: A) in try f(out, a) }
        return try out.frame()
      })
  }

  /// `flatMap` of a slice of one column to two columns, specialised for their types; the output
  /// types come from the emitter's, so no type token is needed.
  @inlinable
  public func flatMap<A, O1, O2>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (RowEmitter<O1, O2>, A) throws -> Void
  ) -> Slice<O1, O2> where Self == Slice<A> {
    let (types, problem) = columnTypes(O1.self, O2.self)
    return Slice<O1, O2>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let out = RowEmitter<O1, O2>(types: types, prefix: 1)
        try forEachRow(frame) { (a: A) in try f(out, a) }
        return try out.frame()
      })
  }

  /// `flatMap` of a slice of two columns to one column, specialised for their types; the output
  /// types come from the emitter's, so no type token is needed.
  @inlinable
  public func flatMap<A, B, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (RowEmitter<O>, A, B) throws -> Void
  ) -> Slice<O> where Self == Slice<A, B> {
    let (types, problem) = columnTypes(O.self)
    return Slice<O>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let out = RowEmitter<O>(types: types, prefix: 1)
        try forEachRow(frame) { (a: A, b: B) in try f(out, a, b) }
        return try out.frame()
      })
  }

  /// `flatMap` of a slice of two columns to two columns, specialised for their types; the output
  /// types come from the emitter's, so no type token is needed.
  @inlinable
  public func flatMap<A, B, O1, O2>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (RowEmitter<O1, O2>, A, B) throws -> Void
  ) -> Slice<O1, O2> where Self == Slice<A, B> {
    let (types, problem) = columnTypes(O1.self, O2.self)
    return Slice<O1, O2>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let out = RowEmitter<O1, O2>(types: types, prefix: 1)
        try forEachRow(frame) { (a: A, b: B) in try f(out, a, b) }
        return try out.frame()
      })
  }

  /// `flatMap` of a slice of three columns to one column, specialised for their types; the output
  /// types come from the emitter's, so no type token is needed.
  @inlinable
  public func flatMap<A, B, C, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (RowEmitter<O>, A, B, C) throws -> Void
  ) -> Slice<O> where Self == Slice<A, B, C> {
    let (types, problem) = columnTypes(O.self)
    return Slice<O>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let out = RowEmitter<O>(types: types, prefix: 1)
        try forEachRow(frame) { (a: A, b: B, c: C) in try f(out, a, b, c) }
        return try out.frame()
      })
  }

  /// `flatMap` of a slice of three columns to two columns, specialised for their types; the output
  /// types come from the emitter's, so no type token is needed.
  @inlinable
  public func flatMap<A, B, C, O1, O2>(
    file: StaticString = #fileID, line: UInt = #line,
    _ f: @escaping @Sendable (RowEmitter<O1, O2>, A, B, C) throws -> Void
  ) -> Slice<O1, O2> where Self == Slice<A, B, C> {
    let (types, problem) = columnTypes(O1.self, O2.self)
    return Slice<O1, O2>(
      rowwiseNode(self.node, "flatmap", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let out = RowEmitter<O1, O2>(types: types, prefix: 1)
        try forEachRow(frame) { (a: A, b: B, c: C) in try f(out, a, b, c) }
        return try out.frame()
      })
  }
}
