import Frame

/// A batch of typed rows, as a writer or scanner sees it.
public struct RowBatch<each C> {
  private let getters: Getters<repeat each C>?
  /// The rows in the batch.
  public let count: Int
  /// The batch as a frame.
  public let frame: Frame

  init(_ frame: Frame) {
    self.frame = frame
    count = frame.count
    getters = frame.count > 0 ? Getters<repeat each C>(frame) : nil
  }

  /// Row `i` as a tuple.
  public subscript(i: Int) -> (repeat each C) {
    precondition(i >= 0 && i < count, "row \(i) out of 0..<\(count)")
    let g = getters!.getters
    return (repeat (each g).get(i))
  }
}
