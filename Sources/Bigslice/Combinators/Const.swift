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
