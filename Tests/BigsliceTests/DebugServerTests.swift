import BigmachineTestSupport
import BigsliceTestFuncs
import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Bigslice

/// An HTTP response as the test client saw it.
struct HTTPReply {
  let status: Int
  let headers: String
  let body: String
}

/// A request the test client could not make.
struct HTTPClientError: Error {
  let message: String
}

/// GETs `path` from the server at `url`'s host and port over a plain TCP socket, HTTP/1.1
/// with `Connection: close`, and reads the reply to the end.
func httpGet(_ url: String, _ path: String, host: String? = nil) throws -> HTTPReply {
  let parts = try #require(URL(string: url))
  let port = try #require(parts.port)
  let fd = connectLoopback(port: port)
  guard fd >= 0 else { throw HTTPClientError(message: "cannot connect to \(url)") }
  defer { close(fd) }
  var timeout = timeval(tv_sec: 10, tv_usec: 0)
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
  var request = "GET \(path) HTTP/1.1\r\nHost: \(host ?? "127.0.0.1:\(port)")\r\nConnection: close\r\n\r\n"
  request.withUTF8 { _ = send(fd, $0.baseAddress, $0.count, 0) }
  var data = [UInt8]()
  var buffer = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = recv(fd, &buffer, buffer.count, 0)
    guard n >= 0 else { throw HTTPClientError(message: "reading from \(url) failed") }
    if n == 0 { break }
    data += buffer[..<n]
  }
  let text = String(decoding: data, as: UTF8.self)
  let split = try #require(text.range(of: "\r\n\r\n"))
  let head = String(text[..<split.lowerBound])
  let status = try #require(Int(head.split(separator: " ")[1]))
  return HTTPReply(status: status, headers: head, body: String(text[split.upperBound...]))
}

/// Headless Chromium, if installed.
let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
  FileManager.default.isExecutableFile(atPath: $0)
}

@Suite(.engine) struct DebugServerTests {
  /// Polls `/debug/tasks` until `ready` holds of it (at most 20 s).
  func waitForTasks(_ url: String, until ready: (DebugTasks) -> Bool) throws -> DebugTasks {
    let deadline = ContinuousClock.now + .seconds(20)
    while true {
      let reply = try httpGet(url, "/debug/tasks")
      let tasks = try JSONDecoder().decode(DebugTasks.self, from: Data(reply.body.utf8))
      if ready(tasks) || ContinuousClock.now > deadline { return tasks }
      usleep(20_000)
    }
  }

