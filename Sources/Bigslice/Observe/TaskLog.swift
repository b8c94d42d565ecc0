import Logging

/// Logs the task events worth a line: an output lost (it is computed again). A failure is not
/// logged here: it fails the job, and the caller gets it.
struct TaskLog: TaskObserver {
  let logger: Logger

  func record(_ event: TaskEvent) {
    guard event.state == .lost else { return }
    var logger = logger
    logger[metadataKey: "machine"] = "\(event.machine)"
    logger.notice("the output of \(event.task.operation) shard \(event.task.shard) was lost; computing it again")
  }
}
