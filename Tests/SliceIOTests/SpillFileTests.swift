import CSupport
import Frame
import SliceIO
import Testing

#if canImport(Glibc)
  import Glibc
#endif

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

func readFileBytes(_ path: String) -> [UInt8] {
  let fd = open(path, O_RDONLY)
  defer { close(fd) }
  var out: [UInt8] = []
  var buf = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = read(fd, &buf, buf.count)
    if n <= 0 { break }
    out += buf[..<n]
  }
  return out
}

func writeFileBytes(_ path: String, _ bytes: [UInt8]) {
  let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
  _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  close(fd)
}

@Suite struct SpillFileTests {
  static let options: [CodecOptions] = [
    .default,
    CodecOptions(level: 3, transform: .none, targetBlockBytes: 4096),
    CodecOptions(level: BlockEncoder.stored, transform: .byteShuffle, targetBlockBytes: 1 << 20),
  ]

  @Test(arguments: options)
  func framesOfEveryColumnKindRoundTrip(options: CodecOptions) throws {
    let dir = try SpillDirectory()
    let frames = [
      try randomFrame(rows: 5000, seed: 1), try randomFrame(rows: 0, seed: 2), try randomFrame(rows: 1, seed: 3),
    ]
    let writer = try SpillWriter(directory: dir, schema: frames[0].schema, options: options)
    for f in frames { try writer.write(f) }
    let file = try writer.finish()
    #expect(file.rows == 5001)
    let back = try readAll(try file.reader())
    #expect(rows(back) == rows(frames))
    #expect(back.allSatisfy { $0.schema == frames[0].schema })
  }

  @Test func anEmptyStreamRoundTrips() throws {
    let dir = try SpillDirectory()
    let frame = try randomFrame(rows: 0, seed: 1)
    let file = try SpillWriter(directory: dir, schema: frame.schema).finish()
    #expect(try readAll(try file.reader()).isEmpty)
  }

  @Test func filesAreRemovedWhenTheirOwnersGoAwayEvenUnfinished() throws {
    var dirPath = ""
    var finishedPath = ""
    var abandonedPath = ""
    do {
      let dir = try SpillDirectory()
      dirPath = dir.path
      let frame = try randomFrame(rows: 100, seed: 1)
      let writer = try SpillWriter(directory: dir, schema: frame.schema)
      try writer.write(frame)
      let file = try writer.finish()
      finishedPath = file.path
      #expect(fileExists(finishedPath))
      let abandoned = try SpillWriter(directory: dir, schema: frame.schema)
      try abandoned.write(frame)
      abandonedPath = abandoned.path
      #expect(fileExists(abandonedPath))
    }
    #expect(!fileExists(abandonedPath))
    #expect(!fileExists(finishedPath))
    #expect(!fileExists(dirPath))
  }

  func spilled(_ frame: Frame, _ dir: SpillDirectory) throws -> SpillFile {
    let writer = try SpillWriter(directory: dir, schema: frame.schema, options: CodecOptions(targetBlockBytes: 2048))
    try writer.write(frame)
    return try writer.finish()
  }

  func readError(_ path: String, schema: Schema) -> SliceIOError? {
    do {
      _ = try readAll(BlockFileReader(source: try FileSource(path: path), schema: schema))
      return nil
    } catch let error as SliceIOError {
      return error
    } catch {
      return nil
    }
  }

  @Test func aCorruptFileNamesTheFileAndTheBlock() throws {
    let dir = try SpillDirectory()
    let frame = try randomFrame(rows: 3000, seed: 9)
    let file = try spilled(frame, dir)
    #expect(file.blocks > 3)
    var bytes = readFileBytes(file.path)
    // Damage the payload of the third block.
    var offset = 0
    var starts: [Int] = []
    while offset < bytes.count {
      starts.append(offset)
      var info = bs_block_info()
      let total = bytes[offset...].withUnsafeBytes { bs_block_peek($0.baseAddress, $0.count, &info) }
      offset += Int(total)
    }
    bytes[starts[2] + 50] ^= 0x10
    let damaged = dir.path + "/damaged"
    writeFileBytes(damaged, bytes)
    let error = try #require(readError(damaged, schema: frame.schema))
    guard case .integrity(let source, let block, _) = error else {
      Issue.record("expected an integrity error, got \(error)")
      return
    }
    #expect(source == damaged)
    #expect(block == 2)
    #expect(error.description.contains(damaged) && error.description.contains("block 2"))
  }

