import Frame
import SliceIO

extension SliceProtocol {
  /// A slice of `f` applied to every row. Pipelined with its input: no shuffle. The overloads
  /// below, for one to three columns in and out, run the same loop specialised for the
  /// columns' types; this form serves any other shape, through generic code.
  public func map<each C, each O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (repeat each C) throws -> (repeat each O)
  ) -> Slice<repeat each O> where Self == Slice<repeat each C> {
    let (types, problem) = columnTypes(repeat (each O).self)
    return Slice<repeat each O>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let g = getters(frame, repeat (each C).self)
        let out = RowEmitter<repeat each O>(types: types, prefix: 1)
        for i in 0..<frame.count {
          let row = try f(repeat (each g).get(i))
          out.emit(repeat each row)
        }
        return try out.frame()
      })
  }

  /// A one-column slice of `f` applied to every row.
  @_disfavoredOverload
  public func map<each C, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (repeat each C) throws -> O
  ) -> Slice<O> where Self == Slice<repeat each C> {
    map(file: file, line: line) { (values: repeat each C) -> (O) in try f(repeat each values) }
  }
}

extension SliceProtocol {
  /// `map` of a slice of one column to one column, specialised for their types.
  @inlinable
  public func map<A, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A) throws -> O
  ) -> Slice<O> where Self == Slice<A> {
    let (types, problem) = columnTypes(O.self)
    return Slice<O>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O>(types[0], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A) in
          w0.set(i, try f(a))
          i &+= 1
        }
        return try Frame([w0.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of one column to two columns, specialised for their types.
  @inlinable
  public func map<A, O1, O2>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A) throws -> (O1, O2)
  ) -> Slice<O1, O2> where Self == Slice<A> {
    let (types, problem) = columnTypes(O1.self, O2.self)
    return Slice<O1, O2>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A) in
          let (v0, v1) = try f(a)
          w0.set(i, v0)
          w1.set(i, v1)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of one column to three columns, specialised for their types.
  @inlinable
  public func map<A, O1, O2, O3>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A) throws -> (O1, O2, O3)
  ) -> Slice<O1, O2, O3> where Self == Slice<A> {
    let (types, problem) = columnTypes(O1.self, O2.self, O3.self)
    return Slice<O1, O2, O3>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        let w2 = ColumnWriter<O3>(types[2], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A) in
          let (v0, v1, v2) = try f(a)
          w0.set(i, v0)
          w1.set(i, v1)
          w2.set(i, v2)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish(), w2.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of one column to four columns, specialised for their types.
  @inlinable
  public func map<A, O1, O2, O3, O4>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A) throws -> (O1, O2, O3, O4)
  ) -> Slice<O1, O2, O3, O4> where Self == Slice<A> {
    let (types, problem) = columnTypes(O1.self, O2.self, O3.self, O4.self)
    return Slice<O1, O2, O3, O4>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        let w2 = ColumnWriter<O3>(types[2], count: frame.count)
        let w3 = ColumnWriter<O4>(types[3], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A) in
          let (v0, v1, v2, v3) = try f(a)
          w0.set(i, v0)
          w1.set(i, v1)
          w2.set(i, v2)
          w3.set(i, v3)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish(), w2.finish(), w3.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of two columns to one column, specialised for their types.
  @inlinable
  public func map<A, B, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B) throws -> O
  ) -> Slice<O> where Self == Slice<A, B> {
    let (types, problem) = columnTypes(O.self)
    return Slice<O>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O>(types[0], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B) in
          w0.set(i, try f(a, b))
          i &+= 1
        }
        return try Frame([w0.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of two columns to two columns, specialised for their types.
  @inlinable
  public func map<A, B, O1, O2>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B) throws -> (O1, O2)
  ) -> Slice<O1, O2> where Self == Slice<A, B> {
    let (types, problem) = columnTypes(O1.self, O2.self)
    return Slice<O1, O2>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B) in
          let (v0, v1) = try f(a, b)
          w0.set(i, v0)
          w1.set(i, v1)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of two columns to three columns, specialised for their types.
  @inlinable
  public func map<A, B, O1, O2, O3>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B) throws -> (O1, O2, O3)
  ) -> Slice<O1, O2, O3> where Self == Slice<A, B> {
    let (types, problem) = columnTypes(O1.self, O2.self, O3.self)
    return Slice<O1, O2, O3>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        let w2 = ColumnWriter<O3>(types[2], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B) in
          let (v0, v1, v2) = try f(a, b)
          w0.set(i, v0)
          w1.set(i, v1)
          w2.set(i, v2)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish(), w2.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of two columns to four columns, specialised for their types.
  @inlinable
  public func map<A, B, O1, O2, O3, O4>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B) throws -> (O1, O2, O3, O4)
  ) -> Slice<O1, O2, O3, O4> where Self == Slice<A, B> {
    let (types, problem) = columnTypes(O1.self, O2.self, O3.self, O4.self)
    return Slice<O1, O2, O3, O4>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        let w2 = ColumnWriter<O3>(types[2], count: frame.count)
        let w3 = ColumnWriter<O4>(types[3], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B) in
          let (v0, v1, v2, v3) = try f(a, b)
          w0.set(i, v0)
          w1.set(i, v1)
          w2.set(i, v2)
          w3.set(i, v3)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish(), w2.finish(), w3.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of three columns to one column, specialised for their types.
  @inlinable
  public func map<A, B, C, O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B, C) throws -> O
  ) -> Slice<O> where Self == Slice<A, B, C> {
    let (types, problem) = columnTypes(O.self)
    return Slice<O>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O>(types[0], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B, c: C) in
          w0.set(i, try f(a, b, c))
          i &+= 1
        }
        return try Frame([w0.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of three columns to two columns, specialised for their types.
  @inlinable
  public func map<A, B, C, O1, O2>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B, C) throws -> (O1, O2)
  ) -> Slice<O1, O2> where Self == Slice<A, B, C> {
    let (types, problem) = columnTypes(O1.self, O2.self)
    return Slice<O1, O2>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B, c: C) in
          let (v0, v1) = try f(a, b, c)
          w0.set(i, v0)
          w1.set(i, v1)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of three columns to three columns, specialised for their types.
  @inlinable
  public func map<A, B, C, O1, O2, O3>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B, C) throws -> (O1, O2, O3)
  ) -> Slice<O1, O2, O3> where Self == Slice<A, B, C> {
    let (types, problem) = columnTypes(O1.self, O2.self, O3.self)
    return Slice<O1, O2, O3>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        let w2 = ColumnWriter<O3>(types[2], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B, c: C) in
          let (v0, v1, v2) = try f(a, b, c)
          w0.set(i, v0)
          w1.set(i, v1)
          w2.set(i, v2)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish(), w2.finish()], prefix: 1)
      })
  }

  /// `map` of a slice of three columns to four columns, specialised for their types.
  @inlinable
  public func map<A, B, C, O1, O2, O3, O4>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (A, B, C) throws -> (O1, O2, O3, O4)
  ) -> Slice<O1, O2, O3, O4> where Self == Slice<A, B, C> {
    let (types, problem) = columnTypes(O1.self, O2.self, O3.self, O4.self)
    return Slice<O1, O2, O3, O4>(
      rowwiseNode(self.node, "map", schema: Schema(types), problem: problem, file: file, line: line) { frame in
        let w0 = ColumnWriter<O1>(types[0], count: frame.count)
        let w1 = ColumnWriter<O2>(types[1], count: frame.count)
        let w2 = ColumnWriter<O3>(types[2], count: frame.count)
        let w3 = ColumnWriter<O4>(types[3], count: frame.count)
        var i = 0
        try forEachRow(frame) { (a: A, b: B, c: C) in
          let (v0, v1, v2, v3) = try f(a, b, c)
          w0.set(i, v0)
          w1.set(i, v1)
          w2.set(i, v2)
          w3.set(i, v3)
          i &+= 1
        }
        return try Frame([w0.finish(), w1.finish(), w2.finish(), w3.finish()], prefix: 1)
      })
  }
}
