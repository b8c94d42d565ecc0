import Bigslice
import Frame

/// The workloads of BENCHMARKS.md as bigslice funcs. Data is generated inside the job, by
/// `readerFunc`, so our times include generation; the peers' query times do not.
public enum Workloads {
  /// Registers every workload func (and the word count's): a program that runs them on
  /// machines calls this before its first session, in the driver and the workers alike.
  public static func register() {
    _ =
      [
        w1, w1Closure, w1TwoColumns, w1StructKey, w1CodableKey, w2, w3, w4, w7, skewedJoin, WordCount.job,
        DelimitedW6.job,
      ] as [AnyObject]
  }

  /// Rows `[shard * rows / shards, (shard + 1) * rows / shards)` of the (key, value) table
  /// with `seed` and `keys` distinct keys.
  public static func table(rows: Int, keys: Int, seed: UInt64, shards: Int) -> Slice<Int, Int> {
    let remainder = Remainder(UInt64(keys))
    return readerFunc(shards, initial: { shard in shard * rows / shards }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      let end = (shard + 1) * rows / shards
      let stop = min(next + Frame.defaultRows, end)
      while next < stop {
        let (key, value) = row(next, keys: remainder, seed: seed)
        out.emit(key, value)
        next += 1
      }
      return next < end
    }
  }

  /// Row `i` of the (key, value) table with `seed` and `keys` distinct keys.
  @inline(__always)
  public static func row(_ i: Int, keys: Int, seed: UInt64) -> (key: Int, value: Int) {
    let x = UInt64(i) &+ seed
    return (Int(splitmix64(x) % UInt64(keys)), Int(splitmix64(x &+ (1 << 40)) % 1000))
  }

  /// `row(i, keys:seed:)`, with the key count as a `Remainder` made once per table.
  @inlinable @inline(__always)
  public static func row(_ i: Int, keys: Remainder, seed: UInt64) -> (key: Int, value: Int) {
    let x = UInt64(i) &+ seed
    return (Int(keys.of(splitmix64(x))), Int(splitmix64(x &+ (1 << 40)) % 1000))
  }

  public static let w1 = Func("bench.W1") { (rows: Int, keys: Int, shards: Int) in
    table(rows: rows, keys: keys, seed: 0, shards: shards).reduce(.sum)
  }

  public static let w1Closure = Func("bench.W1.closure") { (rows: Int, keys: Int, shards: Int) in
    table(rows: rows, keys: keys, seed: 0, shards: shards).reduce { $0 &+ $1 }
  }

