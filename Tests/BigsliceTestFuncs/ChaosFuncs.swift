import Bigmachine
import Bigslice
import Frame
import Synchronization
import Workloads

#if canImport(Glibc)
  import Glibc
#endif

/// Where a chaos func kills the worker process running it: the first task to reach the point
/// (in any process) takes `marker` (made with `O_EXCL`, so exactly one does) and sends itself
/// SIGKILL. In the driver's own process, and once the marker exists, nothing happens.
public enum ChaosPoint: String, Codable, Sendable {
  /// Never.
  case none
  /// Half-way through generating the last map shard, when the other map tasks have run.
  case map
  /// In the last reduce shard, once it has read all its input and emits its first row.
  case reduce
}

public enum ChaosFuncs {
  public static func register() { _ = [reduce, cogroup, suicide, sortedUnstable] as [AnyObject] }

  /// `rows` keys on `shards` shards, sorted; each computation of a map shard (counted in the
  /// file `attempts`) draws other keys, and the last sorted shard's task dies at its first row
  /// (once, in a worker): the map outputs on its machine are computed again, with other
  /// samples than the first.
  public static let sortedUnstable = Func("chaos.sortedUnstable") {
    (rows: Int, shards: Int, marker: String, attempts: String) -> Slice<Int, Int> in
    let source = readerFunc(shards, initial: { _ in (next: 0, attempt: -1) }) {
      (shard: Int, state: inout (next: Int, attempt: Int), out: RowEmitter<Int, Int>) throws -> Bool in
      if state.attempt < 0 { state.attempt = try FlakyFailure.count(attempts) }
      let end = (shard + 1) * rows / shards
      if state.next == 0 { state.next = shard * rows / shards }
      while state.next < end {
        out.emit(TestFuncs.scramble(state.next &* 31 &+ state.attempt) >> 20, shard)
        state.next += 1
      }
      return false
    }
    return killing(source.sorted(), .reduce, marker)
  }

  /// W1's shape: `rows` generated rows of `keys` keys summed by key, on `shards` shards.
  public static let reduce = Func("chaos.reduce") {
    (rows: Int, keys: Int, shards: Int, kill: ChaosPoint, marker: String) -> Slice<Int, Int> in
    killing(
      table(rows: rows, keys: keys, seed: 0, shards: shards, kill: kill, marker: marker).reduce(.sum), kill, marker)
  }

  /// W3's shape, counted: per key of two generated tables, the rows and value sums on each
  /// side (`keys` keys, `rows` rows each).
  public static let cogroup = Func("chaos.cogroup") {
    (rows: Int, keys: Int, shards: Int, kill: ChaosPoint, marker: String) -> Slice<Int, Int, Int, Int, Int> in
    let a = table(rows: rows, keys: keys, seed: 0, shards: shards, kill: kill, marker: marker)
    let b = table(rows: rows, keys: keys, seed: 1 << 50, shards: shards, kill: .none, marker: marker)
    let grouped: Slice<Int, [Int], [Int]> = Bigslice.cogroup(a, b)
    let counted: Slice<Int, Int, Int, Int, Int> = grouped.map {
      (key: Int, va: [Int], vb: [Int]) -> (Int, Int, Int, Int, Int) in
      (key, va.count, va.reduce(0, +), vb.count, vb.reduce(0, +))
    }
    return killing(counted, kill, marker)
  }

  /// Kills the worker running it, every time: its one task can never finish.
  public static let suicide = Func("chaos.suicide") { (shards: Int) -> Slice<Int> in
    const(shards, Array(0..<(shards * 10))).map { (v: Int) -> Int in
      if Bigmachine.isWorker { kill(getpid(), SIGKILL) }
      return v
    }
  }

  /// `Workloads.table`, whose last shard dies half-way when `kill` is `.map`.
  private static func table(
    rows: Int, keys: Int, seed: UInt64, shards: Int, kill: ChaosPoint, marker: String
  ) -> Slice<Int, Int> {
    readerFunc(shards, initial: { shard in shard * rows / shards }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      let start = shard * rows / shards
      let end = (shard + 1) * rows / shards
      if kill == .map, shard == shards - 1, next - start >= (end - start) / 2 { dieOnce(marker) }
      let stop = min(next + Frame.defaultRows, end)
      while next < stop {
        let (key, value) = Workloads.row(next, keys: keys, seed: seed)
        out.emit(key, value)
        next += 1
      }
      return next < end
    }
  }

  /// Passes `slice` through; when `kill` is `.reduce`, the task of its last shard dies at
  /// its first row (a reduce has read all its input by then).
  private static func killing<each C>(
    _ slice: Slice<repeat each C>, _ kill: ChaosPoint, _ marker: String
  ) -> Slice<repeat each C> {
    guard kill == .reduce else { return slice }
    let last = slice.shards - 1
    return slice.map { (values: repeat each C) -> (repeat each C) in
      if TaskContext.current?.shard == last { dieOnce(marker) }
      return (repeat each values)
    }
  }

  /// In a worker process, SIGKILLs it if `marker` does not exist yet (and makes it).
  private static func dieOnce(_ marker: String) {
    guard Bigmachine.isWorker else { return }
    let fd = open(marker, O_CREAT | O_EXCL | O_WRONLY, 0o600)
    guard fd >= 0 else { return }
    close(fd)
    kill(getpid(), SIGKILL)
  }
}
