import Bigslice
import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// A boxed key type: Codable and hashable, and registered with `BoxedOps` (`TestFuncs.register`),
/// so stored as a boxed column instead of a record.
public struct Pair: Codable, Hashable, Sendable {
  public var a: Int
  public var b: String
  public init(a: Int, b: String) {
    self.a = a
    self.b = b
  }
}

/// The funcs of the combinator tests. The test process and the `bigslice-testworker` binary
/// it runs as local machines both register them (`TestFuncs.register()`) before any session
/// starts, so their registries agree. Each takes its data as arguments: a machine builds the
/// same slices from the same arguments.
public enum TestFuncs {
  /// Registers every func (Swift globals are made lazily: touching them registers them).
  public static func register() {
    BoxedOps.register(Pair.self)
    ChaosFuncs.register()
    WideKeyFuncs.register()
    RecordFuncs.register()
    DelimitedFuncs.register()
    _ =
      [
        constPairs, mapFilterFlatMap, rowShapes, head, reduceClosure, reduceSum, reduceMax, countWords, reduceBoxed,
        reshuffle,
        reshard, repartition, readerFunc, split, fields, cogroup2, cogroup3, foldLists, writerFunc, distinct, sorted,
        failing, flaky, slow, needsFile, rendezvous, unstable,
        resultRegrouped, resultsJoined, resultRowsInBody,
      ] as [AnyObject]
  }

  /// Funcs of earlier results: the values of `result` regrouped by `key % modulus`, scaled
  /// and summed.
  public static let resultRegrouped = Func("test.resultRegrouped") {
    (result: SliceResult<Int, Int>, modulus: Int, factor: Int) -> Slice<Int, Int> in
    result.slice.map { (key: Int, value: Int) -> (Int, Int) in (key % modulus, value * factor) }.reduce(+)
  }
  /// Two results joined by key: each key's pair of values.
  public static let resultsJoined = Func("test.resultsJoined") {
    (a: SliceResult<Int, Int>, b: SliceResult<Int, Int>) -> Slice<Int, [Int], [Int]> in cogroup(a.slice, b.slice)
  }
  /// Reads its result argument's rows in the body: allowed in-process, refused on machines.
  public static let resultRowsInBody = Func("test.resultRowsInBody") { (result: SliceResult<Int, Int>) -> Slice<Int> in
    const(1, [(try? result.count) ?? -1])
  }

  public static let constPairs = Func("test.const") { (shards: Int, k: [Int], v: [Int]) in const(shards, k, v) }

  public static let mapFilterFlatMap = Func("test.mapFilterFlatMap") {
    (shards: Int, k: [Int], v: [Int]) -> Slice<String, Int> in
    let mapped: Slice<String, Int, Double> = const(shards, k, v)
      .map { (key: Int, value: Int) -> (String, Int, Double) in (String(key), value * 2, Double(value)) }
    let filtered = mapped.filter { (_: String, doubled: Int, _: Double) in doubled % 3 != 0 }
    return filtered.flatMap(String.self, Int.self) {
      (out: RowEmitter<String, Int>, key: String, doubled: Int, _: Double) in
      for i in 0..<(abs(doubled) % 3) { out.emit(key, i) }
    }
  }

  /// Rows through the typed map, filter and flatMap overloads (one to three columns in and
  /// out, with no type annotations on the result or type tokens) and the variadic map (four
  /// columns): every kind of column, strings, doubles, bools and arrays among them.
  public static let rowShapes = Func("test.rowShapes") { (shards: Int, words: [String], numbers: [Int]) in
    let halves = const(shards, words, numbers)
      .map { (word: String, n: Int) in (word, n, Double(n) / 2) }
      .filter { (word: String, n: Int, _: Double) in n % 5 != 0 || word.isEmpty }
    let four = halves.map { (word: String, n: Int, half: Double) in (word.count, [n, n * 2], half > 10, word + "!") }
    let three = four.map { (length: Int, pair: [Int], big: Bool, loud: String) in (loud, pair[1] + length, big) }
    let pairs = three.flatMap { (out: RowEmitter<String, Int>, loud: String, value: Int, big: Bool) in
      for i in 0..<(big ? 2 : 1) { out.emit(loud, value + i) }
    }
    return pairs.filter { (_: String, value: Int) in value % 7 != 3 }
      .flatMap { (out: RowEmitter<String>, loud: String, value: Int) in out.emit("\(loud)\(value)") }
      .map { (text: String) in text.uppercased() }
  }

  public static let head = Func("test.head") { (shards: Int, values: [Int], n: Int) in const(shards, values).head(n) }

