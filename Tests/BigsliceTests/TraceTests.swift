import Foundation
import Testing

@testable import Bigslice

/// A fresh path for a trace file in $TMPDIR.
func temporaryTracePath() -> String {
  NSTemporaryDirectory() + "/bigslice-trace-\(UUID().uuidString).json"
}

/// The events of the trace at `path`, parsed by Foundation's own JSON reader.
func traceEvents(_ path: String) throws -> [[String: Any]] {
  let data = try #require(FileManager.default.contents(atPath: path))
  let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
  return try #require(object["traceEvents"] as? [[String: Any]])
}

@Suite(.engine) struct TraceTests {
  /// 4 map shards of 1000 rows, resharded into 3, summed over 10 keys: three operations.
  let job = const(4, Array(0..<1000), Array(repeating: 1, count: 1000))
    .map { (k: Int, v: Int) in (k % 10, v) }
    .reshard(3)
    .reduce(.sum)

  @Test func theTraceIsJSONWithASpanForEveryTask() async throws {
    let path = temporaryTracePath()
    defer { unlink(path) }
    let session = Session(executor: .local(procs: 2), tracePath: path)
    _ = try await session.run(job)
    let events = try traceEvents(path)
    let tasks = session.jobs.last!.tasks()
    #expect(tasks.count == 10)

    let spans = events.filter { $0["cat"] as? String == "task" }
    let args = spans.map { $0["args"] as! [String: Any] }
    #expect(Set(args.map { $0["task"] as! Int }) == Set(tasks.map(\.id)))
    #expect(spans.count == tasks.count)
    for (span, arg) in zip(spans, args) {
      #expect(span["ph"] as? String == "X")
      #expect((span["ts"] as? Int ?? -1) >= 0 && (span["dur"] as? Int ?? -1) >= 0)
      #expect(span["pid"] as? Int == 0)
      // Two procs: never more than two tasks at once, so two virtual threads.
      #expect([0, 1].contains(span["tid"] as? Int ?? -1))
      #expect(arg["state"] as? String == "done")
      let task = tasks.first { $0.id == arg["task"] as! Int }!
      #expect(span["name"] as? String == "\(task.operation):\(task.shard)")
      #expect(arg["rows"] as? Int == task.rows)
    }
    let process = events.first { $0["ph"] as? String == "M" && $0["name"] as? String == "process_name" }
    #expect((process?["args"] as? [String: Any])?["name"] as? String == "local")
    // The reshard and reduce tasks read (every task wrote), each within its task's span.
    let reads = events.filter { $0["cat"] as? String == "read" }
    let writes = events.filter { $0["cat"] as? String == "write" }
    #expect(reads.count == 6)
    #expect(writes.count == 10)
    for io in reads + writes {
      let id = (io["args"] as! [String: Any])["task"] as! Int
      let span = spans.first { ($0["args"] as! [String: Any])["task"] as! Int == id }!
      let (start, end) = (span["ts"] as! Int, span["ts"] as! Int + (span["dur"] as! Int))
      #expect(io["ts"] as! Int >= start && io["ts"] as! Int + (io["dur"] as! Int) <= end)
      #expect((io["args"] as! [String: Any])["bytes"] as! Int > 0)
    }
  }

