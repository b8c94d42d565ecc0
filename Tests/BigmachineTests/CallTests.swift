import Bigmachine
import BigmachineTestSupport
import Testing

@Suite struct CallTests {
  @Test func aCallReturnsTheServicesReply() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    #expect(try await m.call("Test.echo", "hello", returning: String.self) == "m:hello")
    #expect(try await m.call("Test.add", [1, 2, 3, 4], returning: Int.self) == 10)
    #expect(m.maxprocs == 1)
    #expect(m.processID > 0)
    #expect(try await m.memoryInfo().processResidentBytes > 0)
    #expect(try await m.diskInfo().totalBytes > 0)
    #expect(try await m.loadInfo().one >= 0)
    await b.shutdown()
    #expect(m.state == .stopped)
  }

  @Test func aThousandCallsAreInFlightAtOnce() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    // Each call waits in the service until all 1,000 have arrived, so none can finish unless
    // all are in flight together on the one connection.
    let results = try await withThrowingTaskGroup(of: Int.self) { group in
      for _ in 0..<1000 {
        group.addTask {
          try await m.call("Test.barrier", BarrierArgument(key: "thousand", count: 1000), returning: Int.self)
        }
      }
      var all: [Int] = []
      for try await r in group { all.append(r) }
      return all
    }
    #expect(results.count == 1000 && results.allSatisfy { $0 == 1000 })
    await b.shutdown()
  }

  @Test func remoteErrorsKeepTheirKindAndMessage() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    do {
      _ = try await m.call("Test.fail", "disk on fire", returning: Int.self)
      Issue.record("the call succeeded")
    } catch let error as BigmachineError {
      guard case .remote(let address, let method, let kind, let message, let temporary, _) = error else {
        Issue.record("not a remote error: \(error)")
        return
      }
      #expect(address == m.address)
      #expect(method == "Test.fail")
      #expect(kind == "TestFailure")
      #expect(message == "disk on fire")
      #expect(!temporary && !error.isTemporary)
    }
    // The machine still serves.
    #expect(try await m.call("Test.echo", "after", returning: String.self) == "m:after")
    await b.shutdown()
  }

  @Test func unknownMethodsAndBadArgumentsAreFatal() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    await #expect(throws: BigmachineError.self) { try await m.call("Test.nope", 1, returning: Int.self) }
    do {
      _ = try await m.call("Nobody.echo", "x", returning: String.self)
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .unknownMethod)
      #expect(message.contains("Nobody.echo"))
    }
    do {
      _ = try await m.call("Test.add", "not a list", returning: Int.self)
      Issue.record("a bad argument was accepted")
    } catch let BigmachineError.fatal(_, kind, _) {
      #expect(kind == .badArgument)
    }
    do {
      _ = try await m.call("Test.echo", "x", returning: Int.self)
      Issue.record("a bad reply type was accepted")
    } catch let BigmachineError.fatal(_, kind, _) {
      #expect(kind == .badArgument)
    }
    await b.shutdown()
  }

  @Test func anArgumentTooLargeForOneFrameFailsThatCallAlone() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    let id = "beside-\(UInt64.random(in: 0...UInt64.max))"
    let beside = Task { try await m.call("Test.block", id, returning: Bool.self) }
    #expect(await eventually(within: 10) { await Probe.shared.saw("started \(id)") })
    // 17 MiB, and two quotes around it in JSON.
    do {
      _ = try await m.call("Test.echo", String(repeating: "a", count: 17 << 20), returning: String.self)
      Issue.record("an oversized argument was sent")
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .badArgument)
      #expect(message.contains("\((17 << 20) + 2) bytes"))
      // 16 MiB less the frame's kind and stream, a sealed frame's tag, and the call header.
      #expect(message.contains("over the limit of \((16 << 20) - 5 - 16 - 12) bytes"))
      #expect(message.contains("argument stream"))
    }
    // Neither the connection nor the call beside it was hurt.
    #expect(try await m.call("Test.echo", "after", returning: String.self) == "m:after")
    #expect(m.state == .running)
    beside.cancel()
    #expect(await eventually(within: 10) { await Probe.shared.saw("cancelled \(id)") })
    await b.shutdown()
  }

  @Test func aReplyTooLargeForOneFrameFailsThatCallAlone() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    do {
      _ = try await m.call("Test.bigReply", 17 << 20, returning: String.self)
      Issue.record("an oversized reply arrived")
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .badArgument)
      #expect(message.contains("reply of Test.bigReply is \((17 << 20) + 2) bytes"))
      #expect(message.contains("reply stream"))
    }
    #expect(try await m.call("Test.echo", "after", returning: String.self) == "m:after")
    #expect(try await m.call("Test.bigReply", 3, returning: String.self) == "xxx")
    await b.shutdown()
  }

  @Test func aMethodNameOverTheLimitFailsLocally() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    // Longer than the u16 that carries its length.
    do {
      _ = try await m.call(String(repeating: "M", count: 70_000), 1, returning: Int.self)
      Issue.record("an oversized method name was sent")
    } catch let BigmachineError.fatal(_, kind, message) {
      #expect(kind == .badArgument)
      #expect(message.contains("70000 bytes, over the limit of 512"))
    }
    #expect(try await m.call("Test.echo", "after", returning: String.self) == "m:after")
    await b.shutdown()
  }

  @Test func aRemoteErrorsTextIsBoundedAndFreeOfControlCharacters() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    let message = "\u{1B}[2J" + String(repeating: "x", count: 100_000)
    do {
      _ = try await m.call("Test.fail", message, returning: Int.self)
      Issue.record("the call succeeded")
    } catch let BigmachineError.remote(_, _, kind, got, _, _) {
      #expect(kind == "TestFailure")
      #expect(got.unicodeScalars.count == 1024)
      #expect(got.hasPrefix("\u{FFFD}[2Jxxx"))
      #expect(got.hasSuffix("x\u{2026}"))
    }
    #expect(try await m.call("Test.echo", "after", returning: String.self) == "m:after")
    await b.shutdown()
  }

  @Test func aRemoteErrorsTypedDetailArrivesWholeAndDecodes() async throws {
    let (b, machines) = try await localCluster(1)
    let m = machines[0]
    // Far longer than a message may be: the detail is not cut to the message's bound.
    let detail = FailureDetail(items: (0..<5000).map { "inv3.\($0)" })
    do {
      _ = try await m.call("Test.failWithDetail", detail, returning: Int.self)
      Issue.record("the call succeeded")
    } catch let error as BigmachineError {
      #expect(error.detail(as: FailureDetail.self) == detail)
      #expect(error.detail(as: [Int].self) == nil)
      guard case .remote(_, _, let kind, let message, _, _) = error else {
        Issue.record("not a remote error: \(error)")
        return
      }
      #expect(kind == "TestFailure" && message == "with a detail")
    }
    // A detail over the bound arrives as nil, the error itself intact.
    let huge = FailureDetail(items: [String(repeating: "y", count: ServiceError.maxDetail)])
    do {
      _ = try await m.call("Test.failWithDetail", huge, returning: Int.self)
      Issue.record("the call succeeded")
    } catch let error as BigmachineError {
      #expect(error.detail(as: FailureDetail.self) == nil)
      #expect(error.isTemporary == false && "\(error)".contains("with a detail"))
    }
    await b.shutdown()
  }

  @Test func cancellingTheCallerCancelsTheCallee() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    let id = "cancel-\(UInt64.random(in: 0...UInt64.max))"
    let task = Task { try await m.call("Test.block", id, returning: Bool.self) }
    #expect(await eventually(within: 10) { await Probe.shared.saw("started \(id)") })
    task.cancel()
    let outcome = await task.result
    #expect(throws: CancellationError.self) { try outcome.get() }
    // The callee's task saw the cancellation: the cancel frame reached it.
    #expect(await eventually(within: 10) { await Probe.shared.saw("cancelled \(id)") })
    #expect(try await m.call("Test.echo", "still here", returning: String.self) == "m:still here")
    await b.shutdown()
  }

  @Test func retryCallRetriesTemporaryErrorsOnly() async throws {
    let (b, _, machines) = try await inProcessCluster()
    let m = machines[0]
    let fast = Backoff(initial: .milliseconds(10), maximum: .milliseconds(50), factor: 1.5)
    let key = "flaky-\(UInt64.random(in: 0...UInt64.max))"
    #expect(try await m.retryCall("Test.flaky", key, returning: Int.self, backoff: fast) == 3)
    let limited = Backoff(initial: .milliseconds(10), maximum: .milliseconds(50), factor: 1.5, maxAttempts: 2)
    await #expect(throws: BigmachineError.self) {
      try await m.retryCall("Test.flaky", key + "-again", returning: Int.self, backoff: limited)
    }
    // A permanent remote error is not retried: exactly one attempt, then its error.
    do {
      _ = try await m.retryCall("Test.failCounting", key + "-permanent", returning: Int.self, backoff: fast)
      Issue.record("a permanent error was swallowed")
    } catch let BigmachineError.remote(_, _, kind, message, temporary, _) {
      #expect(kind == "Permanent" && message == "attempt 1" && !temporary)
    }
    await b.shutdown()
  }

  @Test func aKilledMachineFailsItsCallsFastAndStops() async throws {
    // Renewals could only notice after 1200 s: anything faster is the lost connection.
    let slow = KeepaliveConfig(
      period: .seconds(10), timeout: .seconds(1200), rpcTimeout: .seconds(10), lease: .seconds(2400))
    let (b, system, machines) = try await inProcessCluster(2, keepalive: slow)
    let (victim, survivor) = (machines[0], machines[1])
    let id = "killed-\(UInt64.random(in: 0...UInt64.max))"
    let inFlight = Task { try await victim.call("Test.block", id, returning: Bool.self) }
    #expect(await eventually(within: 10) { await Probe.shared.saw("started \(id)") })
    system.kill(victim)
    let seconds = await timed {
      let r = await inFlight.result
      #expect(throws: BigmachineError.self) { try r.get() }
    }
    // Far inside the keepalive timeout. Generous: in the full `swift test` run, synchronous
    // tests of other targets can hold both cooperative threads for tens of seconds.
    #expect(seconds < 300)
    #expect(await victim.wait(for: .stopped) == .stopped)
    do {
      _ = try await victim.call("Test.echo", "x", returning: String.self)
      Issue.record("a call to a stopped machine succeeded")
    } catch let BigmachineError.fatal(_, kind, _) {
      #expect(kind == .machineStopped)
    }
    #expect(try await survivor.call("Test.echo", "ok", returning: String.self) == "m:ok")
    await b.shutdown()
  }

  @Test func aFailingSetUpStopsTheMachineFastWithTheCause() async throws {
    let system = InProcessSystem()
    let b = try await Bigmachine.start(system: system, services: testServiceTypes, options: .init(log: .discard))
    let (m, failSeconds, okSeconds) = try await startFailingBesideHealthy(b)
    #expect(m.state == .stopped)
    guard case .fatal(_, let kind, let message)? = m.error else {
      Issue.record("unexpected error \(String(describing: m.error))")
      return
    }
    #expect(kind == .setUpFailed)
    #expect(message.contains("FailingSetUp.setUp failed"))
    #expect(message.contains("the scratch database is unreachable"))
    // No retries, no timeouts (the original retried a failing Register for 5 minutes): it
    // fails no slower than a healthy machine starts.
    #expect(failSeconds <= okSeconds + 2, "failed after \(failSeconds) s, a healthy machine started in \(okSeconds) s")
    await b.shutdown()
  }
}