  public static let reduceClosure = Func("test.reduceClosure") { (shards: Int, k: [Int], v: [Int]) in
    const(shards, k, v).reduce(+)
  }
  public static let reduceSum = Func("test.reduceSum") { (shards: Int, k: [Int], v: [Int]) in
    const(shards, k, v).reduce(.sum)
  }
  public static let reduceMax = Func("test.reduceMax") { (shards: Int, k: [Int], v: [Int]) in
    const(shards, k, v).reduce(.max)
  }
  public static let countWords = Func("test.countWords") { (shards: Int, words: [String]) in
    const(shards, words).count()
  }
  public static let reduceBoxed = Func("test.reduceBoxed") { (shards: Int, keys: [Pair], ones: [Int]) in
    const(shards, keys, ones).reduce(+)
  }
  public static let reshuffle = Func("test.reshuffle") { (shards: Int, k: [Int], v: [Int]) in
    const(shards, k, v).reshuffle()
  }
  public static let reshard = Func("test.reshard") { (shards: Int, k: [Int], v: [Int], to: Int) in
    const(shards, k, v).reshard(to)
  }
  public static let repartition = Func("test.repartition") { (shards: Int, values: [Int]) in
    const(shards, values).repartition { n, v in v % n }
  }
  public static let readerFunc = Func("test.readerFunc") { (shards: Int) -> Slice<Int, Int> in
    Bigslice.readerFunc(shards, initial: { shard in shard * 1000 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) in
      let end = shard * 1000 + 250
      for _ in 0..<100 where next < end {
        out.emit(shard, next)
        next += 1
      }
      return next < end
    }
  }
  public static let split = Func("test.split") { (shards: Int, lines: [String], separator: String) in
    const(shards, lines).split(separator: separator.unicodeScalars.first!)
  }
  /// Words split at ASCII whitespace.
  public static let fields = Func("test.fields") { (shards: Int, lines: [String]) in const(shards, lines).split() }
  public static let cogroup2 = Func("test.cogroup2") {
    (shards: Int, ka: [Int], va: [Int], kb: [Int], vb: [String]) -> Slice<Int, [Int], [String]> in
    Bigslice.cogroup(const(shards, ka, va), const(max(1, shards / 2), kb, vb))
  }
  public static let cogroup3 = Func("test.cogroup3") {
    (shards: Int, ka: [Int], va: [Int], kb: [Int], vb: [Int]) -> Slice<Int, [Int], [Int], [String]> in
    Bigslice.cogroup(const(shards, ka, va), const(shards, kb, vb), const(1, [1, 1, 999], ["x", "y", "z"]))
  }
  public static let foldLists = Func("test.fold") { (shards: Int, keys: [Int], values: [Int]) -> Slice<Int, [Int]> in
    // One input shard keeps arrival order well defined: rows of a key arrive in input order.
    let input: Slice<Int, Int> = const(1, keys, values).reshard(shards)
    return input.fold([Int]()) { (acc: [Int], v: Int) in acc + [v] }
  }
  /// Passes the rows through, counting in the metrics `rows` (rows seen), `bad` (rows whose
  /// string is not "v" and the number) and `ends` (shards ended without an error).
  public static let writerFunc = Func("test.writerFunc") { (shards: Int, values: [Int]) in
    const(shards, values, values.map { "v\($0)" }).writerFunc(initial: { _ in 0 }) {
      (shard: Int, rows: inout Int, batch: RowBatch<Int, String>?, error: Error?) in
      let context = TaskContext.current
      if let batch {
        for i in 0..<batch.count where batch[i].1 != "v\(batch[i].0)" { context?.increment("bad") }
        rows += batch.count
      } else if error == nil {
        context?.increment("rows", by: rows)
        context?.increment("ends")
      }
    }
  }
  public static let distinct = Func("test.distinct") { (shards: Int, k: [Int], v: [Int]) in
    const(shards, k, v).distinct()
  }
  public static let sorted = Func("test.sorted") { (shards: Int, k: [Int], v: [Int]) in
    const(shards, k, v).sorted()
  }
  /// Fails in its map for the value `poison`.
  public static let failing = Func("test.failing") { (shards: Int, values: [Int], poison: Int) -> Slice<Int> in
    const(shards, values).map { (v: Int) throws -> Int in
      if v == poison { throw TestFailure(value: v) }
      return v
    }
  }
}

extension TestFuncs {
  /// `shards` shards of 10 rows each (shard s holds s * 10 ..< s * 10 + 10); shard 1 counts
  /// its attempts in the file `attempts` (a byte appended per attempt, so every process sees
  /// them) and fails its first `failures` attempts with a `FlakyFailure`, wrapped in
  /// `Temporary` when `temporary`.
  public static let flaky = Func("test.flaky") {
    (shards: Int, failures: Int, temporary: Bool, attempts: String) -> Slice<Int> in
    Bigslice.readerFunc(shards, initial: { _ in 0 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int>) throws -> Bool in
      if shard == 1, next == 0 {
        let attempt = try FlakyFailure.count(attempts)
        if attempt <= failures {
          let failure = FlakyFailure(attempt: attempt)
          throw temporary ? Temporary(failure) as Error : failure
        }
      }
      while next < 10 {
        out.emit(shard * 10 + next)
        next += 1
      }
      return false
    }
  }
}

