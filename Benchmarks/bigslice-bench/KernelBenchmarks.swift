import CSupport
import Frame
import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// `bigslice-bench kernels`: each C kernel through its Swift wrapper, next to a baseline
/// measured in the same run, on one core.
struct KernelBenchmarks {
  var rows: Int
  var repeats: Int
  var report: Reporter
  /// The kernels to run (hash, radix, combiner, blocks, delimited); all when empty.
  var only: Set<String> = []

  func run() throws {
    report.header("Kernels: \(rows) rows, one core, median of \(repeats)")
    if only.isEmpty || only.contains("hash") { try hash() }
    if only.isEmpty || only.contains("radix") { try radix() }
    if only.isEmpty || only.contains("combiner") { try combiner() }
    if only.isEmpty || only.contains("blocks") { try blocks() }
    if only.isEmpty || only.contains("delimited") { try delimited() }
  }

  /// W1's rows as TSV text in memory, read into two Int columns by `DelimitedReader` (the
  /// vectorised split and the column parsers), against `strtoll` per field in a plain C loop.
  func delimited() throws {
    var text: [UInt8] = []
    text.reserveCapacity(rows * 11)
    for i in 0..<rows {
      let x = UInt64(i)
      text += "\(splitmix64(x) % 1_000_000)\t\(splitmix64(x &+ (1 << 40)) % 1000)\n".utf8
    }
    var sums: (UInt64, UInt64) = (0, 0)
    let ours = try median(repeats) {
      let reader = try DelimitedReader(
        stream: MemoryInput(text), format: .tsv(), columns: [DelimitedColumn(Int.self), DelimitedColumn(Int.self)])
      var keys: UInt64 = 0
      var values: UInt64 = 0
      while let frame = try reader.next(rows: Frame.defaultRows) {
        let k = frame.columns[0].scalars(Int.self)
        let v = frame.columns[1].scalars(Int.self)
        for r in 0..<frame.count {
          keys &+= UInt64(k[r])
          values &+= UInt64(v[r])
        }
      }
      sums = (keys, values)
    }
    var baseSums: (UInt64, UInt64) = (0, 0)
    var baseRows: Int64 = 0
    let base = median(repeats) {
      baseRows = text.withUnsafeBufferPointer {
        bs_bench_tsv_strtoll($0.baseAddress, $0.count, &baseSums.0, &baseSums.1)
      }
    }
    precondition(baseRows == Int64(rows) && sums == baseSums, "the delimited reader disagrees with strtoll")
    report.emit(
      Measurement(
        bench: "TSV into two Int columns", rows: rows, seconds: ours, baseline: "strtoll per field",
        baselineSeconds: base,
        notes: "\(text.count / 1_000_000) MB of text in memory"))
  }

  /// key = splitmix64(i) % distinct, as in BENCHMARKS.md.
  func keyColumn(distinct: UInt64, seed: UInt64 = 0) -> Column {
    Column.scalar(Int64.self, count: rows) { out in
      for i in 0..<out.count { out[i] = Int64(splitmix64(UInt64(i) &+ seed) % distinct) }
    }
  }

  func hash() throws {
    let column = Column.scalar(UInt64.self, count: rows) { out in
      for i in 0..<out.count { out[i] = splitmix64(UInt64(i)) }
    }
    let out = UnsafeMutablePointer<UInt64>.allocate(capacity: rows)
    out.initialize(repeating: 0, count: rows)  // touch the pages before timing
    defer { out.deallocate() }
    let ours = try median(repeats) { try column.hash(seed: 7, into: out) }
    let check = out[rows / 2]
    let base = median(repeats) {
      column.scalars(UInt64.self).withUnsafeBufferPointer { bs_bench_hash_u64_baseline($0.baseAddress, rows, 7, out) }
    }
    precondition(out[rows / 2] == check, "hash kernel disagrees with the baseline")
    report.emit(
      Measurement(
        bench: "hash int64 column (XXH3)", rows: rows, seconds: ours, baseline: "C loop XXH3_64bits_withSeed",
        baselineSeconds: base, notes: "\(fmt(Double(rows * 8) / ours / 1e9, 2)) GB/s"))
  }

