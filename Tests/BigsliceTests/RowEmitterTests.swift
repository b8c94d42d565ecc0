import Bigslice
import Frame
import Testing

/// Rows emitted in calls of every size, around the sizes where an emitter's column is handed
/// over whole (full) or copied out, and past its first capacity: every row arrives once, in
/// order, with its values.
@Suite(.engine) struct RowEmitterTests {
  static let callSizes = [1, 9, 700, 5_000, 9_000, 16_383, 16_384, 20_000, 3, 40_000, 0, 12]

  @Test(arguments: [1, 3])
  func rowsOfCallsOfEverySizeArriveWhole(shards: Int) async throws {
    let sizes = Self.callSizes
    let slice = readerFunc(shards, initial: { _ in 0 }) {
      (shard: Int, call: inout Int, out: RowEmitter<Int, String, Double, Bool>) in
      for i in 0..<sizes[call] {
        let v = shard * 1_000_000 + call * 100_000 + i
        out.emit(v, "s\(v % 1000)", Double(v) / 8, v % 3 == 0)
      }
      call += 1
      return call < sizes.count
    }
    let result = try await Session(executor: .local(procs: 2)).run(slice)
    var expected: [String] = []
    for shard in 0..<shards {
      for (call, size) in sizes.enumerated() {
        for i in 0..<size {
          let v = shard * 1_000_000 + call * 100_000 + i
          expected.append("\(v) s\(v % 1000) \(Double(v) / 8) \(v % 3 == 0)")
        }
      }
    }
    let rows = try Array(result.rows()).map { "\($0.0) \($0.1) \($0.2) \($0.3)" }
    #expect(rows.count == expected.count)
    #expect(rows == expected, "rows differ from the emitted ones")
  }
}
