import Frame
import SliceIO

/// A sharded, typed collection of rows with one column per type in `C`: the unit of a
/// bigslice job. Slices are immutable descriptions; a `Session` runs them.
///
/// The first `prefix` columns (default 1) form the key that `reduce`, `cogroup` and the
/// shuffles group and partition by.
public struct Slice<each C>: @unchecked Sendable {
  @usableFromInline let node: SliceNode

  @usableFromInline init(_ node: SliceNode) { self.node = node }

  /// The number of shards.
  public var shards: Int { node.shards }
  /// The column types and key prefix.
  public var schema: Schema { node.schema }
  /// `op@file:line` of the combinator that made this slice.
  public var name: String { node.name }
}

extension Slice {
  /// A slice computed from this one shard by shard, pipelined into the same task: `reader`
  /// gets the shard and this slice's reader of it. Every narrow combinator is one of these.
  func narrow<each O>(
    _ op: String, schema: Schema, problem: BigsliceError? = nil, file: StaticString, line: UInt,
    _ reader: @escaping @Sendable (_ shard: Int, _ input: any Reader) throws -> any Reader
  ) -> Slice<repeat each O> {
    Slice<repeat each O>(narrowNode(node, op, schema: schema, problem: problem, file: file, line: line, reader))
  }
}

/// The node of a narrow combinator over `input`, pipelined into the same task: `reader` gets
/// the shard and `input`'s reader of it.
func narrowNode(
  _ input: SliceNode, _ op: String, schema: Schema, problem: BigsliceError?, file: StaticString, line: UInt,
  _ reader: @escaping @Sendable (_ shard: Int, _ input: any Reader) throws -> any Reader
) -> SliceNode {
  SliceNode(
    op: op, location: location(file, line), schema: schema, shards: input.shards,
    deps: [Dependency(node: input, shuffle: false, partitioner: .hash)], problem: problem
  ) { shard, deps, _ in try reader(shard, deps[0]) }
}

extension Slice {
  /// The same slice, scheduled with `pragmas` combined (the largest `procs`, and any flag
  /// that one of them sets): `.exclusive` runs its tasks alone on the machine, `.procs(n)`
  /// reserves n threads for each, `.materialize` stores its output instead of pipelining it
  /// into the next operation.
  public func pragma(_ pragmas: Pragma...) -> Slice<repeat each C> {
    var combined = node.pragma
    for p in pragmas {
      combined = Pragma(
        exclusive: combined.exclusive || p.exclusive, procs: Swift.max(combined.procs, p.procs),
        materialize: combined.materialize || p.materialize)
    }
    return Slice(
      SliceNode(
        op: node.op, location: node.location, schema: node.schema, shards: node.shards, deps: node.deps,
        pragma: combined, combining: node.combining, problem: node.problem, reader: node.reader))
  }
}

/// The column types of a pack of Swift types, or the problem with the first that has none.
@usableFromInline
func columnTypes<each T>(_ types: repeat (each T).Type) -> ([ColumnType], BigsliceError?) {
  var out: [ColumnType] = []
  var problem: BigsliceError?
  for type in repeat each types {
    do {
      out.append(try Column.columnType(for: type))
    } catch {
      let name = "\(type)"
      let tuple =
        name.hasPrefix("(") && name.contains(",")
        ? " (a tuple as one column: a map returns at most four columns as a tuple from one to three, so return "
          + "a struct, or map in two steps)" : ""
      problem = problem ?? .unsupportedType("\(type): \(error)\(tuple)")
      out.append(.scalar(.uint8))
    }
  }
  return (out, problem)
}

/// One getter per column of `frame`, typed by the pack.
@inlinable
func getters<each T>(_ frame: Frame, _: repeat (each T).Type) -> (repeat ColumnGetter<each T>) {
  var k = -1
  func make<U>(_: U.Type) -> ColumnGetter<U> {
    k += 1
    return ColumnGetter<U>(frame.columns[k])
  }
  return (repeat make((each T).self))
}

/// The source location of a combinator call, for names and errors.
func location(_ file: StaticString, _ line: UInt) -> String {
  let path = "\(file)"
  return "\(path.split(separator: "/").last.map(String.init) ?? path):\(line)"
}

/// Lets methods be declared only for slices of a given shape (`where Self == Slice<K, V>`):
/// `reduce` exists on two-column slices only, a compile error on any other.
public protocol SliceProtocol {}

extension Slice: SliceProtocol {}