  func radix() throws {
    for (label, distinct) in [("random u64", UInt64.max), ("u64 in [0, 1M)", 1_000_000)] {
      let values = [UInt64](unsafeUninitializedCapacity: rows) { buf, n in
        for i in 0..<rows { buf[i] = distinct == .max ? splitmix64(UInt64(i)) : splitmix64(UInt64(i)) % distinct }
        n = rows
      }
      let frame = try Frame([Column(values)])
      // Buffers are reused between runs, as the external sorter reuses them between runs of a
      // sort; the baseline likewise sorts a copy made before its timer starts.
      let buffers = SortBuffers()
      var perm = UnsafeBufferPointer<UInt32>(start: nil, count: 0)
      let ours = try median(repeats) { perm = try frame.sortPermutation(.keys, buffers: buffers) }
      precondition(
        zip(perm, perm.dropFirst()).allSatisfy { values[Int($0.0)] <= values[Int($0.1)] }, "radix sort is not sorted")
      var copy: [UInt64] = []
      let base = median(repeats, setup: { copy = values }) { copy.sort() }
      report.emit(
        Measurement(
          bench: "radix sort permutation, \(label)", rows: rows, seconds: ours, baseline: "Swift sort() of the values",
          baselineSeconds: base))
    }
  }

  /// The combiner's sum over 1M keys, twice: keys of [0, 1M), which its direct map takes,
  /// and the same keys scattered over all of Int64, which go through its hash table.
  func combiner() throws {
    let distinct: UInt64 = 1_000_000
    let keys = keyColumn(distinct: distinct)
    let values = Column.scalar(Int64.self, count: rows) { out in
      for i in 0..<out.count { out[i] = Int64(splitmix64(UInt64(i) &+ (1 << 40)) % 1000) }
    }
    let (groups, checksum, ours) = try combinerSums(
      keys, values, label: "combiner sum, 1M keys", note: "keys of [0, 1M)")
    var baseChecksum: UInt64 = 0
    var baseGroups = 0
    let base = median(repeats) {
      var dict = [Int64: Int64](minimumCapacity: Int(distinct))
      let k = keys.scalars(Int64.self)
      let v = values.scalars(Int64.self)
      for i in 0..<rows { dict[k[i], default: 0] &+= v[i] }
      baseGroups = dict.count
      baseChecksum = dict.reduce(0) { $0 &+ UInt64(bitPattern: $1.key) &* UInt64(bitPattern: $1.value) }
    }
    precondition(groups == baseGroups && checksum == baseChecksum, "combiner disagrees with the Dictionary")
    report.emit(
      Measurement(
        bench: "combiner sum, 1M keys", rows: rows, seconds: ours, baseline: "Swift Dictionary",
        baselineSeconds: base, notes: "\(groups) groups, checksum \(checksum)"))
    let scattered = Column.scalar(Int64.self, count: rows) { out in
      let k = keys.scalars(Int64.self)
      for i in 0..<out.count { out[i] = Int64(bitPattern: splitmix64(UInt64(k[i]) &+ 0x5ca7)) }
    }
    _ = try combinerSums(
      scattered, values, label: "combiner sum, 1M scattered keys", note: "the keys of [0, 1M) hashed")
  }

