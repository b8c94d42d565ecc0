import Frame
import SliceIO

extension Slice {
  /// A slice of `f` applied to every row. Pipelined with its input: no shuffle.
  public func map<each O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (repeat each C) throws -> (repeat each O)
  ) -> Slice<repeat each O> {
    let (types, problem) = columnTypes(repeat (each O).self)
    return narrow("map", schema: Schema(types), problem: problem, file: file, line: line) { _, input in
      TransformReader(input) { frame in
        let g = getters(frame, repeat (each C).self)
        let out = RowEmitter<repeat each O>(types: types, prefix: 1)
        for i in 0..<frame.count {
          let row = try f(repeat (each g).get(i))
          out.emit(repeat each row)
        }
        return try out.frame()
      }
    }
  }

  /// A one-column slice of `f` applied to every row.
  @_disfavoredOverload
  public func map<O>(
    file: StaticString = #fileID, line: UInt = #line, _ f: @escaping @Sendable (repeat each C) throws -> O
  ) -> Slice<O> {
    map(file: file, line: line) { (values: repeat each C) -> (O) in try f(repeat each values) }
  }
}
