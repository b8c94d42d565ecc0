import Bigslice
import Foundation
import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// The word count demo: the W5 workload of BENCHMARKS.md on a file it generates.
public enum WordCount {
  /// The lines of `paths`, split into words on spaces, counted.
  public static let job = Func("demo.wordcount") { (paths: [String], shards: Int) -> Slice<String, Int> in
    scanReader(shards, paths: paths).split().count()
  }

  /// Word `i` of the W5 text: "w" + base36(floor(1e6 ^ u) - 1), u = splitmix64(i) / 2^64.
  public static func word(_ i: UInt64, into out: inout [UInt8]) {
    let u = Double(splitmix64(i)) / 18_446_744_073_709_551_616.0
    var m = Int(pow(1e6, u).rounded(.down)) - 1
    out.append(UInt8(ascii: "w"))
    var digits: [UInt8] = []
    repeat {
      let d = m % 36
      digits.append(d < 10 ? UInt8(48 + d) : UInt8(87 + d))
      m /= 36
    } while m > 0
    out.append(contentsOf: digits.reversed())
  }

  /// Makes sure `path` holds the W5 text of `words` words, as the peers' generator does: a
  /// `PATH.meta` sidecar saying `bigslice-w5 v1 words=N` marks a finished file, which is
  /// reused; otherwise the text is written to `PATH.tmp` and renamed. Returns whether it wrote.
  @discardableResult
  public static func ensure(path: String, words: Int) throws -> Bool {
    let want = "bigslice-w5 v1 words=\(words)\n"
    if let meta = try? String(contentsOfFile: path + ".meta", encoding: .utf8), meta == want,
      access(path, R_OK) == 0
    {
      return false
    }
    try generate(path: path + ".tmp", words: words)
    guard rename(path + ".tmp", path) == 0 else {
      throw DemoError("cannot rename \(path).tmp: \(String(cString: strerror(errno)))")
    }
    try want.write(toFile: path + ".meta", atomically: true, encoding: .utf8)
    return true
  }

  /// Writes `words` words of the W5 text to `path`, 10 a line (untimed setup).
  public static func generate(path: String, words: Int) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw DemoError("cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var buffer: [UInt8] = []
    buffer.reserveCapacity(1 << 20)
    for i in 0..<words {
      word(UInt64(i), into: &buffer)
      buffer.append(i % 10 == 9 || i == words - 1 ? 0x0A : 0x20)
      if buffer.count > (1 << 20) - 64 || i == words - 1 {
        let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard written == buffer.count else {
          throw DemoError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
        buffer.removeAll(keepingCapacity: true)
      }
    }
  }
}

/// A demo or benchmark setup step that failed (a file that cannot be written, say).
public struct DemoError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
