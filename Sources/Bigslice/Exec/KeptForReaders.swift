/// Values read for one of several readers (a file section for the tasks of its partitions),
/// kept for the others until each has taken its own, within a byte limit shared with other
/// such tables (`total`). A value read when there was no room is never kept later: some of its
/// readers were served already, so its count of readers left would be wrong and it would never
/// go.
struct KeptForReaders<Key: Hashable, Value> {
  private struct Kept {
    let value: Value
    let bytes: Int
    var left: Int
  }
  private var kept: [Key: Kept] = [:]
  private var passed: Set<Key> = []

  /// The value `key` names, with one more of its readers served (it goes once all are, and
  /// its bytes leave `total`).
  mutating func take(_ key: Key, total: inout Int) -> Value? {
    guard let index = kept.index(forKey: key) else { return nil }
    kept.values[index].left -= 1
    let value = kept.values[index].value
    if kept.values[index].left == 0 {
      total -= kept.values[index].bytes
      kept.remove(at: index)
    }
    return value
  }

  /// Keeps `value`, just read for one of its readers, for its `left` others if `total` stays
  /// within `limit`. When another reader read and kept it meanwhile, this reader is served
  /// from that one.
  mutating func keep(_ value: Value, bytes: Int, left: Int, as key: Key, limit: Int, total: inout Int) {
    if kept[key] != nil {
      _ = take(key, total: &total)
    } else if left > 0, !passed.contains(key) {
      guard total + bytes <= limit else {
        passed.insert(key)
        return
      }
      kept[key] = Kept(value: value, bytes: bytes, left: left)
      total += bytes
    }
  }

  /// Lets go of every value whose key `isGone` says, and forgets them.
  mutating func removeAll(where isGone: (Key) -> Bool, total: inout Int) {
    for (key, value) in kept where isGone(key) {
      kept[key] = nil
      total -= value.bytes
    }
    passed = passed.filter { !isGone($0) }
  }
}