  /// W1 with its key split into two columns, `(key / 1024, key % 1024)`, grouped on both.
  public static let w1TwoColumns = Func("bench.W1.twoColumns") { (rows: Int, keys: Int, shards: Int) in
    let remainder = Remainder(UInt64(keys))
    return readerFunc(shards, initial: { shard in shard * rows / shards }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int, Int>) in
      let end = (shard + 1) * rows / shards
      let stop = min(next + Frame.defaultRows, end)
      while next < stop {
        let (key, value) = row(next, keys: remainder, seed: 0)
        out.emit(key >> 10, key & 1023, value)
        next += 1
      }
      return next < end
    }.prefixed(2).reduce(.sum)
  }

  /// W1's key as a user struct of two Ints, stored as two columns.
  public struct Key: ColumnRecord {
    public var high: Int
    public var low: Int
    public static let columns = RecordColumns(Key.init(high:low:), \.high, \.low)
    public init(high: Int, low: Int) {
      self.high = high
      self.low = low
    }
  }

  /// W1 keyed on a struct, `Key(high: key / 1024, low: key % 1024)`: the two-column key as a
  /// user writes it.
  public static let w1StructKey = Func("bench.W1.structKey") { (rows: Int, keys: Int, shards: Int) in
    table(rows: rows, keys: keys, shards: shards) { Key(high: $1 >> 10, low: $1 & 1023) }.reduce(.sum)
  }

  /// The (key, value) table with `seed`, the key of row `i` made a `K` by `key(i, key)`.
  static func table<K: Hashable & Sendable>(
    rows: Int, keys: Int, seed: UInt64 = 0, shards: Int, _ key: @escaping @Sendable (Int, Int) -> K
  ) -> Slice<K, Int> {
    let remainder = Remainder(UInt64(keys))
    return readerFunc(shards, initial: { shard in shard * rows / shards }) {
      (shard: Int, next: inout Int, out: RowEmitter<K, Int>) in
      let end = (shard + 1) * rows / shards
      let stop = min(next + Frame.defaultRows, end)
      while next < stop {
        let (k, value) = row(next, keys: remainder, seed: seed)
        out.emit(key(next, k), value)
        next += 1
      }
      return next < end
    }
  }

  /// W1's key as a plain `Codable` struct of two Ints: a record found by probing its decoding.
  public struct CodableKey: Codable, Hashable, Sendable {
    public var high: Int
    public var low: Int
    public init(high: Int, low: Int) {
      self.high = high
      self.low = low
    }
  }

  /// W1 keyed on a plain `Codable` struct, with no `ColumnRecord` conformance.
  public static let w1CodableKey = Func("bench.W1.codableKey") { (rows: Int, keys: Int, shards: Int) in
    table(rows: rows, keys: keys, shards: shards) { CodableKey(high: $1 >> 10, low: $1 & 1023) }.reduce(.sum)
  }

  /// W7's closures: W1's rows mapped to a key of 1000 groups and a scaled value, those whose
  /// value is a multiple of 7 dropped, the rest mapped to a `Double`. The benchmark runs them
  /// through the engine and in a plain loop.
  public enum W7 {
    @inlinable public static func first(_ key: Int, _ value: Int) -> (Int, Int) { (key % 1000, value &* 3 &+ 1) }
    @inlinable public static func keep(_ key: Int, _ value: Int) -> Bool { value % 7 != 0 }
    @inlinable public static func second(_ key: Int, _ value: Int) -> (Int, Double) { (key, Double(value) * 0.5) }
  }

  /// W7: W1's rows through `map` → `filter` → `map` closures, then the built-in sum per key.
  public static let w7 = Func("bench.W7") { (rows: Int, keys: Int, shards: Int) in
    table(rows: rows, keys: keys, seed: 0, shards: shards)
      .map { (key: Int, value: Int) in W7.first(key, value) }
      .filter { (key: Int, value: Int) in W7.keep(key, value) }
      .map { (key: Int, value: Int) in W7.second(key, value) }
      .reduce(.sum)
  }

  public static let w4 = Func("bench.W4") { (rows: Int, keys: Int, shards: Int) in
    table(rows: rows, keys: keys, seed: 0, shards: shards).reduce(.sum)
  }

  /// W2: keys `splitmix64(i) >> 1` for i in 0..<rows, sorted.
  public static let w2 = Func("bench.W2") { (rows: Int, shards: Int) in
    readerFunc(shards, initial: { shard in shard * rows / shards }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int>) in
      let end = (shard + 1) * rows / shards
      let stop = min(next + Frame.defaultRows, end)
      while next < stop {
        out.emit(Int(splitmix64(UInt64(next)) >> 1))
        next += 1
      }
      return next < end
    }.sorted()
  }

  /// W3's join with one hot key: in each input, a row goes to key 0 with probability
  /// `hotPercent` / 100, else to one of `keys` keys as in W1. The cogroup row of key 0 holds
  /// every one of its rows, however many: the one group a memory limit cannot split.
  public static let skewedJoin = Func("bench.skewedJoin") {
    (rows: Int, keys: Int, hotPercent: Int, shards: Int) -> Slice<Int, [Int], [Int]> in
    func input(_ seed: UInt64) -> Slice<Int, Int> {
      table(rows: rows, keys: keys, seed: seed, shards: shards) { i, key in
        Int(splitmix64(UInt64(i) &+ seed &+ (1 << 41)) % 100) < hotPercent ? 0 : key
      }
    }
    return cogroup(input(0), input(1 << 50))
  }

  public static let w3 = Func("bench.W3") { (rows: Int, keys: Int, shards: Int) -> Slice<Int, [Int], [Int]> in
    cogroup(
      table(rows: rows, keys: keys, seed: 0, shards: shards),
      table(rows: rows, keys: keys, seed: 1 << 50, shards: shards))
  }
}
