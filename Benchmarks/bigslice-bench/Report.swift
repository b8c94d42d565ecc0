import Bigmachine

#if canImport(Glibc)
  import Glibc
#endif

/// One measured benchmark next to its baseline from the same run.
struct Measurement {
  var bench: String
  var rows: Int
  var seconds: Double
  var baseline: String
  var baselineSeconds: Double
  /// Extra columns for the table (throughput, compression ratio, …).
  var notes: String = ""
  /// The peak RSS to report; nil for this process's so far (a benchmark run in a child
  /// process reports the child's).
  var peakRSSBytes: Int? = nil
  /// Further fields of the JSON object, each value already JSON text.
  var fields: [(name: String, json: String)] = []

  /// Above 1 when we are faster than the baseline.
  var ratio: Double { baselineSeconds / seconds }
}

/// Peak resident set size of this process so far, in bytes.
func peakRSS() -> Int { MemoryInfo.current().processPeakResidentBytes }

/// Seconds taken by `body`, median of `repeats` runs. `setup` runs before each, untimed.
func median(_ repeats: Int, setup: () -> Void = {}, _ body: () throws -> Void) rethrows -> Double {
  var times: [Double] = []
  for _ in 0..<max(1, repeats) {
    setup()
    let start = ContinuousClock.now
    try body()
    times.append(elapsedSeconds(since: start))
  }
  times.sort()
  return times[times.count / 2]
}

/// Seconds from `start` to now.
func elapsedSeconds(since start: ContinuousClock.Instant) -> Double {
  let d = ContinuousClock.now - start
  return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Prints measurements as a table, or as one JSON object per line.
struct Reporter {
  var json: Bool

  func header(_ title: String) {
    if !json { print("\n## \(title)\n") }
  }

  func emit(_ m: Measurement) {
    if json {
      let name = m.bench.replacingOccurrences(of: "\"", with: "'")
      var line =
        "{\"bench\": \"\(name)\", \"rows\": \(m.rows), \"seconds\": \(fmt(m.seconds, 4)), \"baseline\": \"\(m.baseline)\", "
        + "\"baseline_seconds\": \(fmt(m.baselineSeconds, 4)), \"ratio\": \(fmt(m.ratio, 3)), "
        + "\"peak_rss_bytes\": \(m.peakRSSBytes ?? peakRSS())"
      if !m.notes.isEmpty {
        // The notes say whether checksums agree: a JSON run must show it too.
        let notes = m.notes.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        line += ", \"notes\": \"\(notes)\""
      }
      for field in m.fields { line += ", \"\(field.name)\": \(field.json)" }
      print(line + "}")
    } else {
      let rate = Double(m.rows) / m.seconds / 1e6
      let baseRate = Double(m.rows) / m.baselineSeconds / 1e6
      print(
        "\(pad(m.bench, 34)) \(pad(fmt(m.seconds, 3) + " s", 10)) \(pad(fmt(rate, 1) + " M rows/s", 16)) "
          + "vs \(pad(m.baseline, 28)) \(pad(fmt(m.baselineSeconds, 3) + " s", 10)) \(pad(fmt(baseRate, 1) + " M rows/s", 16)) "
          + "ratio \(fmt(m.ratio, 2))×  \(m.notes)")
    }
    fflush(nil)
  }

  func note(_ text: String) {
    if !json { print(text) }
  }
}

func fmt(_ x: Double, _ digits: Int) -> String {
  guard x.isFinite else { return "\(x)" }
  var s = String(Int((x * pow(10, Double(digits))).rounded()))
  let negative = s.hasPrefix("-")
  if negative { s.removeFirst() }
  while s.count <= digits { s = "0" + s }
  if digits > 0 { s.insert(".", at: s.index(s.endIndex, offsetBy: -digits)) }
  return (negative ? "-" : "") + s
}

func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

extension String {
  func replacingOccurrences(of a: String, with b: String) -> String {
    split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
  }
}
