import Bigslice
import Frame

/// A record key of two columns: an Int and a String.
public struct Cell: ColumnRecord {
  public var row: Int
  public var tag: String
  public static let columns = RecordColumns(Cell.init(row:tag:), \.row, \.tag)
  public init(row: Int, tag: String) {
    self.row = row
    self.tag = tag
  }
}

/// A record value of two summable columns.
public struct Totals: ColumnRecord {
  public var count: Int
  public var amount: Double
  public static let columns = RecordColumns(Totals.init(count:amount:), \.count, \.amount)
  public init(count: Int, amount: Double) {
    self.count = count
    self.amount = amount
  }
}

/// A record holding a record: three leaf columns.
public struct Placed: ColumnRecord {
  public var cell: Cell
  public var flag: Bool
  public static let columns = RecordColumns(Placed.init(cell:flag:), \.cell, \.flag)
  public init(cell: Cell, flag: Bool) {
    self.cell = cell
    self.flag = flag
  }
}

/// A record with a computed field: `end` is read through its key path, not from memory.
public struct Span: ColumnRecord {
  public var start: Int
  public var length: Int
  public var end: Int { start + length }
  public static let columns = RecordColumns({ Span(start: $0, length: $1 - $0) }, \.start, \.end)
  public init(start: Int, length: Int) {
    self.start = start
    self.length = length
  }
}

/// A record with a boxed field: grouped by sorting, not by the C table.
public struct Labelled: ColumnRecord {
  public var id: Int
  public var labels: [Int]
  public static let columns = RecordColumns(Labelled.init(id:labels:), \.id, \.labels)
  public init(id: Int, labels: [Int]) {
    self.id = id
    self.labels = labels
  }
}

/// A plain `Codable` key with a nested struct: a record found by probing its decoding.
public struct Route: Codable, Hashable, Sendable {
  public var from: String
  public var leg: Leg
  public init(from: String, leg: Leg) {
    self.from = from
    self.leg = leg
  }
}

public struct Leg: Codable, Hashable, Sendable {
  public var mode: Int8
  public var km: Int
  public init(mode: Int8, km: Int) {
    self.mode = mode
    self.km = km
  }
}

/// A plain `Codable` value of summable fields.
public struct Fare: Codable, Hashable, Sendable {
  public var trips: Int
  public var price: Double
  public init(trips: Int, price: Double) {
    self.trips = trips
    self.price = price
  }
}

/// Funcs keyed on records: the struct-key shapes of issue 19's property tests.
public enum RecordFuncs {
  static func register() {
    _ =
      [
        sumByCell, closureByPlaced, foldBySpan, cogroupByCell, distinctCells, reshuffleCells, sortedCells,
        closureByLabelled, mapCells, sumByRoute, closureByRoute,
      ] as [AnyObject]
  }

