/// `x % d` for a divisor fixed at run time, by a multiplication and shifts instead of a
/// hardware division (Granlund and Montgomery, "Division by invariant integers using
/// multiplication", 1994, figure 4.1): the generators take the remainder of every row's hash
/// by the key count, and a 64-bit division costs several times the rest of the row.
public struct Remainder: Sendable {
  public let divisor: UInt64
  @usableFromInline let multiplier: UInt64
  @usableFromInline let shift: UInt64
  /// `divisor - 1` when the divisor is a power of two (the remainder is a mask), else 0.
  @usableFromInline let mask: UInt64

  /// For `divisor` >= 1.
  public init(_ divisor: UInt64) {
    precondition(divisor >= 1, "a remainder by zero")
    self.divisor = divisor
    if divisor & (divisor - 1) == 0 {
      mask = divisor - 1
      multiplier = 0
      shift = 0
      return
    }
    mask = 0
    // l = ceil(log2 d), so 2^(l-1) < d < 2^l; m = floor(2^64 (2^l - d) / d) + 1, which the
    // quotient of a 128-bit by 64-bit division gives (it fits: 2^l - d < d).
    let l = UInt64(64 - (divisor - 1).leadingZeroBitCount)
    let high = l == 64 ? 0 &- divisor : (UInt64(1) << l) &- divisor
    multiplier = divisor.dividingFullWidth((high: high, low: 0)).quotient &+ 1
    shift = l - 1
  }

  /// `x % divisor`.
  @inlinable @inline(__always)
  public func of(_ x: UInt64) -> UInt64 {
    if multiplier == 0 { return x & mask }
    let t = multiplier.multipliedFullWidth(by: x).high
    let q = (t &+ ((x &- t) >> 1)) >> shift
    return x &- q &* divisor
  }
}
