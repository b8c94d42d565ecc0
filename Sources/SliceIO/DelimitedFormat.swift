/// How a delimited text file is laid out: its delimiter, its quoting, its header, and what to
/// do with a bad row. `.csv()` and `.tsv()` are the usual ones.
public struct DelimitedFormat: Sendable, Hashable {
  /// The first line of a file, when it names the columns.
  public enum Header: Sendable, Hashable {
    /// Every line is a row.
    case none
    /// The first line names the columns, and is skipped (it must have as many fields as
    /// there are columns).
    case present
    /// The first line must hold exactly these names, one per column; a file whose header
    /// differs fails the job, naming the file and both headers.
    case names([String])
  }

  /// The byte between fields: not a line end or a double quote.
  public var delimiter: UInt8
  /// Fields may be quoted as RFC 4180 says: a field that starts with `"` runs to the next
  /// `"` not doubled, and `""` inside it is one `"`. Without quoting, `"` is an ordinary byte.
  public var quoting: Bool
  /// A quoted field may hold line ends. A file that may have them cannot be cut into byte
  /// ranges, so each file is then read whole by one shard; without this option a quote left
  /// open at a line's end is an error.
  public var quotedNewlines: Bool
  /// Whether each file starts with a header line.
  public var header: Header
  /// Rows with a bad field or the wrong number of fields are skipped and counted (the
  /// job's metrics count them as `badRows`) instead of failing the job.
  public var skipBadRows: Bool

  /// A format of your own.
  /// - Precondition: `delimiter` is one ASCII character, not a line end or `"`.
  public init(
    delimiter: Character, quoting: Bool, quotedNewlines: Bool = false, header: Header = .none,
    skipBadRows: Bool = false
  ) {
    precondition(
      delimiter.isASCII && !"\r\n\"".contains(delimiter) && delimiter.asciiValue != nil,
      "a delimiter is one ASCII character other than a line end or a double quote")
    self.delimiter = delimiter.asciiValue!
    self.quoting = quoting
    self.quotedNewlines = quotedNewlines && quoting
    self.header = header
    self.skipBadRows = skipBadRows
  }

  /// Comma-separated values with RFC 4180 quoting.
  public static func csv(header: Header = .none, quotedNewlines: Bool = false, skipBadRows: Bool = false)
    -> DelimitedFormat
  {
    DelimitedFormat(
      delimiter: ",", quoting: true, quotedNewlines: quotedNewlines, header: header, skipBadRows: skipBadRows)
  }

  /// Tab-separated values, unquoted: a field holds no tab and no line end.
  public static func tsv(header: Header = .none, skipBadRows: Bool = false) -> DelimitedFormat {
    DelimitedFormat(delimiter: "\t", quoting: false, header: header, skipBadRows: skipBadRows)
  }
}
