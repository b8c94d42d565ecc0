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
  private struct State {
    var kept = KeptForReaders<Key, PackedSection>()
    var bytes = 0
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
    if let kept = state.withLock({ $0.kept.take(key, total: &$0.bytes) }) {
      section = kept
    } else {
      section = try file.readSections(p..<(p + 1)).packedSection(key.section)
      let left = file.partitions(inSection: key.section).filter { $0 != p && !file.isEmpty($0) }.count
      state.withLock {
        $0.kept.keep(section, bytes: section.byteCount, left: left, as: key, limit: limit, total: &$0.bytes)
      }
    }
    let rows = section.rows(of: p)
    return rows.isEmpty ? [] : [rows.count == section.frame.count ? section.frame : section.frame.slice(rows)]
  }

  /// Lets go of the sections of `outputs`.
  func drop(_ outputs: [OutputRef]) {
    let gone = Set(outputs)
    state.withLock { $0.kept.removeAll(where: { gone.contains($0.output) }, total: &$0.bytes) }
  }
}