  /// Times the combiner's sum of `values` by `keys` against the plain C hash aggregation in
  /// the same run, reports it, and returns the groups, checksum (both must agree) and time.
  func combinerSums(_ keys: Column, _ values: Column, label: String, note: String) throws -> (Int, UInt64, Double) {
    let batch = 65_536
    var groups = 0
    var checksum: UInt64 = 0
    let ours = try median(repeats) {
      let c = try Combiner(keyType: .scalar(.int64))
      try c.addAggregate(.sum)
      for start in stride(from: 0, to: rows, by: batch) {
        let range = start..<min(start + batch, rows)
        try c.add(keys: keys.slice(range), values: [values.slice(range)], seed: 0)
      }
      let (frame, _) = try c.drain()
      groups = frame.count
      let k = frame.columns[0].scalars(Int64.self)
      let s = frame.columns[1].scalars(Int64.self)
      checksum = (0..<frame.count).reduce(0) { $0 &+ UInt64(bitPattern: k[$1]) &* UInt64(bitPattern: s[$1]) }
    }
    var plainGroups: Int64 = 0
    var plainChecksum: UInt64 = 0
    let plain = median(repeats) {
      let k = keys.scalars(Int64.self)
      let v = values.scalars(Int64.self)
      plainGroups = bs_bench_hash_aggregate(k.base, v.base, rows, &plainChecksum)
    }
    precondition(
      plainGroups == Int64(groups) && plainChecksum == checksum, "combiner disagrees with the plain C aggregation")
    report.emit(
      Measurement(
        bench: label, rows: rows, seconds: ours, baseline: "plain C hash aggregation", baselineSeconds: plain,
        notes: "\(note); one table of {key, sum} slots, linear probing, a multiplicative hash"))
    return (groups, checksum, ours)
  }

  /// Encodes `column` as blocks with `options` into `out` (reused, like the baseline's
  /// buffer, so neither pays for first touching its memory).
  @discardableResult
  func encodeBlocks(_ column: Column, _ options: CodecOptions, into out: ByteWriter) throws -> ByteWriter {
    let encoder = FrameEncoder(options: options)
    let frame = try Frame([column])
    let step = encoder.rowsPerBlock(frame)
    out.removeAll()
    for start in stride(from: 0, to: rows, by: step) {
      try encoder.encode(frame.slice(start..<min(start + step, rows)), into: out)
    }
    return out
  }

  func decodeBlocks(_ bytes: ByteWriter, schema: Schema) throws -> Int {
    let decoder = FrameDecoder(schema: schema)
    var offset = 0
    var total = 0
    var index = 0
    while offset < bytes.count {
      var info = bs_block_info()
      let size = Int(bs_block_peek(bytes.base + offset, bytes.count - offset, &info))
      precondition(size > 0, "bad block in benchmark data")
      if case .frame(let f) = try decoder.decode(
        UnsafeRawBufferPointer(start: bytes.base + offset, count: size), source: "bench", index: index)
      {
        total += f.count
      }
      offset += size
      index += 1
    }
    return total
  }

