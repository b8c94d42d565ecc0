#if canImport(Glibc)
  import Glibc
#endif

/// A one-line progress display on stderr: tasks done of total, elapsed time and a bar.
/// Redrawn in place on a terminal; on a pipe or file (CI logs), a plain line per tenth.
final class ProgressLine {
  private let name: String
  private let start = ContinuousClock.now
  private let terminal = isatty(2) != 0
  private var lastTenth = -1

  init(name: String) { self.name = name }

  func update(done: Int, total: Int) {
    let fraction = total == 0 ? 1 : Double(done) / Double(total)
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    let width = 30
    let filled = Int(fraction * Double(width))
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    let line = "\(name): [\(bar)] \(done)/\(total) tasks, \(Int(seconds * 10) / 10).\(Int(seconds * 10) % 10) s"
    if terminal {
      write("\r\u{1B}[K" + line)
    } else {
      let tenth = Int(fraction * 10)
      if tenth != lastTenth {
        lastTenth = tenth
        write(line + "\n")
      }
    }
  }

  func finish() {
    if terminal { write("\n") }
  }

  private func write(_ text: String) {
    var text = text
    text.withUTF8 { _ = Glibc.write(2, $0.baseAddress, $0.count) }
  }
}
