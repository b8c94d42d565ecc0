import Bigslice
import BigsliceTestFuncs
import Frame
import Testing

/// Keys and values that are user records (`ColumnRecord`), stored as one column per field,
/// against a naive model on every engine, with and without a limit that spills everything.
@Suite(.engine) struct RecordTests {
  static let shards = [1, 7]
  @Test(arguments: setups, shards)
  func builtInAndClosureReducesGroupOnEveryFieldOfARecordKey(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(3000, seed: UInt64(71 + shards))
    let (rows, tags, counts, amounts) = (r.ints(-20..<20), r.strings(), r.ints(-1000..<1000), r.doubles())
    let sums = try await session.run(RecordFuncs.sumByCell, shards, rows, tags, counts, amounts)
    var model: [Cell: Totals] = [:]
    for i in 0..<rows.count {
      let t = model[Cell(row: rows[i], tag: tags[i]), default: Totals(count: 0, amount: 0)]
      model[Cell(row: rows[i], tag: tags[i])] = Totals(count: t.count &+ counts[i], amount: t.amount + amounts[i])
    }
    let got = Array(try sums.rows())
    #expect(got.count == model.count)
    #expect(Dictionary(got, uniquingKeysWith: { a, _ in a }) == model)

    let flags = r.bools()
    let closure = try await session.run(RecordFuncs.closureByPlaced, shards, rows, tags, flags, counts)
    var closureModel: [Placed: Int] = [:]
    for i in 0..<rows.count {
      closureModel[Placed(cell: Cell(row: rows[i], tag: tags[i]), flag: flags[i]), default: 0] &+= counts[i]
    }
    let placed = Array(try closure.rows())
    #expect(placed.count == closureModel.count)
    #expect(Dictionary(placed, uniquingKeysWith: { a, _ in a }) == closureModel)

    // A boxed field: the key is grouped by sorting instead.
    let labelled = try await session.run(RecordFuncs.closureByLabelled, shards, rows, counts)
    var labelledModel: [Labelled: Int] = [:]
    for i in 0..<rows.count {
      labelledModel[Labelled(id: rows[i] % 5, labels: Array(0..<abs(rows[i] % 3))), default: 0] &+= counts[i]
    }
    #expect(Dictionary(Array(try labelled.rows()), uniquingKeysWith: { a, _ in a }) == labelledModel)
  }