  func blocks() throws {
    let column = keyColumn(distinct: 1_000_000)
    let raw = column.scalars(Int64.self)
    let rawBytes = rows * 8
    let schema = Schema([.scalar(.int64)])
    let zbuf = UnsafeMutableRawPointer.allocate(byteCount: rawBytes + rawBytes / 8 + 65536, alignment: 16)
    let back = UnsafeMutableRawPointer.allocate(byteCount: rawBytes, alignment: 16)
    defer {
      zbuf.deallocate()
      back.deallocate()
    }

    // Our block writer against one ZSTD_compress call at the same level, on the same bytes.
    for level: Int32 in [1, -1] {
      let encoded: ByteWriter? = ByteWriter(capacity: rawBytes / 2)
      let ours = try median(repeats) {
        try encodeBlocks(column, CodecOptions(level: level, transform: .none), into: encoded!)
      }
      var zsize: Int64 = 0
      let base = median(repeats) {
        zsize = raw.withUnsafeBufferPointer {
          bs_bench_zstd_compress($0.baseAddress, rawBytes, level, zbuf, rawBytes + rawBytes / 8 + 65536)
        }
      }
      report.emit(
        Measurement(
          bench: "block write, zstd \(level)", rows: rows, seconds: ours, baseline: "one ZSTD_compress, level \(level)",
          baselineSeconds: base,
          notes:
            "ratio \(fmt(Double(rawBytes) / Double(encoded!.count), 2)) vs \(fmt(Double(rawBytes) / Double(zsize), 2)), \(fmt(Double(rawBytes) / ours / 1e6, 0)) MB/s"
        ))
      var decodedRows = 0
      let oursRead = try median(repeats) { decodedRows = try decodeBlocks(encoded!, schema: schema) }
      precondition(decodedRows == rows, "block read lost rows")
      let baseRead = median(repeats) { _ = bs_bench_zstd_decompress(zbuf, Int(zsize), back, rawBytes) }
      report.emit(
        Measurement(
          bench: "block read, zstd \(level)", rows: rows, seconds: oursRead, baseline: "one ZSTD_decompress",
          baselineSeconds: baseRead, notes: "\(fmt(Double(rawBytes) / oursRead / 1e6, 0)) MB/s"))
    }

    // Levels and transforms: what the spill default and the machines' store are chosen by, on
    // keys and on the workloads' small values (below 1000).
    let scratch = ByteWriter(capacity: rawBytes / 2)
    let levels: [(String, Int32)] =
      [-7, -3, -1, 1, 3].map { (String($0), $0) } + [("fast", BlockEncoder.fast), ("stored", BlockEncoder.stored)]
    for (label, data) in [
      ("1M distinct keys", column), ("values below 1000", keyColumn(distinct: 1000, seed: 1 << 40)),
    ] {
      report.note("\nCodec choice, \(label) (one core; MB/s of raw bytes):")
      report.note("level  transform     write MB/s  read MB/s  ratio")
      for (name, level) in levels {
        for transform in [ColumnTransform.none, .byteShuffle] {
          let encoded: ByteWriter? = scratch
          let w = try median(repeats) {
            try encodeBlocks(data, CodecOptions(level: level, transform: transform), into: encoded!)
          }
          let r = try median(repeats) { _ = try decodeBlocks(encoded!, schema: schema) }
          report.note(
            "\(pad(name, 6)) \(pad("\(transform)", 13)) \(pad(fmt(Double(rawBytes) / w / 1e6, 0), 11)) "
              + "\(pad(fmt(Double(rawBytes) / r / 1e6, 0), 10)) \(fmt(Double(rawBytes) / Double(encoded!.count), 2))")
        }
      }
    }

    // Spilling to this disk: the default codec (and a faster, weaker level) against writing
    // the raw bytes, all synced.
    let dir = try SpillDirectory(parent: "/var/tmp")
    let rawPath = dir.path + "/raw"
    let rawWrite = median(repeats) {
      let fd = open(rawPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
      var done = 0
      raw.withUnsafeBufferPointer { p in
        while done < rawBytes {
          done += write(fd, UnsafeRawPointer(p.baseAddress!) + done, min(rawBytes - done, 1 << 24))
        }
      }
      fsync(fd)
      close(fd)
    }
    unlink(rawPath)
    for (label, options) in [
      ("default: zstd 1 + shuffle", CodecOptions.default), ("zstd -3 + shuffle", CodecOptions(level: -3)),
    ] {
      var spillBytes = 0
      let spill = try median(repeats) {
        let writer = try SpillWriter(directory: dir, schema: schema, options: options)
        try writer.write(try Frame([column]))
        let file = try writer.finish()
        spillBytes = file.bytes
        sync(path: file.path)
      }
      report.emit(
        Measurement(
          bench: "spill to disk, \(label)", rows: rows, seconds: spill, baseline: "write(2) raw bytes",
          baselineSeconds: rawWrite,
          notes:
            "fsync'd; \(fmt(Double(rawBytes) / spill / 1e6, 0)) vs \(fmt(Double(rawBytes) / rawWrite / 1e6, 0)) MB/s, \(spillBytes / 1_000_000) MB on disk"
        ))
    }
  }

  func sync(path: String) {
    let fd = open(path, O_RDONLY)
    fsync(fd)
    close(fd)
  }
}

/// Bytes in memory, handed out as a stream.
final class MemoryInput: ByteInput {
  let name = "memory"
  private let bytes: [UInt8]
  private var at = 0

  init(_ bytes: [UInt8]) { self.bytes = bytes }

  func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    let n = min(count, bytes.count - at)
    if n > 0 { bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + at, byteCount: n) } }
    at += n
    return n
  }
}