  @Test func theSummaryMatchesTheJob() async throws {
    let path = temporaryTracePath()
    defer { unlink(path) }
    let session = Session(executor: .local(procs: 2), tracePath: path)
    let result = try await session.run(job)
    let summary = try TraceSummary(path: path)
    let ops = session.jobs.last!.operations()
    #expect(summary.machines == ["local"])
    #expect(summary.operations.map(\.name) == ops.map(\.name))
    #expect(summary.operations.map(\.done) == [4, 3, 3])
    #expect(summary.operations.map(\.rows) == ops.map(\.rows))
    #expect(summary.operations.map(\.bytes) == ops.map(\.bytes))
    #expect(try summary.operations[2].rows == result.count)
    #expect(summary.operations.allSatisfy { $0.failed == 0 && $0.interrupted == 0 && $0.lost == 0 })
    // Each operation reads what the one before it output, frame for frame (held in memory).
    let (map, reduce) = (summary.operations[0], summary.operations[2])
    #expect(map.readRows == 0)
    for (before, after) in zip(summary.operations, summary.operations.dropFirst()) {
      #expect(after.readBytes == before.bytes)
      #expect(after.readRows == before.rows)
    }
    #expect(summary.operations.allSatisfy { $0.writeBytes == $0.bytes })
    for op in summary.operations {
      #expect(op.quartiles.count == 5)
      #expect(zip(op.quartiles, op.quartiles.dropFirst()).allSatisfy { $0 <= $1 })
      #expect(op.taskSeconds >= op.quartiles[4] - 1e-6)
      #expect(op.wallSeconds >= op.quartiles[4] - 1e-6)
    }
    let table = summary.table.split(separator: "\n")
    #expect(table.count == 4)
    #expect(table[0].hasPrefix("operation"))
    #expect(table[1].hasPrefix(map.name) && table[1].contains(" \(map.rows) "))
    #expect(try table[3].hasPrefix(reduce.name) && table[2].contains(" \(result.count) "))
  }

  @Test func theTraceHoldsEveryJobOfTheSession() async throws {
    let path = temporaryTracePath()
    defer { unlink(path) }
    let session = Session(tracePath: path)
    _ = try await session.run(const(2, Array(0..<10)))
    _ = try await session.run(const(3, Array(0..<10)).map { (v: Int) in v + 1 })
    let summary = try TraceSummary(path: path)
    #expect(summary.operations.map(\.done) == [2, 3])
    #expect(summary.operations.map(\.rows) == [10, 10])
  }

  @Test func aFailedTaskIsTracedAsFailed() async throws {
    struct Boom: Error {}
    let path = temporaryTracePath()
    defer { unlink(path) }
    let session = Session(executor: .local(procs: 1), tracePath: path)
    let slice = const(3, Array(0..<30)).map { (v: Int) throws -> Int in
      if v == 25 { throw Boom() }
      return v
    }
    await #expect(throws: BigsliceError.self) { try await session.run(slice) }
    let summary = try TraceSummary(path: path)
    #expect(summary.operations.count == 1)
    #expect(summary.operations[0].failed == 1)
    let failed = try traceEvents(path).first { ($0["args"] as? [String: Any])?["state"] as? String == "failed" }
    #expect(((failed?["args"] as? [String: Any])?["error"] as? String)?.contains("Boom") == true)
  }

  @Test func aLostOutputIsAnInstantEvent() async throws {
    let path = temporaryTracePath()
    defer { unlink(path) }
    let session = Session(executor: .local(procs: 2), memoryLimit: 1, tracePath: path)
    _ = try await session.run(EvaluationTests().losingJob(session, times: 1, removed: Counter()))
    let summary = try TraceSummary(path: path)
    #expect(summary.operations.reduce(0) { $0 + $1.lost } > 0)
    #expect(summary.operations.reduce(0) { $0 + $1.interrupted } > 0)
  }

  @Test func aFileThatIsNotATraceIsAnError() async throws {
    let error = #expect(throws: BigsliceError.self) { try TraceSummary(data: Data("{\"nope\": 1}".utf8)) }
    #expect(error?.description.contains("not a Chrome trace") == true)
    #expect(throws: BigsliceError.self) { try TraceSummary(path: "/nonexistent/trace.json") }
  }

  @Test func quartilesInterpolateBetweenRanks() async {
    #expect(TraceSummary.quartiles([5, 1, 3, 2, 4]) == [1, 2, 3, 4, 5])
    #expect(TraceSummary.quartiles([1, 2, 3, 4]) == [1, 1.75, 2.5, 3.25, 4])
    #expect(TraceSummary.quartiles([7]) == [7, 7, 7, 7, 7])
    #expect(TraceSummary.quartiles([]) == [])
  }

  @Test func namesAreEscapedInJSON() async throws {
    let text = jsonString("a\"b\\c\nd\u{1}é")
    let parsed = try JSONSerialization.jsonObject(with: Data("[\(text)]".utf8)) as? [String]
    #expect(parsed == ["a\"b\\c\nd\u{1}é"])
  }
}
