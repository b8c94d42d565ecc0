import Frame
import Testing

@testable import Bigslice

/// A map task's combiner starts at the size the tasks before it needed: within the memory
/// limit, and never below a fresh combiner's size.
@Suite(.engine) struct CombinePresizeTests {
  @Test func presizingFollowsTheGroupsSeenWithinTheLimit() {
    #expect(CombineBuffer.presize(0, limit: nil) == 1024)
    #expect(CombineBuffer.presize(500, limit: nil) == 1024)
    #expect(CombineBuffer.presize(2_000_000, limit: nil) == 2_000_000)
    #expect(CombineBuffer.presize(2_000_000, limit: Int.max) == 2_000_000)
    // A quarter of 40 MB at 96 bytes a group.
    #expect(CombineBuffer.presize(2_000_000, limit: 40_000_000) == 40_000_000 / 4 / 96)
    #expect(CombineBuffer.presize(50_000, limit: 40_000_000) == 50_000)
    #expect(CombineBuffer.presize(2_000_000, limit: 1 << 16) == 1024)
  }

  @Test func theRecordKeepsTheMostGroupsATaskReported() {
    let record = CombineRecord()
    #expect(record.groupsSeen == 0)
    record.add(rows: 1000, groups: 300)
    record.add(rows: 1000, groups: 700)
    record.add(rows: 1000, groups: 200)
    record.add(rows: 0, groups: 5000)  // no rows: not a report
    #expect(record.groupsSeen == 700)
  }

  /// Map tasks after the first start presized; their sums are the same, with and without a
  /// limit that caps the presizing.
  @Test(arguments: [nil, 2_000_000] as [Int?])
  func presizedMapTasksSumAsTheReference(limit: Int?) async throws {
    let keys = 50_000
    let rows = 400_000
    let slice = readerFunc(16, initial: { shard in shard * rows / 16 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      let end = (shard + 1) * rows / 16
      while next < end {
        out.emit(Int(splitmix64(UInt64(next)) % UInt64(keys)), next % 7)
        next += 1
      }
      return false
    }.reduce(.sum)
    let session = Session(executor: .local(procs: 2), memoryLimit: limit)
    var expected = [Int: Int]()
    for i in 0..<rows { expected[Int(splitmix64(UInt64(i)) % UInt64(keys)), default: 0] += i % 7 }
    let result = try await session.run(slice)
    let found = Dictionary(uniqueKeysWithValues: Array(try result.rows()))
    #expect(found == expected)
  }
}
