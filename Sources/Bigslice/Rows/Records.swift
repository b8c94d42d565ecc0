import Frame

/// A user type stored as one column per field: see `Frame.ColumnRecord`. Named here too, so
/// that `import Bigslice` is all a job needs.
public typealias ColumnRecord = Frame::ColumnRecord

/// The fields of a `ColumnRecord`: see `Frame.RecordColumns`.
public typealias RecordColumns<Root> = Frame::RecordColumns<Root>

/// The registry of types stored boxed: see `Frame.BoxedOps`.
public typealias BoxedOps = Frame::BoxedOps
