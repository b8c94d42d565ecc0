import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// Where a cached slice keeps its shards: one block file per shard, named
/// `prefix-SSSS-of-NNNN` (the original's layout).
struct CacheSpec: StoredShards {
  let prefix: String
  /// Reuse the shards whose files exist and compute only the others (`cachePartial`);
  /// otherwise the cache is used only when every shard's file exists (`cache`).
  let partial: Bool

  func path(shard: Int, of shards: Int) -> String {
    "\(prefix)-\(pad(shard))-of-\(pad(shards))"
  }

  /// For each shard, whether it is read from its file instead of computed.
  func available(shards: Int) -> [Bool] {
    let present = (0..<shards).map { access(path(shard: $0, of: shards), R_OK) == 0 }
    return partial || present.allSatisfy({ $0 }) ? present : Array(repeating: false, count: shards)
  }

  func reader(shard: Int, of shards: Int, schema: Schema) throws -> any Reader {
    try blockFileReader(path: path(shard: shard, of: shards), schema: schema)
  }

  private func pad(_ n: Int) -> String {
    let digits = String(n)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
  }
}

extension Slice {
  /// The same rows, kept in files under `prefix` (`prefix-0000-of-0004`, …): when every
  /// shard's file exists, the shards are read from them and nothing upstream is computed;
  /// otherwise every shard is computed and its file written as the rows pass by, atomically
  /// (a failed task leaves no file).
  ///
  /// The files are checksummed block files; a damaged one fails the job with an error naming
  /// the file and block.
  public func cache(_ prefix: String, file: StaticString = #fileID, line: UInt = #line) -> Slice<repeat each C> {
    cached(CacheSpec(prefix: prefix, partial: false), file: file, line: line)
  }

  /// Like `cache`, but each shard whose file exists is read from it and only the missing
  /// shards are computed (and written).
  public func cachePartial(_ prefix: String, file: StaticString = #fileID, line: UInt = #line) -> Slice<
    repeat each C
  > {
    cached(CacheSpec(prefix: prefix, partial: true), file: file, line: line)
  }

  private func cached(_ spec: CacheSpec, file: StaticString, line: UInt) -> Slice<repeat each C> {
    let schema = self.schema
    let shards = self.shards
    let node = SliceNode(
      op: "cache", location: location(file, line), schema: schema, shards: shards,
      deps: [Dependency(node: node, shuffle: false, partitioner: .hash)],
      problem: spec.prefix.isEmpty ? .invalidArgument("cache needs a path prefix") : nil
    ) { shard, deps, _ in
      let input = deps[0]
      let writer = try AtomicBlockFileWriter(path: spec.path(shard: shard, of: shards), schema: schema)
      return FunctionReader {
        if let frame = try input.read() {
          try writer.write(frame)
          return frame
        }
        try writer.commit()
        return nil
      }
    }
    node.stored = spec
    return Slice(node)
  }
}

/// The slice that `cache(prefix)` stored, read back: `shards` files `prefix-SSSS-of-NNNN`
/// of rows typed `C`. A missing file, or one of other column types, fails the job with an
/// error naming it.
public func readCache<each C>(
  _ types: repeat (each C).Type, shards: Int, prefix: String, file: StaticString = #fileID, line: UInt = #line
) -> Slice<repeat each C> {
  let (columnTypes, typeProblem) = columnTypes(repeat (each C).self)
  let problem = typeProblem ?? (shards < 1 ? .invalidArgument("readCache needs at least 1 shard, got \(shards)") : nil)
  let spec = CacheSpec(prefix: prefix, partial: false)
  let schema = Schema(columnTypes)
  return Slice(
    SliceNode(
      op: "readCache", location: location(file, line), schema: schema, shards: max(shards, 1), deps: [],
      problem: problem
    ) { shard, _, _ in try spec.reader(shard: shard, of: shards, schema: schema) })
}