  @Test(arguments: setups, shards)
  func plainCodableStructsKeyAndSumAsRecords(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2500, seed: UInt64(131 + shards))
    let (from, modes, km, prices, v) = (r.strings(), r.ints(-2..<2), r.ints(0..<4), r.doubles(), r.ints(-99..<99))
    let routes = (0..<from.count).map { Route(from: from[$0], leg: Leg(mode: Int8(modes[$0]), km: km[$0])) }
    let sums = try await session.run(RecordFuncs.sumByRoute, shards, from, modes, km, prices)
    var model: [Route: Fare] = [:]
    for (i, route) in routes.enumerated() {
      let f = model[route, default: Fare(trips: 0, price: 0)]
      model[route] = Fare(trips: f.trips + 1, price: f.price + prices[i])
    }
    let got = Array(try sums.rows())
    #expect(got.count == model.count)
    #expect(Dictionary(got, uniquingKeysWith: { a, _ in a }) == model)
    let closure = try await session.run(RecordFuncs.closureByRoute, shards, from, modes, km, v)
    var closureModel: [Route: Int] = [:]
    for (i, route) in routes.enumerated() { closureModel[route, default: 0] &+= v[i] }
    #expect(Dictionary(Array(try closure.rows()), uniquingKeysWith: { a, _ in a }) == closureModel)
  }

  @Test(arguments: setups, shards)
  func aFoldOnAComputedFieldSeesEachKeysValuesInArrivalOrder(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2000, seed: UInt64(81 + shards))
    let (starts, lengths, v) = (r.ints(0..<15), r.ints(0..<4), r.ints(0..<100_000))
    let result = try await session.run(RecordFuncs.foldBySpan, shards, starts, lengths, v)
    var model: [Span: [Int]] = [:]
    for i in 0..<v.count { model[Span(start: starts[i], length: lengths[i]), default: []].append(v[i]) }
    let got = Array(try result.rows())
    #expect(got.count == model.count)
    for (span, values) in got { #expect(values == model[span], "key \(span)") }
  }

  @Test(arguments: setups, shards)
  func aCogroupOnARecordKeyEqualsANaiveJoin(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2500, seed: UInt64(91 + shards))
    let (ra, ta, va) = (r.ints(0..<20), r.strings(), r.ints(-500..<500))
    var s = WideRows(1800, seed: UInt64(101 + shards))
    let (rb, tb, vb) = (s.ints(10..<30), s.strings(), s.doubles())
    let joined = try await session.run(RecordFuncs.cogroupByCell, shards, ra, ta, va, rb, tb, vb)
    var left: [Cell: [Int]] = [:]
    var right: [Cell: [Double]] = [:]
    for i in 0..<ra.count { left[Cell(row: ra[i], tag: ta[i]), default: []].append(va[i]) }
    for i in 0..<rb.count { right[Cell(row: rb[i], tag: tb[i]), default: []].append(vb[i]) }
    let rows = Array(try joined.rows())
    #expect(rows.count == Set(left.keys).union(right.keys).count)
    for (cell, xs, ys) in rows {
      #expect(xs.sorted() == (left[cell] ?? []).sorted(), "key \(cell)")
      #expect(ys.sorted() == (right[cell] ?? []).sorted(), "key \(cell)")
    }
  }

  @Test(arguments: setups, shards)
  func distinctReshuffleAndSortedHonourARecordKey(setup: Setup, shards: Int) async throws {
    let session = try session(setup)
    var r = WideRows(2000, seed: UInt64(111 + shards))
    let (rows, tags, v) = (r.ints(-6..<6), r.strings(), r.ints(0..<1000))
    let cells = (0..<rows.count).map { Cell(row: rows[$0], tag: tags[$0]) }

    let distinct = try await session.run(RecordFuncs.distinctCells, shards, rows, tags)
    let distinctCells = Array(try distinct.rows())
    #expect(distinctCells.count == Set(cells).count)
    #expect(Set(distinctCells) == Set(cells))

    let reshuffled = try await session.run(RecordFuncs.reshuffleCells, shards, rows, tags, v)
    var shardOf: [Cell: Int] = [:]
    var seen: [String] = []
    for shard in 0..<reshuffled.shards {
      for (cell, value) in try typedWideRows(try reshuffled.frames(shard: shard)) {
        #expect(shardOf[cell, default: shard] == shard, "key \(cell) in two shards")
        shardOf[cell] = shard
        seen.append("\(cell) \(value)")
      }
    }
    #expect(seen.sorted() == (0..<rows.count).map { "\(cells[$0]) \(v[$0])" }.sorted())
    // Keys that share their first field: a partition by it alone would put them in one shard.
    if shards > 1 { #expect(Set(shardOf.filter { $0.key.row == 0 }.values).count > 1) }

    let sorted = try await session.run(RecordFuncs.sortedCells, shards, rows, tags, v)
    let ordered = try (0..<sorted.shards).flatMap { try typedWideRows(try sorted.frames(shard: $0)) }
    #expect(ordered.map { "\($0.0) \($0.1)" }.sorted() == seen.sorted())
    for (p, q) in zip(ordered, ordered.dropFirst()) {
      let a = p.0
      let b = q.0
      #expect(
        a.row < b.row || (a.row == b.row && !Array(b.tag.utf8).lexicographicallyPrecedes(Array(a.tag.utf8))),
        "\(a) before \(b)")
    }
  }

  /// The (Cell, Int) rows of `frames`, read column by column.
  private func typedWideRows(_ frames: [Frame]) throws -> [(Cell, Int)] {
    try frames.flatMap { frame in
      zip(try frame.columns[0].records(Cell.self), frame.columns[1].scalars(Int.self)).map { ($0, $1) }
    }
  }

  @Test(arguments: setups)
  func closuresReadAndWriteRecords(setup: Setup) async throws {
    let session = try session(setup)
    var r = WideRows(1500, seed: 121)
    let (rows, tags) = (r.ints(-50..<50), r.strings())
    let result = try await session.run(RecordFuncs.mapCells, 5, rows, tags)
    let expected = (0..<rows.count).filter { rows[$0] % 3 != 0 }.map {
      "\(tags[$0] + (rows[$0] % 2 == 0 ? "+" : "-")) \(rows[$0])"
    }
    #expect(Array(try result.rows()).map { "\($0.0) \($0.1)" }.sorted() == expected.sorted())
  }
}
