import Bigslice
import Foundation
import Frame
import SliceIO

/// One row of the delimited-text tests' table: every type `readDelimited` reads.
public struct TableRow: Hashable, Sendable, Codable, CustomStringConvertible {
  public var id: Int
  public var name: String
  public var price: Double?
  public var flag: Bool
  public var small: Int32?
  public var note: String?

  public var description: String {
    "(\(id), \(name.debugDescription), \(price as Any), \(flag), \(small as Any), \(note as Any))"
  }

  /// The row in a frame's row of `anyRows`.
  public init(_ row: [AnyHashable]) {
    id = (row[0].base as? Int) ?? Int(row[0].base as! Int64)
    name = row[1].base as! String
    price = row[2].base as? Double
    flag = row[3].base as! Bool
    small = row[4].base as? Int32
    note = row[5].base as? String
  }

  public init(id: Int, name: String, price: Double?, flag: Bool, small: Int32?, note: String?) {
    self.id = id
    self.name = name
    self.price = price
    self.flag = flag
    self.small = small
    self.note = note
  }

  /// The column names of the table's header.
  public static let names = ["id", "name", "price", "flag", "small", "note"]

  /// `n` random rows: extreme and ordinary numbers, strings with UTF-8, and (for quoted CSV)
  /// delimiters, quotes, CRs and, with `newlines`, line feeds inside fields.
  public static func random(_ n: Int, seed: UInt64, quoting: Bool, newlines: Bool) -> [TableRow] {
    var rng = SplitMix64(seed: seed)
    let plainPieces = ["a", "b", "Zürich", "日本", " ", "x y", "'", "-", "0", "é", "\""]
    let quotedPieces = plainPieces + [",", "\"", "\"\"", "\r", "\t"] + (newlines ? ["\n", "\r\n"] : [])
    func text(_ nonEmpty: Bool) -> String {
      let count = Int.random(in: (nonEmpty ? 1 : 0)...6, using: &rng)
      let pieces = quoting ? quotedPieces : plainPieces
      return (0..<count).map { _ in pieces.randomElement(using: &rng)! }.joined()
    }
    let ints = [0, 1, -1, Int.max, Int.min, 42, -1_000_000_007]
    let doubles = [0.0, -0.0, 1.5, -2.25, 1e-300, 5e-324, 1.7976931348623157e308, 0.1, 123456.789, 1e22, 3e-7]
    return (0..<n).map { i in
      TableRow(
        id: Int.random(in: 0..<4, using: &rng) == 0
          ? ints.randomElement(using: &rng)! : Int.random(in: -9999...9999, using: &rng) * 1000 + i,
        name: text(false),
        price: Int.random(in: 0..<5, using: &rng) == 0
          ? nil
          : (Bool.random(using: &rng)
            ? doubles.randomElement(using: &rng)! : Double.random(in: -1e6...1e6, using: &rng)),
        flag: Bool.random(using: &rng),
        small: Int.random(in: 0..<4, using: &rng) == 0 ? nil : Int32.random(in: Int32.min...Int32.max, using: &rng),
        note: Int.random(in: 0..<3, using: &rng) == 0 ? nil : text(true))
    }
  }

  /// The rows as text, written the naive way: a field is quoted when it must be (CSV), rows
  /// end with LF or, at random, CRLF, and the last one may lack its line end.
  public static func text(
    _ rows: [TableRow], delimiter: Character, quoting: Bool, header: Bool, seed: UInt64
  ) -> String {
    var rng = SplitMix64(seed: seed)
    let special: Set<Unicode.Scalar> = [delimiter.unicodeScalars.first!, "\"", "\r", "\n"]
    func field(_ s: String) -> String {
      guard quoting, s.unicodeScalars.contains(where: special.contains) else { return s }
      return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
    var out = header ? names.joined(separator: String(delimiter)) + "\n" : ""
    for (i, row) in rows.enumerated() {
      let fields = [
        "\(row.id)", field(row.name), row.price.map { "\($0)" } ?? "", "\(row.flag)",
        row.small.map { "\($0)" } ?? "", row.note.map(field) ?? "",
      ]
      out += fields.joined(separator: String(delimiter))
      if i < rows.count - 1 || Bool.random(using: &rng) { out += Bool.random(using: &rng) ? "\r\n" : "\n" }
    }
    return out
  }
}

/// The funcs of the delimited-text tests.
public enum DelimitedFuncs {
  public static func register() { _ = [table, write, lines, readSums] as [AnyObject] }

  /// The (key, sum) rows of CSV files.
  public static let readSums = Func("test.readSums") { (shards: Int, paths: [String]) in
    readDelimited(shards, paths: paths, as: Int.self, Int.self, format: .csv())
  }

  /// The lines of the files `paths` name.
  public static let lines = Func("test.lines") { (shards: Int, paths: [String]) in scanReader(shards, paths: paths) }

  /// The table's rows read from `paths`: CSV (quoted, line breaks in fields when
  /// `newlines`) or TSV, with a checked header or none.
  public static let table = Func("test.delimitedTable") {
    (shards: Int, paths: [String], csv: Bool, newlines: Bool, header: Bool)
      -> Slice<Int, String, Double?, Bool, Int32?, String?> in
    let names: DelimitedFormat.Header = header ? .names(TableRow.names) : .none
    return readDelimited(
      shards, paths: paths, as: Int.self, String.self, Double?.self, Bool.self, Int32?.self, String?.self,
      format: csv ? .csv(header: names, quotedNewlines: newlines) : .tsv(header: names))
  }

  /// `rows` written as the table's files at `prefix`, with a header: one row per shard, its
  /// file and row count.
  public static let write = Func("test.delimitedWrite") {
    (shards: Int, rows: [TableRow], prefix: String, csv: Bool, compression: OutputCompression) -> Slice<String, Int> in
    let names: DelimitedFormat.Header = .names(TableRow.names)
    return const(
      shards, rows.map(\.id), rows.map(\.name), rows.map(\.price), rows.map(\.flag), rows.map(\.small), rows.map(\.note)
    ).writeDelimited(
      to: prefix, format: csv ? .csv(header: names, quotedNewlines: true) : .tsv(header: names),
      compression: compression)
  }
}