  /// Key `Cell`, value `Totals`: the built-in sum of each of its fields.
  public static let sumByCell = Func("records.sum") {
    (shards: Int, rows: [Int], tags: [String], counts: [Int], amounts: [Double]) -> Slice<Cell, Totals> in
    const(shards, rows, tags, counts, amounts).map { (r: Int, t: String, c: Int, a: Double) in
      (Cell(row: r, tag: t), Totals(count: c, amount: a))
    }.reduce(.sum)
  }
  /// Key `Placed` (a record in a record), a closure over Int values.
  public static let closureByPlaced = Func("records.closure") {
    (shards: Int, rows: [Int], tags: [String], flags: [Bool], v: [Int]) -> Slice<Placed, Int> in
    const(shards, rows, tags, flags, v).map { (r: Int, t: String, f: Bool, v: Int) in
      (Placed(cell: Cell(row: r, tag: t), flag: f), v)
    }.reduce { $0 &+ $1 }
  }
  /// Key `Span` (a computed field): each key's values in arrival order.
  public static let foldBySpan = Func("records.fold") {
    (shards: Int, starts: [Int], lengths: [Int], v: [Int]) -> Slice<Span, [Int]> in
    const(1, starts, lengths, v).reshard(shards).map { (s: Int, l: Int, v: Int) in
      (Span(start: s, length: l), v)
    }.fold([Int]()) { $0 + [$1] }
  }
  /// Two inputs keyed on `Cell`.
  public static let cogroupByCell = Func("records.cogroup") {
    (shards: Int, ra: [Int], ta: [String], va: [Int], rb: [Int], tb: [String], vb: [Double])
      -> Slice<Cell, [Int], [Double]> in
    let a = const(shards, ra, ta, va).map { (r: Int, t: String, v: Int) in (Cell(row: r, tag: t), v) }
    let b = const(max(1, shards / 2), rb, tb, vb).map { (r: Int, t: String, v: Double) in (Cell(row: r, tag: t), v) }
    return cogroup(a, b)
  }
  /// Distinct `Cell`s.
  public static let distinctCells = Func("records.distinct") {
    (shards: Int, rows: [Int], tags: [String]) -> Slice<Cell> in
    const(shards, rows, tags).map { (r: Int, t: String) in Cell(row: r, tag: t) }.distinct()
  }
  /// Rows with a `Cell` key moved to their key's shard.
  public static let reshuffleCells = Func("records.reshuffle") {
    (shards: Int, rows: [Int], tags: [String], v: [Int]) -> Slice<Cell, Int> in
    const(shards, rows, tags, v).map { (r: Int, t: String, v: Int) in (Cell(row: r, tag: t), v) }.reshuffle()
  }
  /// Rows sorted by their `Cell` key, field by field.
  public static let sortedCells = Func("records.sorted") {
    (shards: Int, rows: [Int], tags: [String], v: [Int]) -> Slice<Cell, Int> in
    const(shards, rows, tags, v).map { (r: Int, t: String, v: Int) in (Cell(row: r, tag: t), v) }.sorted()
  }
  /// Key `Labelled` (a boxed field), a closure over Int values.
  public static let closureByLabelled = Func("records.labelled") {
    (shards: Int, ids: [Int], v: [Int]) -> Slice<Labelled, Int> in
    const(shards, ids, v).map { (id: Int, v: Int) in (Labelled(id: id % 5, labels: Array(0..<abs(id % 3))), v) }
      .reduce { $0 &+ $1 }
  }
  /// Records read and written by closures: a `Placed` key from a `Cell`, then back out.
  public static let mapCells = Func("records.map") {
    (shards: Int, rows: [Int], tags: [String]) -> Slice<String, Int> in
    const(shards, rows, tags).map { (r: Int, t: String) in Placed(cell: Cell(row: r, tag: t), flag: r % 2 == 0) }
      .filter { (p: Placed) in p.cell.row % 3 != 0 }
      .map { (p: Placed) in (p.cell.tag + (p.flag ? "+" : "-"), p.cell.row) }
  }
  /// Key `Route`, value `Fare`, both plain `Codable`: the built-in sum of each field.
  public static let sumByRoute = Func("records.codableSum") {
    (shards: Int, from: [String], modes: [Int], km: [Int], prices: [Double]) -> Slice<Route, Fare> in
    const(shards, from, modes, km, prices).map { (f: String, m: Int, k: Int, p: Double) in
      (Route(from: f, leg: Leg(mode: Int8(m), km: k)), Fare(trips: 1, price: p))
    }.reduce(.sum)
  }
  /// Key `Route`, a closure over Int values.
  public static let closureByRoute = Func("records.codableClosure") {
    (shards: Int, from: [String], modes: [Int], km: [Int], v: [Int]) -> Slice<Route, Int> in
    const(shards, from, modes, km, v).map { (f: String, m: Int, k: Int, v: Int) in
      (Route(from: f, leg: Leg(mode: Int8(m), km: k)), v)
    }.reduce { $0 &+ $1 }
  }
}
