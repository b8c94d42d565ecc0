import Frame

/// A pull-based stream of frames: the whole data plane.
///
/// `read()` returns the next frame, or nil once the stream has ended; after nil it keeps
/// returning nil. A frame may have any number of rows, zero included. Errors are thrown, and a
/// reader that threw is not read again.
///
/// Readers compose: an operator is a reader that reads other readers. Frames pass between
/// them without copying, since columns share immutable storage.
public protocol Reader: AnyObject {
  func read() throws -> Frame?
}

/// Reads frames held in memory.
public final class FrameReader: Reader {
  private var frames: [Frame]
  private var next = 0

  public init(_ frames: [Frame]) { self.frames = frames }

  /// Reads `frame` cut into frames of at most `rows` rows.
  public convenience init(_ frame: Frame, rows: Int = Frame.defaultRows) {
    let step = max(1, rows)
    self.init(stride(from: 0, to: frame.count, by: step).map { frame.slice($0..<min($0 + step, frame.count)) })
  }

  public func read() throws -> Frame? {
    guard next < frames.count else { return nil }
    defer {
      frames[next] = frames[next].slice(0..<0)
      next += 1
    }
    return frames[next]
  }
}

/// Reads each reader to its end, in order.
public final class ConcatReader: Reader {
  private var readers: [any Reader]
  private var current = 0

  public init(_ readers: [any Reader]) { self.readers = readers }

  public func read() throws -> Frame? {
    while current < readers.count {
      if let frame = try readers[current].read() { return frame }
      current += 1
    }
    return nil
  }
}

/// Reads everything from `reader`.
public func readAll(_ reader: any Reader) throws -> [Frame] {
  var frames: [Frame] = []
  while let frame = try reader.read() { frames.append(frame) }
  return frames
}

/// Reads everything from `reader` into one frame, or nil if it held no frame.
public func readFrame(_ reader: any Reader) throws -> Frame? {
  let frames = try readAll(reader)
  if frames.isEmpty { return nil }
  do { return try Frame.concat(frames) } catch let error as FrameError { throw SliceIOError.frame(error) }
}

/// A reader made from a closure returning the next frame, or nil at the end.
public final class FunctionReader: Reader {
  private let next: () throws -> Frame?
  private var ended = false

  public init(_ next: @escaping () throws -> Frame?) { self.next = next }

  public func read() throws -> Frame? {
    if ended { return nil }
    if let frame = try next() { return frame }
    ended = true
    return nil
  }
}

/// Reads `input` and transforms each non-empty frame.
public final class TransformReader: Reader {
  private let input: any Reader
  private let transform: (Frame) throws -> Frame

  public init(_ input: any Reader, _ transform: @escaping (Frame) throws -> Frame) {
    self.input = input
    self.transform = transform
  }

  public func read() throws -> Frame? {
    while let frame = try input.read() {
      if frame.count == 0 { continue }
      let out = try transform(frame)
      if out.count > 0 { return out }
    }
    return nil
  }
}
