import Frame

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// What was wrong with a block or a block stream.
public enum IntegrityProblem: Equatable, Sendable, CustomStringConvertible {
  /// The bytes end inside a block, or a stream ends before its end marker.
  case truncated(String)
  /// The bytes do not start with the block magic: not a bigslice block stream.
  case badMagic
  /// A block version this code does not read.
  case unsupportedVersion
  /// The block header's own checksum does not match: the header is damaged.
  case headerChecksum
  /// An unknown compression codec or reserved bits in the header.
  case badCodec
  /// A length in the header is over its bound or inconsistent.
  case badLength
  /// zstd rejected the payload.
  case decompression
  /// The payload's checksum does not match: the data is damaged.
  case checksum
  /// The block decoded, but its contents (the frame inside it) are malformed.
  case malformedPayload(String)

  public var description: String {
    switch self {
    case .truncated(let what): "truncated: \(what)"
    case .badMagic: "bad magic number: not a bigslice block stream"
    case .unsupportedVersion: "unsupported block version"
    case .headerChecksum: "block header checksum mismatch"
    case .badCodec: "unknown codec or reserved bits set"
    case .badLength: "a length in the block header is out of bounds"
    case .decompression: "zstd could not decompress the payload"
    case .checksum: "payload checksum mismatch"
    case .malformedPayload(let what): "malformed frame: \(what)"
    }
  }
}

/// Errors of the data plane. Each names the file or stream, and the block, involved.
public enum SliceIOError: Error, Equatable, CustomStringConvertible {
  /// Stored or received bytes fail an integrity check: corrupt, truncated or foreign data.
  case integrity(source: String, block: Int, problem: IntegrityProblem)
  /// The frames in a stream have other column types than the reader expects.
  case schemaMismatch(source: String, block: Int, expected: String, found: String)
  /// A system call failed (`errno` and its message); a full disk is `ENOSPC` here.
  case io(path: String, operation: String, errno: Int32)
  /// A compressed input file (gzip or zstd) is corrupt or truncated at byte `offset` of the
  /// file.
  case compressed(path: String, offset: Int, problem: String)
  /// A row of delimited text is malformed, or a field holds no value of its column's type:
  /// the file, the line (when it can be known), the column (1-based, with its name when
  /// known), the problem and the text found.
  case delimited(path: String, line: Int?, column: String?, problem: String, text: String)
  /// A frame could not be encoded or built.
  case frame(FrameError)

  public var description: String {
    switch self {
    case .integrity(let source, let block, let problem): "\(source): block \(block): \(problem)"
    case .schemaMismatch(let source, let block, let expected, let found):
      "\(source): block \(block): schema mismatch: expected \(expected), found \(found)"
    case .io(let path, let operation, let code):
      "\(path): \(operation) failed: \(String(cString: strerror(code))) (errno \(code))"
    case .compressed(let path, let offset, let problem):
      "\(path): compressed data at or after byte \(offset): \(problem)"
    case .delimited(let path, let line, let column, let problem, let text):
      "\(path)\(line.map { ": line \($0)" } ?? "")\(column.map { ", column \($0)" } ?? ""): \(problem): "
        + "found \"\(text)\""
    case .frame(let error): error.description
    }
  }

  /// True when the error means the data is lost or damaged (recompute it), as opposed to a
  /// programming or configuration error.
  public var isDataLoss: Bool {
    switch self {
    case .integrity: true
    case .io(_, _, let code): code == ENOENT
    default: false
    }
  }
}
