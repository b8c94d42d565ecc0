import Bigmachine
import Frame

/// Reads the rows of a result as typed tuples, from synchronous code:
/// `while let (k, v) = try reader.next() { … }`.
///
/// `next` is inlinable, so the caller's compiler specialises it for the concrete column
/// types: the per-row path then reads each column directly, with no generic metadata lookup.
public struct RowReader<each C> {
  @usableFromInline let feed: ResultFeed
  @usableFromInline var cursor: FrameCursor<repeat each C>?

  init(_ feed: ResultFeed) { self.feed = feed }

  /// The next row, or nil after the last.
  /// - Throws: what computing a discarded or lost shard again throws, or a read error that
  ///   persists.
  @inlinable
  public mutating func next() throws -> (repeat each C)? {
    while true {
      if let value = cursor?.next() { return value }
      // The feed hands out no empty frames.
      guard let frame = try feed.next() else { return nil }
      cursor = FrameCursor(frame)
    }
  }
}

/// The rows of a result read into memory (`SliceResult.rows()`), as typed tuples.
public struct ResultRows<each C>: Sequence, @unchecked Sendable {
  @usableFromInline let frames: [Frame]

  init(_ frames: [Frame]) { self.frames = frames.filter { $0.count > 0 } }

  /// The number of rows.
  public var count: Int { frames.reduce(0) { $0 + $1.count } }
  public var underestimatedCount: Int { count }

  public func makeIterator() -> Iterator { Iterator(frames: frames) }

  /// Iterates the rows, frame by frame.
  public struct Iterator: IteratorProtocol {
    @usableFromInline let frames: [Frame]
    @usableFromInline var index = 0
    @usableFromInline var cursor: FrameCursor<repeat each C>?

    @usableFromInline init(frames: [Frame]) { self.frames = frames }

    @inlinable
    public mutating func next() -> (repeat each C)? {
      while true {
        if let value = cursor?.next() { return value }
        guard index < frames.count else { return nil }
        cursor = FrameCursor(frames[index])
        index &+= 1
      }
    }
  }
}

/// The rows of one frame, read in order through typed getters (which point into the frame,
/// kept alive here).
public struct FrameCursor<each C> {
  @usableFromInline let frame: Frame
  @usableFromInline let getters: Getters<repeat each C>
  @usableFromInline var row = 0

  @usableFromInline init(_ frame: Frame) {
    self.frame = frame
    getters = Getters<repeat each C>(frame)
  }

  /// The next row of the frame, or nil after its last.
  @inlinable
  public mutating func next() -> (repeat each C)? {
    guard row < frame.count else { return nil }
    let g = getters.getters
    let value = (repeat (each g).get(row))
    row &+= 1
    return value
  }
}

/// The typed getters of one frame, boxed so an iterator can hold them optionally.
@usableFromInline
final class Getters<each C> {
  @usableFromInline let getters: (repeat ColumnGetter<each C>)
  @usableFromInline init(_ frame: Frame) { getters = Bigslice.getters(frame, repeat (each C).self) }
}

extension SliceResult: AsyncSequence {
  /// Iterates the rows from async code with `makeAsyncIterator()` and `await next()`
  /// (`for await` over a pack-typed element does not compile on Swift 6.3). Errors in
  /// computing a discarded or lost shard again are thrown.
  public struct AsyncIterator: AsyncIteratorProtocol {
    var result: SliceResult<repeat each C>
    var feed: ResultFeed?
    var frame: Frame?
    var getters: Getters<repeat each C>?
    var row = 0

    /// The next row; the first call computes a discarded result again.
    /// - Throws: what computing it throws.
    public mutating func next() async throws -> (repeat each C)? {
      if feed == nil {
        try await result.reload()
        feed = ResultFeed(tasks: result.tasks, result: result.reload, logger: result.logger)
      }
      if frame == nil || row == frame!.count {
        let feed = UncheckedBox(self.feed!)
        frame = try await withCheckedThrowingContinuation { continuation in
          ThreadPool.detach {
            do {
              continuation.resume(returning: UncheckedBox(try feed.value.next()))
            } catch {
              continuation.resume(throwing: error)
            }
          }
        }.value
        row = 0
        guard let frame else { return nil }
        getters = Getters<repeat each C>(frame)
      }
      let g = getters!.getters
      let value = (repeat (each g).get(row))
      row += 1
      return value
    }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(result: self) }
}
