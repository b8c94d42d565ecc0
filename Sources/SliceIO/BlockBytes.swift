import Frame

/// Frames as a block stream with its end marker (what a stored partition file holds), coded
/// by `encoder` (a new one with the default options when nil). An encoder kept for many small
/// streams saves making a compression context for each.
public func encodeBlocks(_ frames: [Frame], using encoder: FrameEncoder? = nil) throws -> [UInt8] {
  let encoder = encoder ?? FrameEncoder()
  let out = ByteWriter()
  var rows = 0
  var blocks = 0
  for frame in frames where frame.count > 0 {
    try encoder.encodeBlocks(frame, into: out) { n in
      rows += n
      blocks += 1
    }
  }
  try encoder.encodeEnd(rows: rows, blocks: blocks, into: out)
  return Array(out.bytes)
}

/// The frames of a block stream made by `encodeBlocks`, checked.
public func decodeBlocks(_ bytes: [UInt8], schema: Schema?, name: String) throws -> Frame? {
  let reader = BlockFileReader(source: BytesSource(bytes, name: name), schema: schema)
  var frames: [Frame] = []
  while let f = try reader.read() { frames.append(f) }
  return frames.isEmpty ? nil : (frames.count == 1 ? frames[0] : try Frame.concat(frames))
}

/// Bytes in memory as a byte source.
public final class BytesSource: ByteSource {
  public let name: String
  private let bytes: [UInt8]
  private var at = 0

  public init(_ bytes: [UInt8], name: String) {
    self.bytes = bytes
    self.name = name
  }

  public func read(into buffer: UnsafeMutableRawPointer, count: Int) throws -> Int {
    let n = min(count, bytes.count - at)
    guard n > 0 else { return 0 }
    bytes.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress! + at, byteCount: n) }
    at += n
    return n
  }
}
