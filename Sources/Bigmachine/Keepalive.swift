import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// How the driver keeps a system's machines alive, and how fast it notices one is gone.
///
/// Every `period` the driver renews each machine's lease (a `keepalive` frame), waiting up to
/// `rpcTimeout` for the acknowledgement. When no renewal has succeeded for `timeout`, the
/// machine is stopped with a fatal `keepaliveFailed` error and its calls fail. A worker whose
/// lease (`lease` after its last renewal) lapses exits by itself, so a dead or partitioned
/// driver leaves no workers behind for longer than about `lease` plus a check interval.
/// `period` must be shorter than `lease`, and `timeout` should be too.
public struct KeepaliveConfig: Sendable, Equatable {
  /// Time between renewals.
  public var period: Duration
  /// How long renewals may fail before the machine is declared stopped.
  public var timeout: Duration
  /// How long one renewal waits for its acknowledgement.
  public var rpcTimeout: Duration
  /// How long a worker lives past its last renewal.
  public var lease: Duration

  /// Sets all four; see the type's description.
  public init(period: Duration, timeout: Duration, rpcTimeout: Duration, lease: Duration) {
    self.period = period
    self.timeout = timeout
    self.rpcTimeout = rpcTimeout
    self.lease = lease
  }

  /// 10 s period, 30 s timeout, 10 s per renewal, 60 s lease.
  public static let standard = KeepaliveConfig(
    period: .seconds(10), timeout: .seconds(30), rpcTimeout: .seconds(10), lease: .seconds(60))
}

extension Duration {
  var milliseconds: Int64 {
    let c = components
    return c.seconds * 1000 + c.attoseconds / 1_000_000_000_000_000
  }
  var timeAmount: TimeAmount { .milliseconds(milliseconds) }
}

/// Starts the driver's renewals of one machine's lease, on its connection's event loop (not
/// in a task: a driver whose tasks are all busy must still keep its machines alive). Stops
/// the machine when no renewal has succeeded for `config.timeout`; ends when the machine stops.
func keepAlive(_ machine: Machine, over connection: Connection, config: KeepaliveConfig) {
  let loop = connection.channel.eventLoop
  struct Progress {
    var lastSuccess = NIODeadline.now()
    var lastError = "no renewal yet"
  }
  let progress = NIOLockedValueBox(Progress())
  let lease = UInt64(config.lease.milliseconds)
  loop.scheduleRepeatedTask(initialDelay: .zero, delay: config.period.timeAmount) { task in
    guard machine.state != .stopped else {
      task.cancel()
      return
    }
    let (silent, lastError) = progress.withLockedValue { (NIODeadline.now() - $0.lastSuccess, $0.lastError) }
    if silent > config.timeout.timeAmount {
      task.cancel()
      let error = BigmachineError.fatal(
        address: machine.address, kind: .keepaliveFailed,
        message: "keepalive failed: no renewal for \(silent) (last error: \(lastError))")
      machine.stop(error)
      connection.close(error)
      return
    }
    connection.keepalive(leaseMillis: lease, timeout: config.rpcTimeout.timeAmount) { result in
      progress.withLockedValue { p in
        switch result {
        case .success: p.lastSuccess = .now()
        case .failure(let error): p.lastError = "\(error)"
        }
      }
    }
  }
}

/// A worker's lease: renewed by the driver's keepalives, and when it lapses `expire` runs
/// (a real worker process exits). Checked on an event loop every quarter lease, at least
/// every second.
final class Lease: @unchecked Sendable {
  private struct State {
    var deadline: NIODeadline
    var length: TimeAmount
    var task: Scheduled<Void>?
    var stopped = false
  }
  private let state: NIOLockedValueBox<State>
  private let expire: @Sendable (TimeAmount) -> Void
  private let loop: any EventLoop

  /// Starts the watch with `initial` until the first renewal.
  init(initial: TimeAmount, expire: @escaping @Sendable (TimeAmount) -> Void) {
    loop = MultiThreadedEventLoopGroup.singleton.next()
    self.expire = expire
    state = NIOLockedValueBox(State(deadline: .now() + initial, length: initial))
    schedule()
  }

  /// Extends the lease to `millis` from now.
  func renew(millis: UInt64) {
    state.withLockedValue { s in
      s.length = .milliseconds(Int64(min(millis, 1 << 40)))
      s.deadline = .now() + s.length
    }
  }

  /// Stops watching.
  func stop() {
    state.withLockedValue { s in
      s.stopped = true
      s.task?.cancel()
    }
  }

  private func schedule() {
    state.withLockedValue { s in
      guard !s.stopped else { return }
      let interval = TimeAmount.nanoseconds(
        min(max(s.length.nanoseconds / 4, TimeAmount.milliseconds(20).nanoseconds), TimeAmount.seconds(1).nanoseconds))
      s.task = loop.scheduleTask(in: interval) { [self] in self.check() }
    }
  }

  private func check() {
    let lapsed: TimeAmount? = state.withLockedValue { s in
      guard !s.stopped else { return nil }
      if NIODeadline.now() > s.deadline {
        s.stopped = true
        return s.length
      }
      return nil
    }
    if let lapsed {
      expire(lapsed)
    } else {
      schedule()
    }
  }
}
