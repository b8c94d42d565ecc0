import Frame
import SliceIO
import Synchronization

/// The packed sections of a machine's stored outputs, decoded, kept until each of their
/// partitions holding rows has been read once, by a task here or by another machine. A
/// many-way shuffle packs an upstream output's small partitions into a few sections; without
/// this, reading each of a section's partitions would decode the whole section again, a cost
/// that grows with the square of the shard count. What is kept takes at most `limit` bytes; a
/// section that does not fit when first decoded is decoded for each of its partitions alone.
final class PackedSections: @unchecked Sendable {
  private struct Key: Hashable {
    let output: OutputRef
    let section: Int
  }
  private struct Kept {
    let section: PackedSection
    var left: Int
  }
  private struct State {
    var kept: [Key: Kept] = [:]
    var bytes = 0
    /// Sections decoded and not kept (no room): some of their partitions are read already,
    /// so they are never kept later, when their count of partitions left would be wrong.
    var passed: Set<Key> = []
  }
  private let state = Mutex(State())
  let limit: Int

  init(limit: Int) { self.limit = limit }

  /// The bytes kept.
  var bytes: Int { state.withLock { $0.bytes } }

  /// The rows of partition `p`, which `file` (the output `output`) holds in a packed section.
  /// - Throws: what reading or decoding the file throws.
  func frames(_ file: ShuffleFile, of output: OutputRef, partition p: Int) throws -> [Frame] {
    if file.isEmpty(p) { return [] }
    let key = Key(output: output, section: file.section(of: p))
    let section: PackedSection
    if let kept = take(key) {
      section = kept
    } else {
      section = try file.readSections(p..<(p + 1)).packedSection(key.section)
      let left = file.partitions(inSection: key.section).filter { $0 != p && !file.isEmpty($0) }.count
      keep(section, left: left, as: key)
    }
    let rows = section.rows(of: p)
    return rows.isEmpty ? [] : [rows.count == section.frame.count ? section.frame : section.frame.slice(rows)]
  }

  /// Lets go of the sections of `outputs`.
  func drop(_ outputs: [OutputRef]) {
    let gone = Set(outputs)
    state.withLock { s in
      for (key, kept) in s.kept where gone.contains(key.output) {
        s.kept[key] = nil
        s.bytes -= kept.section.byteCount
      }
      s.passed = s.passed.filter { !gone.contains($0.output) }
    }
  }

  /// The section `key` names, with one more of its partitions taken (it goes once all are).
  private func take(_ key: Key) -> PackedSection? {
    state.withLock { s in
      guard var kept = s.kept[key] else { return nil }
      kept.left -= 1
      if kept.left == 0 {
        s.kept[key] = nil
        s.bytes -= kept.section.byteCount
      } else {
        s.kept[key] = kept
      }
      return kept.section
    }
  }

  /// Keeps `section`, just decoded for one of its partitions, for its `left` others if it fits.
  /// When another reader decoded and kept it meanwhile, this partition is taken from that one.
  private func keep(_ section: PackedSection, left: Int, as key: Key) {
    if take(key) != nil { return }
    state.withLock { s in
      guard left > 0, s.kept[key] == nil, !s.passed.contains(key) else { return }
      guard s.bytes + section.byteCount <= limit else {
        s.passed.insert(key)
        return
      }
      s.kept[key] = Kept(section: section, left: left)
      s.bytes += section.byteCount
    }
  }
}
