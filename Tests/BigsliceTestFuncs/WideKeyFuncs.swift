import Bigslice
import Frame

/// Funcs whose keys are two or three columns (`prefixed(p)`) and whose built-in reduces fold
/// several value columns: the shapes of issue 19's property tests. Registered with the other
/// test funcs, in the test process and the worker binary alike.
public enum WideKeyFuncs {
  static func register() {
    _ =
      [
        sumThreeKeysTwoValues, maxTwoKeysThreeValues, minOneKeyThreeValues, closureTwoKeys, closureThreeKeys,
        closureBoxedAndIntKey, foldTwoKeys, cogroupTwoKeys, cogroupThreeKeys, distinctTwoKeys, reshuffleTwoKeys,
        sortedTwoKeys,
      ] as [AnyObject]
  }

  /// Key (String, Int, Bool), values (Int, Double) summed.
  public static let sumThreeKeysTwoValues = Func("wide.sum3x2") {
    (shards: Int, a: [String], b: [Int], c: [Bool], x: [Int], y: [Double]) in
    const(shards, a, b, c, x, y).prefixed(3).reduce(.sum)
  }
  /// Key (Int, Double), values (Int, Double, Int): the maximum of each.
  public static let maxTwoKeysThreeValues = Func("wide.max2x3") {
    (shards: Int, a: [Int], b: [Double], x: [Int], y: [Double], z: [Int]) in
    const(shards, a, b, x, y, z).prefixed(2).reduce(.max)
  }
  /// Key Int, values (Int, Double, Int): the minimum of each.
  public static let minOneKeyThreeValues = Func("wide.min1x3") {
    (shards: Int, a: [Int], x: [Int], y: [Double], z: [Int]) in
    const(shards, a, x, y, z).reduce(.min)
  }
  /// Key (Int, String), a closure over Int values.
  public static let closureTwoKeys = Func("wide.closure2") { (shards: Int, a: [Int], b: [String], v: [Int]) in
    const(shards, a, b, v).prefixed(2).reduce { $0 &+ $1 }
  }
  /// Key (Bool, String, Int), a closure over String values (the largest).
  public static let closureThreeKeys = Func("wide.closure3") {
    (shards: Int, a: [Bool], b: [String], c: [Int], v: [String]) in
    const(shards, a, b, c, v).prefixed(3).reduce { max($0, $1) }
  }
  /// Key (Pair, Int), where `Pair` is boxed: grouped by sorting, not by the C table.
  public static let closureBoxedAndIntKey = Func("wide.closureBoxed") {
    (shards: Int, a: [Int], b: [String], c: [Int], v: [Int]) -> Slice<Pair, Int, Int> in
    const(shards, a, b, c, v).map { (a: Int, b: String, c: Int, v: Int) -> (Pair, Int, Int) in
      (Pair(a: a, b: b), c, v)
    }.prefixed(2).reduce { $0 &+ $1 }
  }
  /// Key (Int, Bool): each key's values as a list, in arrival order (one input shard makes
  /// that order the input's).
  public static let foldTwoKeys = Func("wide.fold2") { (shards: Int, a: [Int], b: [Bool], v: [Int]) in
    const(1, a, b, v).reshard(shards).prefixed(2).fold([Int]()) { $0 + [$1] }
  }
  /// Two inputs keyed on (Int, String).
  public static let cogroupTwoKeys = Func("wide.cogroup2") {
    (shards: Int, ka: [Int], kb: [String], va: [Int], kc: [Int], kd: [String], vb: [Double]) in
    cogroup(const(shards, ka, kb, va).prefixed(2), const(max(1, shards / 2), kc, kd, vb).prefixed(2))
  }
  /// Three inputs keyed on (Int, Bool, String), cut from the same rows: all of them, the first
  /// half, and every third row with its value negated.
  public static let cogroupThreeKeys = Func("wide.cogroup3") {
    (shards: Int, a: [Int], b: [Bool], c: [String], v: [Int]) in
    let half = a.count / 2
    let thirds = Array(stride(from: 0, to: a.count, by: 3))
    return cogroup(
      const(shards, a, b, c, v).prefixed(3),
      const(shards, Array(a[..<half]), Array(b[..<half]), Array(c[..<half]), Array(v[..<half])).prefixed(3),
      const(
        max(1, shards - 1), thirds.map { a[$0] }, thirds.map { b[$0] }, thirds.map { c[$0] }, thirds.map { -v[$0] }
      ).prefixed(3))
  }
  /// Distinct rows of three columns keyed on the first two.
  public static let distinctTwoKeys = Func("wide.distinct2") { (shards: Int, a: [Int], b: [String], c: [Int]) in
    const(shards, a, b, c).prefixed(2).distinct()
  }
  /// Rows reshuffled by a (String, Int) key.
  public static let reshuffleTwoKeys = Func("wide.reshuffle2") { (shards: Int, a: [String], b: [Int], c: [Int]) in
    const(shards, a, b, c).prefixed(2).reshuffle()
  }
  /// Rows sorted by an (Int, String) key.
  public static let sortedTwoKeys = Func("wide.sorted2") { (shards: Int, a: [Int], b: [String], c: [Int]) in
    const(shards, a, b, c).prefixed(2).sorted()
  }
}
