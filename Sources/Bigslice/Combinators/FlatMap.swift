import Frame
import SliceIO

extension Slice {
  /// A slice of the rows `f` emits for every input row: zero, one or many each.
  public func flatMap<each O>(
    _: repeat (each O).Type, file: StaticString = #fileID, line: UInt = #line,
    _ f: @escaping @Sendable (RowEmitter<repeat each O>, repeat each C) throws -> Void
  ) -> Slice<repeat each O> {
    let (types, problem) = columnTypes(repeat (each O).self)
    return narrow("flatmap", schema: Schema(types), problem: problem, file: file, line: line) { _, input in
      TransformReader(input) { frame in
        let g = getters(frame, repeat (each C).self)
        let out = RowEmitter<repeat each O>(types: types, prefix: 1)
        for i in 0..<frame.count { try f(out, repeat (each g).get(i)) }
        return try out.frame()
      }
    }
  }
}
