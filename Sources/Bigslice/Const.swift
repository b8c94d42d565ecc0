import Frame
import SliceIO

/// A slice of in-memory columns, split evenly over `shards` shards (sizes differ by at most
/// one row). All columns must have the same length.
public func const<each C>(
  _ shards: Int, _ columns: repeat [each C], file: StaticString = #fileID, line: UInt = #line
) -> Slice<repeat each C> {
  let (types, typeProblem) = columnTypes(repeat (each C).self)
  var problem = typeProblem
  if shards < 1 { problem = problem ?? .invalidArgument("const needs at least 1 shard, got \(shards)") }
  var frame: Frame? = nil
  if problem == nil {
    do {
      var built: [Column] = []
      for values in repeat each columns { built.append(try Column.make(erasing: values)) }
      frame = try Frame(built)
    } catch {
      problem = .invalidArgument("const columns: \(error)")
    }
  }
  let n = frame?.count ?? 0
  let data = frame
  let node = SliceNode(
    op: "const", location: location(file, line), schema: Schema(types), shards: max(shards, 1), deps: [],
    problem: problem
  ) { shard, _, _ in
    guard let frame = data else { return FrameReader([]) }
    let start = shard * n / shards
    let end = (shard + 1) * n / shards
    return FrameReader(frame.slice(start..<end))
  }
  return Slice(node)
}

/// A slice whose shards are produced by `read`, called repeatedly with the shard, its state
/// (made by `initial(shard)`) and an emitter, until it returns false (end of shard). Each call
/// should emit a batch of rows; the rows emitted in one call form one frame.
public func readerFunc<S, each C>(
  _ shards: Int, initial: @escaping @Sendable (Int) throws -> S,
  file: StaticString = #fileID, line: UInt = #line,
  _ read: @escaping @Sendable (_ shard: Int, _ state: inout S, _ out: RowEmitter<repeat each C>) throws -> Bool
) -> Slice<repeat each C> {
  let (types, typeProblem) = columnTypes(repeat (each C).self)
  let problem = typeProblem ?? (shards < 1 ? .invalidArgument("readerFunc needs at least 1 shard, got \(shards)") : nil)
  let node = SliceNode(
    op: "reader", location: location(file, line), schema: Schema(types), shards: max(shards, 1), deps: [],
    problem: problem
  ) { shard, _, _ in
    var state = try initial(shard)
    let emitter = RowEmitter<repeat each C>(types: types, prefix: 1)
    var done = false
    return FunctionReader {
      while !done {
        done = try !read(shard, &state, emitter)
        if emitter.count > 0 { return try emitter.frame() }
      }
      return nil
    }
  }
  return Slice(node)
}

/// A reader made from a closure returning the next frame, or nil at the end.
final class FunctionReader: Reader {
  private let next: () throws -> Frame?
  private var ended = false

  init(_ next: @escaping () throws -> Frame?) { self.next = next }

  func read() throws -> Frame? {
    if ended { return nil }
    if let frame = try next() { return frame }
    ended = true
    return nil
  }
}

/// Reads `input` and transforms each non-empty frame.
final class TransformReader: Reader {
  private let input: any Reader
  private let transform: (Frame) throws -> Frame

  init(_ input: any Reader, _ transform: @escaping (Frame) throws -> Frame) {
    self.input = input
    self.transform = transform
  }

  func read() throws -> Frame? {
    while let frame = try input.read() {
      if frame.count == 0 { continue }
      let out = try transform(frame)
      if out.count > 0 { return out }
    }
    return nil
  }
}