  @Test func aFileCutAtABlockBoundaryMissesItsEndMarker() throws {
    let dir = try SpillDirectory()
    let frame = try randomFrame(rows: 3000, seed: 10)
    let file = try spilled(frame, dir)
    let bytes = readFileBytes(file.path)
    var info = bs_block_info()
    let first = bytes.withUnsafeBytes { bs_block_peek($0.baseAddress, $0.count, &info) }
    let cut = dir.path + "/cut"
    writeFileBytes(cut, Array(bytes[..<Int(first)]))
    let error = try #require(readError(cut, schema: frame.schema))
    guard case .integrity(_, 1, .truncated) = error else {
      Issue.record("expected a truncation at block 1, got \(error)")
      return
    }
    // Cut inside a block.
    writeFileBytes(cut, Array(bytes[..<(Int(first) + 17)]))
    guard case .integrity(_, 1, .truncated) = try #require(readError(cut, schema: frame.schema)) else {
      Issue.record("expected a truncation inside block 1")
      return
    }
  }

  @Test func everyBitFlipInASpillFileIsAnIntegrityErrorNeverWrongRows() throws {
    let dir = try SpillDirectory()
    let frame = try Frame([Column([Int64(1), -2, 3]), Column(strings: ["a", "bc", ""])])
    let writer = try SpillWriter(directory: dir, schema: frame.schema, options: CodecOptions(level: 1))
    try writer.write(frame)
    let file = try writer.finish()
    let bytes = readFileBytes(file.path)
    let damaged = dir.path + "/flipped"
    for bit in 0..<(bytes.count * 8) {
      var copy = bytes
      copy[bit / 8] ^= UInt8(1 << (bit % 8))
      writeFileBytes(damaged, copy)
      switch readError(damaged, schema: frame.schema) {
      case .integrity?: break
      case let other: Issue.record("bit \(bit): expected an integrity error, got \(String(describing: other))")
      }
    }
  }

  @Test func aForeignFileIsNotABlockStream() throws {
    let dir = try SpillDirectory()
    let path = dir.path + "/foreign"
    writeFileBytes(path, Array("just some text that is long enough to hold a header and then some".utf8))
    #expect(readError(path, schema: Schema([.string])) == .integrity(source: path, block: 0, problem: .badMagic))
  }

  @Test func aFileOfOtherColumnTypesIsASchemaMismatch() throws {
    let dir = try SpillDirectory()
    let frame = try randomFrame(rows: 10, seed: 1)
    let file = try spilled(frame, dir)
    let error = try #require(readError(file.path, schema: Schema([.string, .scalar(.int64)])))
    guard case .schemaMismatch(_, 0, _, _) = error else {
      Issue.record("expected a schema mismatch, got \(error)")
      return
    }
  }

  @Test func anUnwritableSpillDirectoryIsAClearError() throws {
    let error = #expect(throws: SliceIOError.self) { try SpillDirectory(parent: "/nonexistent/spill") }
    #expect(error?.description.contains("/nonexistent/spill") == true)
  }

  @Test(.enabled(if: TinyDisk.available, "needs root to mount a small tmpfs"))
  func aFullDiskIsAClearErrorAndLeavesNoFile() throws {
    let disk = try #require(TinyDisk(bytes: 256 * 1024))
    var path = ""
    do {
      let dir = try SpillDirectory(parent: disk.path)
      // Random doubles do not compress, so 2 MiB of them cannot fit in 256 KiB.
      var rng = SplitMix64(seed: 1)
      let frame = try Frame([Column((0..<262_144).map { _ in Double(bitPattern: rng.next()) })])
      let writer = try SpillWriter(directory: dir, schema: frame.schema)
      path = writer.path
      let error = #expect(throws: SliceIOError.self) {
        try writer.write(frame)
        _ = try writer.finish()
      }
      guard case .io(_, _, let code) = error else {
        Issue.record("expected an io error, got \(String(describing: error))")
        return
      }
      #expect(code == ENOSPC)
      #expect(error?.description.contains("No space left on device") == true)
    }
    #expect(!fileExists(path))
  }
}

/// A tmpfs of a few hundred KiB, mounted for one test and unmounted after it.
final class TinyDisk {
  let path: String

  static let available: Bool = {
    guard geteuid() == 0, let disk = TinyDisk(bytes: 65536) else { return false }
    _ = disk
    return true
  }()

  init?(bytes: Int) {
    var template = Array("/tmp/bigslice-tinydisk-XXXXXX".utf8CString)
    guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { return nil }
    path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    if mount("tmpfs", path, "tmpfs", 0, "size=\(bytes)") != 0 {
      rmdir(path)
      return nil
    }
  }

  deinit {
    umount(path)
    rmdir(path)
  }
}

@Suite struct BoolDecodingTests {
  @Test func aBoolByteOtherThanZeroOrOneIsCorruptNotUndefined() throws {
    // Encode a bool column, then rewrite one value byte to 2 and re-seal the block with valid
    // checksums: only the bool check can catch it.
    let frame = try Frame([Column([true, false, true])])
    let payload = ByteWriter()
    payload.append(UInt8(1))  // frame payload kind
    payload.append(UInt32(1))
    payload.append(UInt32(1))
    payload.append(UInt8(1))  // scalar
    payload.append(ScalarKind.bool.rawValue)
    payload.append(UInt8(0))  // no transform
    payload.append([1, 2, 1] as [UInt8])
    let block = ByteWriter()
    try BlockEncoder(level: BlockEncoder.stored).encode(payload.bytes, rows: 3, into: block)
    let error = #expect(throws: SliceIOError.self) {
      _ = try FrameDecoder(schema: frame.schema).decode(block.bytes, source: "bools", index: 0)
    }
    guard case .integrity(_, _, .malformedPayload(let what))? = error else {
      Issue.record("expected a malformed payload, got \(String(describing: error))")
      return
    }
    #expect(what.contains("bool"))
  }
}
