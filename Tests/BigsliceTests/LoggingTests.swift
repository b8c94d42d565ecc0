import Bigslice
import InMemoryLogging
import Logging
import Testing

@Suite(.engine) struct LoggingTests {
  /// A logger whose entries the test can read.
  func capturing() -> (Logger, InMemoryLogHandler) {
    let handler = InMemoryLogHandler()
    var logger = Logger(label: "test") { _ in handler }
    logger.logLevel = .debug
    return (logger, handler)
  }

  @Test func aTraceThatCannotBeWrittenIsLoggedNamingTheMachine() async throws {
    let (logger, handler) = capturing()
    let session = Session(tracePath: "/nonexistent-directory/trace.json", logger: logger)
    #expect(try await session.run(const(1, [1, 2, 3])).count == 3)
    let errors = handler.entries.filter { $0.level == .error }
    #expect(errors.count == 1)
    #expect(errors.first?.message.description.contains("/nonexistent-directory/trace.json") == true)
    #expect(errors.first?.metadata["machine"] == "local")
    // And the job's start and end, at debug level.
    let debug = handler.entries.filter { $0.level == .debug }.map(\.message.description)
    #expect(debug.contains { $0.hasPrefix("job const@") && $0.hasSuffix(" started") })
    #expect(debug.contains { $0.hasPrefix("job const@") && $0.contains(" done in ") })
  }

  @Test func aLostOutputIsANotice() async throws {
    let (logger, handler) = capturing()
    let session = Session(executor: .local(procs: 2), memoryLimit: 1, logger: logger)
    _ = try await session.run(EvaluationTests().losingJob(session, times: 1, removed: Counter()))
    let notices = handler.entries.filter { $0.level == .notice }
    #expect(!notices.isEmpty)
    #expect(notices.allSatisfy { $0.message.description.contains("was lost; computing it again") })
    #expect(notices.allSatisfy { $0.metadata["machine"] == "local" })
  }

  @Test func anAddressItCannotListenOnIsAnError() async throws {
    let (logger, handler) = capturing()
    let session = Session(debugAddress: "256.1.1.1:80", logger: logger)
    #expect(session.debugURL == nil)
    #expect(handler.entries.contains { $0.level == .error && $0.message.description.contains("256.1.1.1:80") })
  }
}
