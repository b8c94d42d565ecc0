import Frame
import SliceIO

// The row loops of the typed combinators (`map`, `filter`, `flatMap` over one to three
// columns). They are inlinable so that each loop is compiled where the user's column types
// are known: a value is then a load from its column, not a generic call.

/// Calls `body` with each row of a one-column frame.
@inlinable
func forEachRow<A>(_ frame: Frame, _ body: (A) throws -> Void) rethrows {
  let a = ColumnGetter<A>(frame.columns[0])
  try withExtendedLifetime(frame) {
    for i in 0..<frame.count { try body(a.get(i)) }
  }
}

/// Calls `body` with each row of a two-column frame.
@inlinable
func forEachRow<A, B>(_ frame: Frame, _ body: (A, B) throws -> Void) rethrows {
  let a = ColumnGetter<A>(frame.columns[0])
  let b = ColumnGetter<B>(frame.columns[1])
  try withExtendedLifetime(frame) {
    for i in 0..<frame.count { try body(a.get(i), b.get(i)) }
  }
}

/// Calls `body` with each row of a three-column frame.
@inlinable
func forEachRow<A, B, C>(_ frame: Frame, _ body: (A, B, C) throws -> Void) rethrows {
  let a = ColumnGetter<A>(frame.columns[0])
  let b = ColumnGetter<B>(frame.columns[1])
  let c = ColumnGetter<C>(frame.columns[2])
  try withExtendedLifetime(frame) {
    for i in 0..<frame.count { try body(a.get(i), b.get(i), c.get(i)) }
  }
}

/// The node of a narrow combinator that turns each frame of `input` into one frame with
/// `transform`, pipelined into the same task.
@usableFromInline
func rowwiseNode(
  _ input: SliceNode, _ op: String, schema: Schema, problem: BigsliceError?, file: StaticString, line: UInt,
  _ transform: @escaping @Sendable (Frame) throws -> Frame
) -> SliceNode {
  narrowNode(input, op, schema: schema, problem: problem, file: file, line: line) { _, input in
    TransformReader(input, transform)
  }
}
