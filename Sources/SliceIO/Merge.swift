import Frame

/// A k-way merge of readers that are each sorted by `order`, into one sorted stream.
///
/// A binary heap holds the sources by their current row. Rows are compared by their u64
/// sort prefixes (computed once per frame, column-at-a-time) and only on equal prefixes by the
/// full key. Ties between sources go to the earlier source, so the merge is stable. Output
/// frames are built column-at-a-time from the picked (frame, row) pairs.
public final class MergeReader: Reader {
  private struct Cursor {
    var frame: Frame
    var prefixes: [UInt64]
    var row = 0
    var chunk = -1
  }

  private let order: SortOrder
  private var readers: [any Reader]
  private var cursors: [Cursor?]
  private var heap: [Int] = []
  private var exact = true
  private var started = false
  private let batchRows: Int

  /// Merges `readers`, each sorted by `order`, into frames of about `batchRows` rows.
  public init(_ readers: [any Reader], order: SortOrder, batchRows: Int = Frame.defaultRows) {
    self.readers = readers
    self.order = order
    self.batchRows = max(1, batchRows)
    cursors = Array(repeating: nil, count: readers.count)
  }

  public func read() throws -> Frame? {
    if !started {
      started = true
      for i in readers.indices where try advance(i) { heap.append(i) }
      for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(i) }
    }
    guard !heap.isEmpty else { return nil }
    var chunks: [Frame] = []
    var chunkIndices: [UInt32] = []
    var rows: [UInt32] = []
    chunkIndices.reserveCapacity(batchRows)
    rows.reserveCapacity(batchRows)
    for i in cursors.indices { cursors[i]?.chunk = -1 }
    while rows.count < batchRows, let top = heap.first {
      var cursor = cursors[top]!
      if cursor.chunk < 0 {
        cursor.chunk = chunks.count
        chunks.append(cursor.frame)
      }
      chunkIndices.append(UInt32(cursor.chunk))
      rows.append(UInt32(cursor.row))
      cursor.row += 1
      cursors[top] = cursor
      if cursor.row == cursor.frame.count {
        if try !advance(top) {
          heap.swapAt(0, heap.count - 1)
          heap.removeLast()
        }
      }
      if !heap.isEmpty { siftDown(0) }
    }
    do {
      return try Frame.interleave(chunks, chunkIndices: chunkIndices, rows: rows)
    } catch let error as FrameError {
      throw SliceIOError.frame(error)
    }
  }

  /// Loads source `i`'s next non-empty frame; false when it has ended.
  private func advance(_ i: Int) throws -> Bool {
    while let frame = try readers[i].read() {
      guard frame.count > 0 else { continue }
      let prefixes: SortPrefixes
      do { prefixes = try frame.sortPrefixes(order) } catch let error as FrameError { throw SliceIOError.frame(error) }
      exact = exact && prefixes.exact
      cursors[i] = Cursor(frame: frame, prefixes: prefixes.values)
      return true
    }
    cursors[i] = nil
    return false
  }

  private func less(_ a: Int, _ b: Int) -> Bool {
    let x = cursors[a]!
    let y = cursors[b]!
    let px = x.prefixes[x.row]
    let py = y.prefixes[y.row]
    if px != py { return px < py }
    if !exact {
      let c = x.frame.compareKeys(x.row, y.frame, y.row)
      if c != 0 { return c < 0 }
    }
    return a < b
  }

  private func siftDown(_ start: Int) {
    var i = start
    let n = heap.count
    while true {
      let l = 2 * i + 1
      if l >= n { return }
      var m = l
      if l + 1 < n && less(heap[l + 1], heap[l]) { m = l + 1 }
      if !less(heap[m], heap[i]) { return }
      heap.swapAt(i, m)
      i = m
    }
  }
}
