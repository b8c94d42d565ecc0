import SliceIO

extension Slice {
  /// The rows for which `keep` is true. Rows are selected column-at-a-time (one gather per
  /// frame), and the key prefix is kept.
  public func filter(
    file: StaticString = #fileID, line: UInt = #line, _ keep: @escaping @Sendable (repeat each C) throws -> Bool
  ) -> Slice<repeat each C> {
    narrow("filter", schema: schema, file: file, line: line) { _, input in
      TransformReader(input) { frame in
        let g = getters(frame, repeat (each C).self)
        var kept: [UInt32] = []
        kept.reserveCapacity(frame.count)
        for i in 0..<frame.count where try keep(repeat (each g).get(i)) { kept.append(UInt32(i)) }
        return kept.count == frame.count ? frame : frame.gather(kept)
      }
    }
  }
}
