import CSupport

/// Rows put in group order: given each row's group id (dense, below `groups`), where each
/// group starts and the rows or values in group order, stable within a group. A counting sort
/// in C, one pass over the ids.
public enum Grouping {
  /// The rows of each group: group `g` is `permutation[starts[g] ..< starts[g + 1]]`, in row
  /// order. `starts` has `groups + 1` entries.
  /// - Throws: `FrameError.invalidArgument` when an id is `groups` or more, or there are 2³²
  ///   rows or more.
  public static func order(groupIDs: [UInt32], groups: Int) throws -> (permutation: [UInt32], starts: [UInt64]) {
    try check(groupIDs.count, groups: groups)
    if groups == 0 { return ([], [0]) }
    var starts = [UInt64](repeating: 0, count: groups + 1)
    var permutation = [UInt32](repeating: 0, count: groupIDs.count)
    try groupIDs.withUnsafeBufferPointer { ids in
      try starts.withUnsafeMutableBufferPointer { s in
        try permutation.withUnsafeMutableBufferPointer { try order(ids, groups: groups, into: $0, starts: s) }
      }
    }
    return (permutation, starts)
  }

  /// `order(groupIDs:groups:)` with both arrays in working memory that lives only for `body`
  /// (`Memory.withScratch`): a task that cuts a few rows many ways leaves no heap hole of
  /// `groups` starts behind. `groups` must be at least 1.
  /// - Throws: what `order` throws; `FrameError.outOfMemory`; what `body` throws.
  public static func withOrder<R>(
    groupIDs: UnsafeBufferPointer<UInt32>, groups: Int,
    _ body: (_ permutation: UnsafeBufferPointer<UInt32>, _ starts: UnsafeBufferPointer<UInt64>) throws -> R
  ) throws -> R {
    try check(groupIDs.count, groups: groups)
    guard groups > 0 else { throw FrameError.invalidArgument("rows to put in order of no groups") }
    return try Memory.withScratch(UInt64.self, count: groups + 1) { starts in
      try Memory.withScratch(UInt32.self, count: groupIDs.count) { permutation in
        try order(groupIDs, groups: groups, into: permutation, starts: starts)
        return try body(UnsafeBufferPointer(permutation), UnsafeBufferPointer(starts))
      }
    }
  }

  /// The counting sort itself, into memory the caller owns (`groups` at least 1, `ids` checked).
  private static func order(
    _ ids: UnsafeBufferPointer<UInt32>, groups: Int, into permutation: UnsafeMutableBufferPointer<UInt32>,
    starts: UnsafeMutableBufferPointer<UInt64>
  ) throws {
    let rc = bs_partition_permutation(
      ids.baseAddress, ids.count, UInt32(groups), starts.baseAddress, permutation.baseAddress)
    guard rc == BS_OK else { throw FrameError.invalidArgument("a group id is not below \(groups)") }
  }

  /// Throws what the C kernels would refuse, naming it: more rows than 32-bit ids address,
  /// or ids with no group to go to.
  static func check(_ rows: Int, groups: Int) throws {
    guard rows < Int(UInt32.max) else {
      throw FrameError.invalidArgument("\(rows) rows to group, over 2^32")
    }
    guard groups > 0 || rows == 0 else {
      throw FrameError.invalidArgument("\(rows) rows to put in no groups")
    }
  }
}

/// The values of one fixed-width column in group order, in one buffer this value owns: the
/// lists of a cogroup, before they become a column.
public final class GroupedValues {
  /// Group `g` holds values `starts[g] ..< starts[g + 1]`.
  public let starts: [UInt64]
  private let buffer: UnsafeMutableRawPointer
  private let bytes: Int

  /// The values of `column` grouped by `groupIDs` (one per row, each below `groups`), or nil
  /// when the column is not of fixed width.
  /// - Throws: `FrameError.outOfMemory`; `.invalidArgument` when an id is `groups` or more or
  ///   the ids are not one per row.
  public init?(_ column: Column, groupIDs: [UInt32], groups: Int) throws {
    guard case .scalar(let kind) = column.type, let base = column.rawBase else { return nil }
    guard groupIDs.count == column.count else {
      throw FrameError.invalidArgument("\(groupIDs.count) group ids for \(column.count) rows")
    }
    try Grouping.check(groupIDs.count, groups: groups)
    let n = column.count
    bytes = max(n * kind.width, 1)
    guard let buffer = bs_buffer_alloc(bytes) else { throw FrameError.outOfMemory("\(n) values to group") }
    self.buffer = buffer
    var starts = [UInt64](repeating: 0, count: groups + 1)
    let rc =
      groups == 0
      ? BS_OK
      : groupIDs.withUnsafeBufferPointer { g in
        starts.withUnsafeMutableBufferPointer { s in
          bs_group_values_fixed(g.baseAddress, n, UInt32(groups), base, kind.width, s.baseAddress, buffer)
        }
      }
    self.starts = starts
    guard rc == BS_OK else { throw FrameError.invalidArgument("a group id is not below \(groups)") }
  }

  deinit { bs_buffer_free(buffer, bytes) }

  /// The groups as a column of packed lists of `E` (offsets into one buffer of values; see
  /// `Column.packedLists(as:)`), as they are coded.
  public func packedLists<E: ScalarValue & Codable>(_: E.Type) -> Column {
    Column.packedLists(E.self, base: UnsafeRawPointer(buffer), starts: starts)
  }

  /// The groups as a column of arrays of `T`, which must be the column's element type. The
  /// common element types run code specialised for them: generic code would look up the
  /// metadata of `[T]` for every group.
  public func arrays<T>(_: T.Type) throws -> Column {
    switch T.self {
    case is Int.Type: return try Column.make(erasing: arrays(of: Int.self))
    case is Int64.Type: return try Column.make(erasing: arrays(of: Int64.self))
    case is Int32.Type: return try Column.make(erasing: arrays(of: Int32.self))
    case is UInt64.Type: return try Column.make(erasing: arrays(of: UInt64.self))
    case is Double.Type: return try Column.make(erasing: arrays(of: Double.self))
    case is Float.Type: return try Column.make(erasing: arrays(of: Float.self))
    default: return try Column.make(erasing: arrays(of: T.self))
    }
  }

  private func arrays<T>(of _: T.Type) -> [[T]] {
    let typed = UnsafeRawPointer(buffer).assumingMemoryBound(to: T.self)
    return (0..<starts.count - 1).map { g in
      Array(UnsafeBufferPointer(start: typed + Int(starts[g]), count: Int(starts[g + 1] - starts[g])))
    }
  }
}

/// Cache hints for Swift loops that index a table at random by precomputed ids.
public enum Prefetch {
  /// Asks the processor to load the cache line of `array[index]` for writing. `index` must be
  /// within the array.
  @inlinable
  public static func forWriting<T>(_ array: [T], at index: Int) {
    array.withUnsafeBufferPointer { bs_prefetch_write($0.baseAddress! + index) }
  }
}