extension TestFuncs {
  /// `shards` shards of `rows` rows of (shard, row), one row a call and `micros` µs a row,
  /// summed by shard.
  public static let slow = Func("test.slow") { (shards: Int, rows: Int, micros: Int) -> Slice<Int, Int> in
    Bigslice.readerFunc(shards, initial: { _ in 0 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) -> Bool in
      usleep(UInt32(micros))
      out.emit(shard, next)
      next += 1
      return next < rows
    }.reduce(.sum)
  }
}

extension TestFuncs {
  /// `shards` shards of 100 keys each (shard s holds s * 100 ..< s * 100 + 100), each key
  /// counted 3 times, summed by key over `shards` shards; every map task fails with
  /// `MissingInput` unless the file at `path` exists (an input that can be deleted).
  public static let needsFile = Func("test.needsFile") { (shards: Int, path: String) -> Slice<Int, Int> in
    Bigslice.readerFunc(shards, initial: { _ in 0 }) {
      (shard: Int, next: inout Int, out: RowEmitter<Int, Int>) throws -> Bool in
      guard access(path, F_OK) == 0 else { throw MissingInput(path: path) }
      for _ in 0..<3 { out.emit(shard * 100 + next, 1) }
      next += 1
      return next < 100
    }.reduce(.sum)
  }
}

extension TestFuncs {
  /// One shard of one row: its task makes the file `make`, then waits up to 20 s for the file
  /// `wait`, which another run makes: two runs of it, each waiting for the other's file, end
  /// only if they run at the same time.
  public static let rendezvous = Func("test.rendezvous") { (make: String, wait: String) -> Slice<Int> in
    Bigslice.readerFunc(1, initial: { _ in 0 }) { (_: Int, _: inout Int, out: RowEmitter<Int>) throws -> Bool in
      close(open(make, O_WRONLY | O_CREAT, 0o644))
      var waited = 0
      while access(wait, F_OK) != 0 {
        guard waited < 20_000 else { throw MissingInput(path: wait) }
        usleep(1_000)
        waited += 1
      }
      out.emit(1)
      return false
    }
  }
}

extension TestFuncs {
  /// `shards` shards of `rows` rows (key, value), 10,000 a call, keys shard * rows + i, values
  /// that do not compress; unless `deterministic`, each computation of a shard (counted in the
  /// file `attempts`) adds its attempt number to the values, so a shard computed again gives
  /// other rows.
  public static let unstable = Func("test.unstable") {
    (shards: Int, rows: Int, deterministic: Bool, attempts: String) -> Slice<Int, Int> in
    Bigslice.readerFunc(shards, initial: { _ in (next: 0, attempt: 0) }) {
      (shard: Int, state: inout (next: Int, attempt: Int), out: RowEmitter<Int, Int>) throws -> Bool in
      if state.next == 0, !deterministic { state.attempt = try FlakyFailure.count(attempts) }
      let end = min(state.next + 10_000, rows)
      while state.next < end {
        let key = shard * rows + state.next
        out.emit(key, TestFuncs.scramble(key) &+ state.attempt)
        state.next += 1
      }
      return state.next < rows
    }
  }

  /// A value of `key` that looks random (SplitMix64's finaliser).
  public static func scramble(_ key: Int) -> Int {
    var z = UInt64(bitPattern: Int64(key)) &+ 0x9e37_79b9_7f4a_7c15
    z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
    z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
    return Int(bitPattern: UInt(z ^ (z >> 31)))
  }
}

/// The error `TestFuncs.needsFile` throws.
public struct MissingInput: Error, CustomStringConvertible {
  public let path: String
  public var description: String { "the input \(path) is gone" }
}

/// The error `TestFuncs.flaky` throws.
public struct FlakyFailure: Error, CustomStringConvertible {
  public let attempt: Int
  public init(attempt: Int) { self.attempt = attempt }
  public var description: String { "flaky attempt \(attempt)" }

  /// Appends an attempt to the file at `path` and returns how many it holds now.
  static func count(_ path: String) throws -> Int {
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
    guard fd >= 0 else { throw FlakyFailure(attempt: -1) }
    defer { close(fd) }
    var byte: UInt8 = 1
    guard write(fd, &byte, 1) == 1 else { throw FlakyFailure(attempt: -1) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw FlakyFailure(attempt: -1) }
    return Int(info.st_size)
  }
}

/// The error `TestFuncs.failing` throws.
public struct TestFailure: Error, CustomStringConvertible {
  public let value: Int
  public var description: String { "poisoned value \(value)" }
}
