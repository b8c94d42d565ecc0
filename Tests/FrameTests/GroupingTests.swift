import Frame
import Testing

@Suite struct GroupingTests {
  /// Random ids over a few group counts: the order lists each group's rows, in row order.
  @Test(arguments: [1, 7, 1000])
  func theOrderListsEachGroupsRowsInRowOrder(groups: Int) throws {
    var rng = SystemRandomNumberGenerator()
    let ids = (0..<5000).map { _ in UInt32.random(in: 0..<UInt32(groups), using: &rng) }
    let (permutation, starts) = try Grouping.order(groupIDs: ids, groups: groups)
    #expect(starts.count == groups + 1 && starts.first == 0 && starts.last == UInt64(ids.count))
    for g in 0..<groups {
      let rows = permutation[Int(starts[g])..<Int(starts[g + 1])].map(Int.init)
      #expect(rows == ids.indices.filter { ids[$0] == UInt32(g) }, "group \(g)")
    }
  }

  /// A fixed-width column's values grouped: every list holds its group's values in row order.
  @Test func groupedValuesEqualANaiveGrouping() throws {
    let groups = 37
    let ids = (0..<3000).map { UInt32(($0 * 7919) % groups) }
    let values = (0..<3000).map { Int64($0) * 3 - 4000 }
    let grouped = try #require(try GroupedValues(Column(values), groupIDs: ids, groups: groups))
    let lists = try grouped.arrays(Int64.self).boxed([Int64].self)
    #expect(lists.count == groups)
    for g in 0..<groups {
      #expect(lists[g] == values.indices.filter { ids[$0] == UInt32(g) }.map { values[$0] }, "group \(g)")
    }
  }

  @Test func anIdPastTheGroupsOrAColumnOfStringsIsRefused() throws {
    #expect(throws: FrameError.invalidArgument("a group id is not below 2")) {
      try Grouping.order(groupIDs: [0, 1, 2], groups: 2)
    }
    #expect(throws: FrameError.invalidArgument("a group id is not below 2")) {
      try GroupedValues(Column([Int64(1), 2, 3]), groupIDs: [0, 1, 2], groups: 2)
    }
    #expect(throws: FrameError.self) { try GroupedValues(Column([Int64(1), 2]), groupIDs: [0], groups: 1) }
    #expect(try GroupedValues(Column(strings: ["a", "b"]), groupIDs: [0, 0], groups: 1) == nil)
  }
}