  /// A job on 2 procs whose three map tasks wait at `gate`, then a reduce of 3 shards into 7
  /// keys, run on a thread of its own (the test's polling blocks its own thread, and the
  /// cooperative pool may be busy with other suites). Returns when two map tasks run; `wait`
  /// returns the job's rows once the gate opens.
  func startGatedJob(_ session: Session, _ gate: Gate) throws -> (running: DebugTasks, wait: () -> Int?) {
    let slice = const(3, Array(0..<300), Array(repeating: 1, count: 300))
      .map { (k: Int, v: Int) -> (Int, Int) in
        if k % 100 == 0 { _ = gate.wait(seconds: 30) }
        return (k % 7, v)
      }
      .reduce(.sum)
    let rows = Mutex<Int?>(nil)
    let jobDone = DispatchSemaphore(value: 0)
    let job = UncheckedBox(slice)
    Thread {
      rows.withLock { $0 = try? session.run(job.value).count }
      jobDone.signal()
    }.start()
    let running = try waitForTasks(try #require(session.debugURL)) { $0.jobs.first?.operations.first?.running == 2 }
    return (
      running,
      {
        guard jobDone.wait(timeout: .now() + 60) == .success else { return nil }
        return rows.withLock { $0 }
      }
    )
  }

  @Test func thePagesShowARunningJobOverARealSocket() async throws {
    let session = Session(executor: .local(procs: 2), debugAddress: "127.0.0.1:0")
    let url = try #require(session.debugURL)
    #expect(url.hasPrefix("http://127.0.0.1:") && url.hasSuffix("/debug/status"))
    let gate = Gate()
    let (running, wait) = try startGatedJob(session, gate)
    // Two procs: two map tasks run, one waits, and the reduce waits for them.
    let ops = try #require(running.jobs.first?.operations)
    #expect(running.jobs.first?.state == "running")
    #expect(ops.count == 2)
    #expect(ops.map(\.running) == [2, 0])
    #expect(ops.map(\.waiting) == [1, 3])
    #expect(running.jobs.first?.tasks.count == 6)
    #expect(running.machines.map(\.name) == ["local"])
    #expect(running.machines[0].memory.totalBytes > 0)

    let page = try httpGet(url, "/debug/status")
    #expect(page.status == 200)
    #expect(page.headers.lowercased().contains("content-type: text/html"))
    #expect(page.body.contains(#"<meta http-equiv="refresh""#))
    for op in ops {
      #expect(page.body.contains(#"data-operation="\#(html(op.name))""#))
    }
    #expect(page.body.contains(#"<td class="running">2</td>"#))
    #expect(ops[1].inputs == [ops[0].name])
    #expect(page.body.contains(#"<td class="inputs">\#(html(ops[0].name))</td>"#))
    #expect(page.body.components(separatedBy: #"class="t running""#).count - 1 == 2)

    gate.open()
    #expect(wait() == 7)

    let finished = try waitForTasks(url) { $0.jobs.first?.state == "done" }
    #expect(finished.jobs.first?.state == "done")
    #expect(finished.jobs.first?.operations.map(\.done) == [3, 3])
    #expect(finished.jobs.first?.operations.last?.rows == 7)

    let trace = try httpGet(url, "/debug/trace")
    #expect(trace.status == 200)
    let object = try JSONSerialization.jsonObject(with: Data(trace.body.utf8)) as? [String: Any]
    let events = try #require(object?["traceEvents"] as? [[String: Any]])
    #expect(events.filter { $0["cat"] as? String == "task" }.count == 6)

    #expect(try httpGet(url, "/debug/nothing").status == 404)
    #expect(try httpGet(url, "/debug").body.contains(#"href="/debug/tasks""#))
  }

  @Test(
    .enabled(
      if: chromium != nil, "Chromium is not installed (.ci/run installs Debian's chromium package when it can)"))
  func aBrowserShowsTheRunningJobsOperationsAndCounts() async throws {
    let session = Session(executor: .local(procs: 2), debugAddress: ":0")
    let url = try #require(session.debugURL)
    let gate = Gate()
    defer { gate.open() }
    let (running, wait) = try startGatedJob(session, gate)
    let ops = try #require(running.jobs.first?.operations)
    let dom = try dumpDOM(url)
    // The page as the browser built it: the job, each operation, and its counts in their cells.
    #expect(dom.contains(#"<h2 class="job running">"#), "\(dom)")
    let rows = dom.components(separatedBy: "<tr ").filter { $0.hasPrefix(#"class="operation""#) }
    #expect(rows.count == 2)
    for (row, op) in zip(rows, ops) {
      #expect(row.contains(#"data-operation="\#(html(op.name))""#))
      #expect(row.contains(#"<td class="tasks">3</td>"#))
      #expect(row.contains(#"<td class="running">\#(op.running)</td>"#))
      #expect(row.contains(#"<td class="waiting">\#(op.waiting)</td>"#))
    }
    #expect(rows.first?.contains(#"<td class="running">2</td><td class="done">0</td>"#) == true)
    gate.open()
    #expect(wait() == 7)
    let done = try dumpDOM(url)
    #expect(done.contains(#"<h2 class="job done">"#))
    #expect(done.components(separatedBy: #"<td class="done">3</td>"#).count - 1 == 2)
  }

  /// The DOM of `url` as headless Chromium builds it.
  func dumpDOM(_ url: String) throws -> String {
    let profile = NSTemporaryDirectory() + "/bigslice-chromium-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: profile) }
    let result = try run(
      try #require(chromium),
      [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)", "--dump-dom",
        url,
      ])
    try #require(result.status == 0, "chromium exited \(result.status)")
    return result.out
  }

  /// On machines the pages list each machine beside the driver, with its memory, disk and
  /// load as it reported them.
  @Test func thePagesListTheSessionsMachines() async throws {
    TestFuncs.register()
    let session = Session(executor: .machines(system: .inProcess, count: 2, procs: 1), debugAddress: "127.0.0.1:0")
    defer { session.shutdown() }
    let url = try #require(session.debugURL)
    #expect(Array(try (await session.run(TestFuncs.head, 2, Array(0..<10), 2)).rows()) == [0, 1, 5, 6])
    let addresses = session.machines.map(\.address).sorted()
    #expect(addresses.count == 2)
    var listed: [DebugTasks.Machine] = []
    let deadline = ContinuousClock.now + .seconds(30)
    while listed.count < 3 && ContinuousClock.now < deadline {
      let reply = try httpGet(url, "/debug/tasks")
      listed = try JSONDecoder().decode(DebugTasks.self, from: Data(reply.body.utf8)).machines
      if listed.count < 3 { try await Task.sleep(for: .milliseconds(50)) }
    }
    #expect(listed.map(\.name) == ["local"] + addresses)
    #expect(listed.allSatisfy { $0.memory.totalBytes > 0 && $0.disk.totalBytes > 0 })
    let page = try httpGet(url, "/debug/status")
    for address in addresses {
      #expect(page.body.contains(#"<tr class="machine"><td>\#(address)</td>"#), "\(address)")
    }
  }

  @Test func aFailedJobShowsItsError() async throws {
    struct Boom: Error {}
    let session = Session(executor: .local(procs: 1), debugAddress: ":0")
    let url = try #require(session.debugURL)
    #expect(url.hasPrefix("http://127.0.0.1:"))
    await #expect(throws: BigsliceError.self) {
      try await session.run(const(2, Array(0..<4)).map { (v: Int) throws -> Int in throw Boom() })
    }
    let tasks = try JSONDecoder().decode(DebugTasks.self, from: Data(try httpGet(url, "/debug/tasks").body.utf8))
    #expect(tasks.jobs.first?.state == "failed")
    #expect(tasks.jobs.first?.error?.contains("Boom") == true)
    let page = try httpGet(url, "/debug/status").body
    #expect(page.contains(#"<h2 class="job failed">"#))
    // The failing task, and the other one if it started before the failure was seen (a loaded
    // machine can start it first): the failed count is the tasks that failed.
    let failedTasks = tasks.jobs.first?.tasks.filter { $0.state == .failed }.count ?? 0
    #expect((1...2).contains(failedTasks))
    #expect(page.contains(#"<td class="failed">\#(failedTasks)</td>"#))
  }

  @Test func anAddressItCannotReadServesNothing() async {
    #expect(throws: BigsliceError.self) { try DebugServer.parse("localhost:http") }
    #expect((try? DebugServer.parse("8080"))! == ("127.0.0.1", 8080))
    #expect((try? DebugServer.parse("0.0.0.0:9"))! == ("0.0.0.0", 9))
    #expect(Session(debugAddress: "nowhere:99999").debugURL == nil)
  }

  @Test func theServerStopsWithItsSession() async throws {
    var session: Session? = Session(debugAddress: ":0")
    let url = try #require(session?.debugURL)
    #expect(try httpGet(url, "/debug/status").status == 200)
    session = nil
    usleep(100_000)
    #expect(throws: (any Error).self) { try httpGet(url, "/debug/status") }
  }

  @Test func namesAreEscapedInHTML() async {
    #expect(html(#"<a href="x">&</a>"#) == "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;")
  }

  /// A page a browser loaded from another name (DNS rebinding) cannot read the server's:
  /// only its own host names at its port are answered, and every reply says nosniff.
  @Test func onlyTheServersOwnHostNamesAreAnswered() throws {
    let session = Session(debugAddress: ":0")
    let url = try #require(session.debugURL)
    let port = try #require(URL(string: url)?.port)
    for host in ["127.0.0.1:\(port)", "localhost:\(port)", "LOCALHOST:\(port)", "[::1]:\(port)"] {
      let reply = try httpGet(url, "/debug/tasks", host: host)
      #expect(reply.status == 200, "\(host)")
      #expect(reply.headers.contains("X-Content-Type-Options: nosniff"))
    }
    for host in ["evil.example:\(port)", "127.0.0.1:1", "localhost", "127.0.0.1:\(port).evil.example"] {
      let reply = try httpGet(url, "/debug/tasks", host: host)
      #expect(reply.status == 403, "\(host)")
      #expect(!reply.body.contains("jobs"))
    }
  }

  /// Connections beyond the cap are closed as they come, an idle one is closed after the
  /// idle timeout, and the server answers again once they are gone.
  @Test func connectionsAreCappedAndIdleOnesClosed() throws {
    let server = try DebugServer(
      address: ":0", pages: DebugPages(jobs: JobHistory(), tracer: nil), idleTimeout: .milliseconds(500))
    defer { server.stop() }
    let url = "http://127.0.0.1:\(server.port)"
    let held = (0..<(DebugServer.maxConnections + 20)).map { _ in connectLoopback(port: server.port) }
    defer { for fd in held { close(fd) } }
    func closedByServer(_ fd: Int32, within ms: Int32) -> Bool {
      var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      var byte: UInt8 = 0
      return poll(&p, 1, ms) == 1 && recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) <= 0
    }
    // The 20 over the cap are closed long before the idle timeout would.
    let early = held.filter { closedByServer($0, within: 0) }.count
    usleep(200_000)
    let overCap = held.filter { closedByServer($0, within: 0) }.count
    #expect(overCap >= 20 && early <= overCap, "\(overCap) closed at once")
    // The rest are closed once idle.
    #expect(held.allSatisfy { closedByServer($0, within: 5_000) })
    #expect(try httpGet(url, "/debug").status == 200)
  }

  /// The trace page shows the newest events and says how many older ones it left out.
  @Test func theTracePageIsCapped() throws {
    let session = Session(tracePath: nil, debugAddress: ":0")
    _ = try session.run(const(4, Array(0..<100), Array(repeating: 1, count: 100)).reduce(.sum))
    let tracer = try #require(session.tracer)
    let whole = tracer.json
    let capped = tracer.json(newest: 2)
    let spans = capped.split(separator: "\n").filter { $0.contains(#""ph":"X""#) }.count
    #expect(spans == 2)
    #expect(capped.contains("older events left out"))
    #expect(whole.split(separator: "\n").filter { $0.contains(#""ph":"X""#) }.count > 2)
    #expect(!whole.contains("left out"))
  }
}
