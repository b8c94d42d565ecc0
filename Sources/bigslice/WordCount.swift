import Bigslice
import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// The word count demo: the W5 workload of BENCHMARKS.md on a file it generates.
enum WordCount {
  /// The lines of `paths`, split into words on spaces, counted.
  static let job = Func("demo.wordcount") { (paths: [String], shards: Int) -> Slice<String, Int> in
    scanReader(shards, paths: paths)
      .flatMap(String.self) { (out: RowEmitter<String>, line: String) in
        for word in line.split(separator: " ", omittingEmptySubsequences: true) { out.emit(String(word)) }
      }
      .count()
  }

  /// Word `i` of the W5 text: "w" + base36(floor(1e6 ^ u) - 1), u = splitmix64(i) / 2^64.
  static func word(_ i: UInt64, into out: inout [UInt8]) {
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

  /// Writes `words` words of the W5 text to `path`, 10 a line (untimed setup).
  static func generate(path: String, words: Int) throws {
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

struct DemoError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}
