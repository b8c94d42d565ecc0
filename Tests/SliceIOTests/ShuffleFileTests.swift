import Dispatch
import Frame
import SliceIO
import Synchronization
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite struct ShuffleFileTests {
  /// Random frames cut into `partitions` pieces each, some partitions left empty.
  func pieces(partitions: Int, runs: Int, seed: UInt64) throws -> [[Frame]] {
    var generator = SplitMix64(seed: seed)
    return try (0..<runs).map { run in
      try (0..<partitions).map { p in
        let rows = Int.random(in: 0..<4, using: &generator) == 0 ? 0 : Int.random(in: 1...300, using: &generator)
        return try randomFrame(rows: rows, seed: seed &+ UInt64(run * 1000 + p))
      }
    }
  }

  @Test(arguments: [1, 2, 7, 64])
  func eachPartitionReadsBackWhatWasWrittenToIt(partitions: Int) throws {
    let dir = try SpillDirectory()
    let parts = try pieces(partitions: partitions, runs: 1, seed: UInt64(partitions))[0]
    let writer = try ShuffleFileWriter(
      directory: dir, schema: parts[0].schema, partitions: partitions,
      options: CodecOptions(level: 3, transform: .none, targetBlockBytes: 2048))
    for (p, frame) in parts.enumerated() { try writer.write(frame, to: p) }
    let file = try writer.finish()
    #expect(file.rows == parts.reduce(0) { $0 + $1.count })
    for (p, frame) in parts.enumerated() {
      #expect(file.range(p).isEmpty == (frame.count == 0), "partition \(p)")
      #expect(rows(try readAll(file.reader(p))) == rows([frame]), "partition \(p)")
    }
  }

  /// Neighbouring sections read at once decode to what each partition's own reader gives,
  /// for blocks of every span (a last block cut short, empty partitions inside); a file cut
  /// short is an error naming it.
  @Test func neighbouringSectionsReadAtOnceDecodeAsTheirOwnReaders() throws {
    let dir = try SpillDirectory()
    let partitions = 23
    let parts = try pieces(partitions: partitions, runs: 1, seed: 17)[0]
    let writer = try ShuffleFileWriter(directory: dir, schema: parts[0].schema, partitions: partitions)
    for (p, frame) in parts.enumerated() { try writer.write(frame, to: p) }
    let file = try writer.finish()
    for span in [1, 2, 5, 23] {
      for first in stride(from: 0, to: partitions, by: span) {
        let block = try file.readSections(first..<min(first + span, partitions))
        for p in block.partitions {
          #expect(block.isEmpty(p) == (parts[p].count == 0))
          #expect(rows(try block.frames(p)) == rows(try readAll(file.reader(p))), "span \(span), partition \(p)")
        }
      }
    }
    #expect(truncate(file.path, off_t(file.bytes / 2)) == 0)
    let error = #expect(throws: SliceIOError.self) { try file.readSections(0..<partitions) }
    #expect("\(error!)".contains(file.path))
  }

  /// A small section is read in one call and let go at once; a large one streams, holding
  /// its descriptor until its end, and then lets go too.
  @Test func aSectionReaderClosesItsDescriptorAtTheEnd() throws {
    let dir = try SpillDirectory()
    let small = try randomFrame(rows: 100, seed: 3)
    let large = try randomFrame(rows: 60_000, seed: 4)
    let writer = try ShuffleFileWriter(
      directory: dir, schema: small.schema, partitions: 2,
      options: CodecOptions(level: BlockEncoder.stored, transform: .none, targetBlockBytes: 64 << 10))
    try writer.write(small, to: 0)
    try writer.write(large, to: 1)
    let file = try writer.finish()
    #expect(file.range(1).count > 1 << 20, "the large section streams")
    let first = file.reader(0)
    #expect(try first.read()?.count == 100)
    #expect(descriptors(on: file.path) == 0)
    #expect(try first.read() == nil)
    let second = file.reader(1)
    #expect(try second.read() != nil)
    #expect(descriptors(on: file.path) == 1)
    while try second.read() != nil {}
    #expect(descriptors(on: file.path) == 0)
  }

  /// Partitions of random sizes (empty, a few rows, thousands; some written in two frames, a
  /// small one then a large one) packed under every `packBytes`: each reads back its own rows
  /// through its reader, `frames`, and blocks of neighbouring sections; it has bytes exactly
  /// when it has rows; small partitions share sections when packing is on and never when off.
  @Test(arguments: [0, 300, 4096, 64 << 10])
  func packedPartitionsReadBackTheirOwnRows(packBytes: Int) throws {
    let dir = try SpillDirectory()
    let partitions = 97
    var rng = SplitMix64(seed: UInt64(packBytes) &+ 1)
    var written: [[Frame]] = []
    for p in 0..<partitions {
      let shape = Int.random(in: 0..<10, using: &rng)
      let sizes =
        shape < 3 ? [] : shape < 8 ? [Int.random(in: 1...40, using: &rng)] : shape == 8 ? [1_200] : [3, 1_500]
      written.append(try sizes.enumerated().map { try randomFrame(rows: $1, seed: UInt64(p * 10 + $0)) })
    }
    let schema = try randomFrame(rows: 1, seed: 0).schema
    let writer = try ShuffleFileWriter(
      directory: dir, schema: schema, partitions: partitions, encoder: nil,
      options: CodecOptions(level: 1, transform: .none, targetBlockBytes: 2048), packBytes: packBytes)
    for (p, frames) in written.enumerated() {
      for frame in frames { try writer.write(frame, to: p) }
    }
    let file = try writer.finish()
    #expect(file.rows == written.joined().reduce(0) { $0 + $1.count })
    var shared = 0
    for (p, frames) in written.enumerated() {
      let expected = rows(frames)
      #expect(file.isEmpty(p) == expected.isEmpty, "partition \(p)")
      #expect(file.holding[p] == !expected.isEmpty, "partition \(p)")
      #expect(rows(try readAll(file.reader(p))) == expected, "partition \(p)")
      #expect(rows(try file.frames(p)) == expected, "partition \(p)")
      if file.place(p).isShared { shared += 1 }
    }
    for span in [1, 7] {
      for first in stride(from: 0, to: partitions, by: span) {
        let block = try file.readSections(first..<min(first + span, partitions))
        for p in block.partitions {
          #expect(rows(try block.frames(p)) == rows(written[p]), "span \(span), partition \(p)")
        }
      }
    }
    #expect((shared > 0) == (packBytes > 0), "\(shared) partitions share sections")
    // A packed partition of a file cut short is an error naming the file.
    if let p = (0..<partitions).last(where: { file.place($0).isShared && !file.isEmpty($0) }) {
      #expect(truncate(file.path, off_t(file.range(p).lowerBound + 1)) == 0)
      let error = #expect(throws: SliceIOError.self) { try file.frames(p) }
      #expect("\(error!)".contains(file.path))
    }
  }

  /// Runs merge into one file: a partition's own sections are copied as blocks, and the
  /// merged section ends in one end marker counting every run's rows. Runs packed under one
  /// `packBytes` merge into a file packed under another: a run's packed partition is decoded
  /// and written again; a partition small in one run and large in the next leaves the packed
  /// section for one of its own.
  @Test(arguments: [(0, 0), (0, 500), (500, 0), (500, 500), (200, 1 << 16)])
  func runsMergeIntoOneFile(runPack: Int, mergedPack: Int) throws {
    let dir = try SpillDirectory()
    let partitions = 41
    var rng = SplitMix64(seed: UInt64(runPack &* 31 &+ mergedPack))
    let schema = try randomFrame(rows: 1, seed: 0).schema
    var runs: [[Frame]] = []
    for run in 0..<3 {
      runs.append(
        try (0..<partitions).map { p in
          let shape = Int.random(in: 0..<6, using: &rng)
          let count = shape < 2 ? 0 : shape < 5 ? Int.random(in: 1...20, using: &rng) : 800
          return try randomFrame(rows: count, seed: UInt64(run * 1000 + p))
        })
    }
    let files = try runs.map { run in
      let writer = try ShuffleFileWriter(directory: dir, schema: schema, partitions: partitions, packBytes: runPack)
      for (p, frame) in run.enumerated() { try writer.write(frame, to: p) }
      return try writer.finish(asRun: true)
    }
    let merged = try ShuffleFileWriter(directory: dir, schema: schema, partitions: partitions, packBytes: mergedPack)
    for p in 0..<partitions {
      for file in files { try merged.copy(p, of: file) }
    }
    let file = try merged.finish()
    for p in 0..<partitions {
      #expect(rows(try readAll(file.reader(p))) == rows(runs.map { $0[p] }), "partition \(p)")
    }
    #expect(file.rows == runs.joined().reduce(0) { $0 + $1.count })
  }

  /// A packed section's table of where each partition's rows end is checked before it is
  /// used: a damaged byte fails on a checksum, and a table in an intact end marker whose
  /// entries disagree with the section (past its last row, no rows for a partition written
  /// with some, going backwards) fails naming the file: no rows move between partitions.
  @Test func aPackedSectionsRowTableIsChecked() throws {
    let dir = try SpillDirectory()
    let schema = try randomFrame(rows: 1, seed: 0).schema
    let options = CodecOptions(level: BlockEncoder.stored, transform: .none, targetBlockBytes: 1 << 16)
    func packedFile() throws -> ShuffleFile {
      let writer = try ShuffleFileWriter(
        directory: dir, schema: schema, partitions: 4, options: options, packBytes: 1 << 16)
      try writer.write(try randomFrame(rows: 3, seed: 1), to: 0)
      try writer.write(try randomFrame(rows: 2, seed: 2), to: 2)
      try writer.write(try randomFrame(rows: 4, seed: 3), to: 3)
      let file = try writer.finish()
      #expect(file.place(0).isShared && file.section(of: 3) == 0, "one section holds every partition")
      #expect(rows(try file.frames(2)) == rows([try randomFrame(rows: 2, seed: 2)]))
      return file
    }
    func overwrite(_ file: ShuffleFile, at offset: Int, with bytes: UnsafeRawBufferPointer) {
      let fd = open(file.path, O_WRONLY)
      #expect(pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset)) == bytes.count)
      close(fd)
    }
    // The section is one frame block and its end marker, which carries the table [3, 5, 9].
    for table: [UInt32] in [[3, 5, 10], [3, 3, 9], [5, 3, 9]] {
      let file = try packedFile()
      let forged = ByteWriter()
      try FrameEncoder(options: options).encodeEnd(rows: 9, blocks: 1, table: table, into: forged)
      overwrite(file, at: file.sectionRange(0).upperBound - forged.bytes.count, with: forged.bytes)
      for p in [0, 2, 3] {
        let error = #expect(throws: SliceIOError.self, "table \(table), partition \(p)") { try file.frames(p) }
        #expect(error.map { "\($0)".contains(file.path) && "\($0)".contains("row table") } ?? false)
      }
    }
    let file = try packedFile()
    var byte: UInt8 = 0xA5
    overwrite(file, at: file.sectionRange(0).upperBound - 3, with: UnsafeRawBufferPointer(start: &byte, count: 1))
    #expect(throws: SliceIOError.self) { try file.frames(0) }
  }

  /// Outputs written with a group are appended to one shared file, each at its own base, and
  /// read back as their own; a writer dropped unfinished leaves nothing behind it; the file
  /// goes with its last output; a shared file removed from under the directory takes no more
  /// outputs (a new one is made).
  @Test func outputsOfAGroupShareAFileThatGoesWithTheLast() throws {
    let dir = try SpillDirectory()
    let schema = try randomFrame(rows: 1, seed: 0).schema
    func write(_ seed: UInt64, rows: Int = 300) throws -> (ShuffleFile, [Frame]) {
      let writer = try ShuffleFileWriter(
        directory: dir, schema: schema, partitions: 3, prefix: "output", group: "g", packBytes: 256)
      let parts = try (0..<3).map { try randomFrame(rows: rows * $0, seed: seed * 10 + UInt64($0)) }
      for (p, frame) in parts.enumerated() { try writer.write(frame, to: p) }
      return (try writer.finish(), parts)
    }
    var files = [try write(1), try write(2)]
    // A writer that goes away unfinished: its bytes are cut off.
    do {
      let dropped = try ShuffleFileWriter(directory: dir, schema: schema, partitions: 3, prefix: "output", group: "g")
      try dropped.write(try randomFrame(rows: 100_000, seed: 9), to: 1)
      try dropped.write(try randomFrame(rows: 5_000, seed: 10), to: 2)
    }
    var status = stat()
    #expect(stat(files[1].0.path, &status) == 0)
    #expect(Int(status.st_size) == files[1].0.base + files[1].0.bytes, "the dropped writer's bytes are cut off")
    files.append(try write(3))
    #expect(Set(files.map(\.0.path)).count == 1, "one shared file")
    #expect(files[1].0.base == files[0].0.base + files[0].0.bytes)
    #expect(files[2].0.base == files[1].0.base + files[1].0.bytes, "the dropped writer's bytes are gone")
    for (file, parts) in files {
      for p in 0..<3 { #expect(rows(try readAll(file.reader(p))) == rows([parts[p]]), "partition \(p)") }
    }
    let path = files[0].0.path
    files.removeFirst(2)
    #expect(access(path, F_OK) == 0, "an output is still in the file")
    files.removeAll()
    #expect(access(path, F_OK) != 0, "the file went with its last output")
    // A shared file removed while idle takes no more outputs.
    let (kept, _) = try write(4)
    #expect(unlink(kept.path) == 0)
    let (next, parts) = try write(5)
    #expect(next.path != kept.path && next.base == 0)
    #expect(rows(try readAll(next.reader(2))) == rows([parts[2]]))
  }

  /// Threads writing, reading and letting go of outputs of one group at once: every output
  /// reads back whole while it is held (no shared file is removed under a writer), and the
  /// directory is empty once all are gone.
  @Test func sharedFilesSurviveWritersAndReleasesAtOnce() throws {
    let dir = try SpillDirectory()
    let schema = try randomFrame(rows: 1, seed: 0).schema
    let failures = Mutex<[String]>([])
    DispatchQueue.concurrentPerform(iterations: 4) { thread in
      var held: [(ShuffleFile, Frame)] = []
      for i in 0..<500 {
        do {
          let frame = try randomFrame(rows: 1 + (i * 7 + thread) % 50, seed: UInt64(thread * 1000 + i))
          let writer = try ShuffleFileWriter(
            directory: dir, schema: schema, partitions: 2, prefix: "run", group: "g")
          try writer.write(frame, to: 1)
          held.append((try writer.finish(), frame))
          // Let go of most outputs soon, in another order than they came.
          if held.count > 3 { held.remove(at: (i * 5) % held.count) }
          for (file, expected) in held where rows(try readAll(file.reader(1))) != rows([expected]) {
            failures.withLock { $0.append("thread \(thread) output \(i): wrong rows") }
          }
        } catch {
          failures.withLock { $0.append("thread \(thread) output \(i): \(error)") }
        }
      }
    }
    #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(3) })")
    #expect(directoryEntries(dir.path).isEmpty, "files left: \(directoryEntries(dir.path))")
  }

  /// Reads of shared files keep a few descriptors open between them, no more; a kept one does
  /// not hide a file removed from under the directory; letting go of the outputs closes them.
  @Test func sharedFilesKeepAFewReadingDescriptorsAndStillSeeALoss() throws {
    let dir = try SpillDirectory()
    let schema = try randomFrame(rows: 1, seed: 0).schema
    let files = SpillDirectory.readersKept + 4
    var outputs: [(file: ShuffleFile, parts: [Frame])] = []
    for g in 0..<files {
      // Outputs of different groups never share a file.
      let writer = try ShuffleFileWriter(
        directory: dir, schema: schema, partitions: 3, prefix: "output", group: "g\(g)", packBytes: 256)
      let parts = try (0..<3).map { try randomFrame(rows: 40 * $0 + 1, seed: UInt64(g * 3 + $0)) }
      for (p, frame) in parts.enumerated() { try writer.write(frame, to: p) }
      outputs.append((try writer.finish(), parts))
    }
    func open(_ file: ShuffleFile) -> Int { descriptors(on: file.path) + descriptors(on: file.path + " (deleted)") }
    for _ in 0..<2 {
      for (file, parts) in outputs {
        for p in 0..<3 {
          #expect(rows(try file.readSections(p..<(p + 1)).frames(p)) == rows([parts[p]]), "partition \(p)")
        }
      }
    }
    let kept = outputs.map { open($0.file) }
    #expect(kept.allSatisfy { $0 <= 1 }, "\(kept)")
    #expect(kept.reduce(0, +) == SpillDirectory.readersKept, "\(kept)")
    #expect(kept.suffix(SpillDirectory.readersKept).allSatisfy { $0 == 1 }, "the files read last keep theirs: \(kept)")
    #expect(unlink(outputs[files - 1].file.path) == 0)
    let error = #expect(throws: SliceIOError.self) { try outputs[files - 1].file.readSections(0..<1) }
    #expect("\(error.map { "\($0)" } ?? "")".contains("No such file"), "\(String(describing: error))")
    // The other files still read through theirs.
    #expect(rows(try outputs[files - 2].file.readSections(1..<2).frames(1)) == rows([outputs[files - 2].parts[1]]))
    let paths = outputs.map(\.file.path)
    outputs.removeAll()
    for path in paths { #expect(descriptors(on: path) + descriptors(on: path + " (deleted)") == 0, "\(path)") }
  }

  @Test func aCutSectionIsAnIntegrityError() throws {
    let dir = try SpillDirectory()
    let frame = try randomFrame(rows: 500, seed: 4)
    let writer = try ShuffleFileWriter(directory: dir, schema: frame.schema, partitions: 3)
    try writer.write(frame, to: 0)
    try writer.write(frame, to: 2)
    let file = try writer.finish()
    // Partition 0's end marker is gone: the file is cut inside it.
    #expect(truncate(file.path, off_t(file.range(0).upperBound - 3)) == 0)
    #expect(throws: SliceIOError.self) { try readAll(file.reader(0)) }
    #expect(throws: SliceIOError.self) { try readAll(file.reader(2)) }
  }
}

/// Descriptors this process has open on `path` (other tests' descriptors come and go).
func descriptors(on path: String) -> Int {
  var n = 0
  for name in directoryEntries("/proc/self/fd") {
    var target = [CChar](repeating: 0, count: 4096)
    let length = readlink("/proc/self/fd/\(name)", &target, target.count - 1)
    if length > 0, String(cString: target) == path { n += 1 }
  }
  return n
}
