import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// The lines of text files as a one-column slice of strings (without their line endings).
///
/// Every file is cut into `shards` byte ranges; shard `s` reads the lines that start in range
/// `s` of each file, so the shards split the work without reading anything twice. Lines are
/// copied straight from the read buffer into the column (no `String` per line).
///
/// A gzip or zstd file (recognised by its first bytes, not its name) is decompressed as it is
/// read, by ISA-L or zstd; it cannot be cut, so file `i` of `paths` goes whole to shard
/// `i % shards`.
/// - Throws (when run): `SliceIOError.io` naming a file that cannot be opened or read;
///   `SliceIOError.compressed` naming a compressed file and the byte where it is corrupt or
///   ends too soon.
public func scanReader(
  _ shards: Int, paths: [String], file: StaticString = #fileID, line: UInt = #line
) -> Slice<String> {
  let node = SliceNode(
    op: "scan", location: location(file, line), schema: Schema([.string]), shards: max(shards, 1), deps: [],
    problem: shards < 1 ? .invalidArgument("scanReader needs at least 1 shard, got \(shards)") : nil
  ) { shard, _, _ in
    var pending = paths.enumerated()[...]
    var current: LineRangeReader? = nil
    return FunctionReader {
      while true {
        if current == nil {
          guard let (index, path) = pending.popFirst() else { return nil }
          current = try LineRangeReader(path: path, shard: shard, of: shards, fileIndex: index)
        }
        if let frame = try current!.next(rows: Frame.defaultRows) { return frame }
        current = nil
      }
    }
  }
  return Slice(node)
}
