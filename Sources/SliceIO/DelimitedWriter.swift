import CSupport
import Frame

#if canImport(Glibc)
  import Glibc
#endif

/// How an output file is compressed.
public enum OutputCompression: String, Sendable, Hashable, Codable {
  /// Plain text.
  case none
  /// gzip, by Intel ISA-L at its level 1: any gzip reader reads it.
  case gzip
  /// zstd at level 3.
  case zstd

  /// The file name's suffix: `""`, `".gz"` or `".zst"`.
  public var suffix: String {
    switch self {
    case .none: ""
    case .gzip: ".gz"
    case .zstd: ".zst"
    }
  }
}

/// Writes frames as delimited text (see `DelimitedFormat`) to a file that appears whole or
/// not at all: rows go to a temporary file beside it, which `finish()` syncs and renames over
/// `path`. A writer dropped before `finish()` removes its temporary file.
///
/// Columns of integers, floating-point numbers, booleans and strings are written, and boxed
/// values (optionals among them) as their `description`, a nil as an empty field. With
/// quoting (CSV), a string that holds the delimiter, a quote, CR or LF is quoted; without
/// (TSV), such a string is an error. Integers and strings are formatted column by column in
/// C; doubles as Swift's shortest form that reads back to the same value.
public final class DelimitedWriter {
  /// Where the file appears when finished.
  public let path: String
  private let temporary: String
  private let format: DelimitedFormat
  private var fd: Int32
  private var compressor: OpaquePointer?
  private var wroteHeader = false
  private var out: UnsafeMutablePointer<UInt8>
  private var outCapacity = 1 << 20
  /// Rows written so far.
  public private(set) var rows = 0
  private var finished = false

  /// Creates the temporary file for `path`.
  /// - Throws: `SliceIOError.io` when it cannot be created; `.frame` for a header `.present`
  ///   (a header is written from its names, `.names([...])`).
  public init(path: String, format: DelimitedFormat, compression: OutputCompression = .none) throws {
    if case .present = format.header {
      throw SliceIOError.frame(.invalidArgument("a written header needs its names: use .names([...])"))
    }
    self.path = path
    self.format = format
    var random = SystemRandomNumberGenerator()
    temporary = "\(path).tmp-\(getpid())-\(String(random.next() as UInt32, radix: 16))"
    fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    if fd < 0 { throw SliceIOError.io(path: temporary, operation: "create", errno: errno) }
    out = .allocate(capacity: outCapacity)
    switch compression {
    case .none: compressor = nil
    case .gzip: compressor = bs_comp_new(BS_DECOMP_GZIP, 1)
    case .zstd: compressor = bs_comp_new(BS_DECOMP_ZSTD, 3)
    }
    if compression != .none && compressor == nil {
      close(fd)
      unlink(temporary)
      out.deallocate()
      throw SliceIOError.io(path: temporary, operation: "start compressing", errno: ENOMEM)
    }
  }

  deinit {
    if !finished {
      close(fd)
      unlink(temporary)
    }
    bs_comp_free(compressor)
    out.deallocate()
  }

  /// Appends `frame`'s rows.
  /// - Throws: `SliceIOError.frame` for a column type that cannot be written as text (a
  ///   record, bytes), a header with another number of names than the frame's columns, or a
  ///   string TSV cannot hold (naming its row and column); `SliceIOError.io` when the file
  ///   cannot be written (a full disk is `ENOSPC`).
  public func write(_ frame: Frame) throws {
    precondition(!finished, "a finished DelimitedWriter written to")
    try writeHeader()
    if case .names(let names) = format.header, names.count != frame.columns.count {
      throw SliceIOError.frame(.invalidArgument("a header of \(names.count) names for \(frame.columns.count) columns"))
    }
    let count = frame.count
    guard count > 0 else { return }
    let texts = try frame.columns.enumerated().map { try text($1, column: $0, rowBase: rows) }
    try emit(texts, rows: count)
    rows += count
  }

  /// Writes the header line, once, when the format has one.
  private func writeHeader() throws {
    guard !wroteHeader else { return }
    wroteHeader = true
    guard case .names(let names) = format.header, !names.isEmpty else { return }
    let view = try Column.make(names).variableWidth
    let header = try withExtendedLifetime(view) {
      try quoted(offsets: view.offsets, bytes: view.bytes, count: names.count, column: 0, rowBase: 0)
    }
    var line: [UInt8] = []
    for i in 0..<header.count {
      line += header.field(i)
      line.append(i + 1 < header.count ? format.delimiter : 0x0A)
    }
    try line.withUnsafeBytes { try output($0) }
  }

  /// Joins `texts` row by row into the output buffer and writes it.
  private func emit(_ texts: [TextColumn], rows count: Int) throws {
    let needed = texts.reduce(0) { $0 + $1.byteCount } + texts.count * count
    if needed > outCapacity {
      out.deallocate()
      outCapacity = max(needed, outCapacity * 2)
      out = .allocate(capacity: outCapacity)
    }
    let bases = texts.map { UnsafePointer<UInt8>?($0.bytes) }
    let offsets = texts.map { UnsafePointer<Int64>?($0.offsets) }
    let written = bs_delim_join_rows(bases, offsets, texts.count, count, format.delimiter, out)
    precondition(written >= 0, "bs_delim_join_rows refused its arguments")
    try output(UnsafeRawBufferPointer(start: out, count: Int(written)))
  }

  /// The text of each field of `column`, as a field of the format.
  private func text(_ column: Column, column index: Int, rowBase: Int) throws -> TextColumn {
    let n = column.count
    switch column.type {
    case .scalar(let kind):
      switch kind {
      case .int64: return TextColumn(column.scalars(Int64.self).base, count: n, bs_delim_format_i64)
      case .int32: return TextColumn(widening: column.scalars(Int32.self))
      case .int16: return TextColumn(widening: column.scalars(Int16.self))
      case .int8: return TextColumn(widening: column.scalars(Int8.self))
      case .uint64: return TextColumn(column.scalars(UInt64.self).base, count: n, bs_delim_format_u64)
      case .uint32: return TextColumn(widening: column.scalars(UInt32.self))
      case .uint16: return TextColumn(widening: column.scalars(UInt16.self))
      case .uint8: return TextColumn(widening: column.scalars(UInt8.self))
      case .bool:
        let values = column.scalars(Bool.self)
        return TextColumn(described: (0..<n).map { values[$0] ? "true" : "false" })
      case .double:
        let values = column.scalars(Double.self)
        return TextColumn(described: (0..<n).map { "\(values[$0])" })
      case .float:
        let values = column.scalars(Float.self)
        return TextColumn(described: (0..<n).map { "\(values[$0])" })
      }
    case .string:
      let view = column.variableWidth
      return try withExtendedLifetime(view) {
        try quoted(offsets: view.offsets, bytes: view.bytes, count: n, column: index, rowBase: rowBase)
      }
    case .boxed:
      let texts = try Column.make((0..<n).map { describe(column.anyValue(at: $0).base) })
      let view = texts.variableWidth
      return try withExtendedLifetime(view) {
        try quoted(offsets: view.offsets, bytes: view.bytes, count: n, column: index, rowBase: rowBase)
      }
    case .bytes, .record:
      throw SliceIOError.frame(
        .unsupported("column \(index + 1) of type \(column.type) as delimited text: write its fields as columns"))
    }
  }

  private func quoted(
    offsets: UnsafePointer<Int64>, bytes: UnsafePointer<UInt8>, count: Int, column: Int, rowBase: Int
  ) throws -> TextColumn {
    let total = Int(offsets[count] - offsets[0])
    let text = TextColumn(count: count, capacity: 2 * total + 2 * count)
    let bad = bs_delim_format_strings(
      offsets, bytes, count, format.delimiter, format.quoting ? 1 : 0, text.offsets, text.bytes)
    precondition(bad >= -1, "bs_delim_format_strings refused its arguments")
    if bad >= 0 {
      throw SliceIOError.frame(
        .invalidArgument(
          "row \(rowBase + Int(bad) + 1), column \(column + 1) holds a delimiter or line end, which a format without "
            + "quoting cannot write (use .csv())"))
    }
    return text
  }

  /// Compresses (when compressing) and writes `bytes`.
  private func output(_ bytes: UnsafeRawBufferPointer, finish: Bool = false) throws {
    guard let compressor else {
      try writeAll(bytes)
      return
    }
    let staging = UnsafeMutablePointer<UInt8>.allocate(capacity: 1 << 20)
    defer { staging.deallocate() }
    var taken = 0
    while true {
      var used = 0
      var made = 0
      let status = bs_comp_run(
        compressor, bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + taken }, bytes.count - taken,
        &used, staging, 1 << 20, &made, finish ? 1 : 0)
      guard status != BS_COMP_FAILED else {
        throw SliceIOError.io(path: temporary, operation: "compress", errno: ENOMEM)
      }
      taken += used
      if made > 0 { try writeAll(UnsafeRawBufferPointer(start: staging, count: made)) }
      if finish ? status == BS_COMP_END : (taken == bytes.count && made < 1 << 20) { return }
    }
  }

  private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
    var done = 0
    while done < bytes.count {
      let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
      if n < 0 {
        if errno == EINTR { continue }
        throw SliceIOError.io(path: temporary, operation: "write", errno: errno)
      }
      done += n
    }
  }

  /// Ends the file: flushes the compressor, syncs the file, and renames it to `path` (then
  /// syncs its directory), so that `path` holds all the rows or its previous contents.
  /// - Throws: `SliceIOError.io` naming the step that failed.
  public func finish() throws {
    precondition(!finished, "a DelimitedWriter finished twice")
    try writeHeader()
    if compressor != nil { try output(UnsafeRawBufferPointer(start: nil, count: 0), finish: true) }
    guard fsync(fd) == 0 else { throw SliceIOError.io(path: temporary, operation: "sync", errno: errno) }
    guard close(fd) == 0 else { throw SliceIOError.io(path: temporary, operation: "close", errno: errno) }
    finished = true
    guard rename(temporary, path) == 0 else {
      let code = errno
      unlink(temporary)
      throw SliceIOError.io(path: path, operation: "rename into place", errno: code)
    }
    let slash = path.lastIndex(of: "/")
    let dir = slash.map { String(path[..<$0]) } ?? "."
    let dirfd = open(dir.isEmpty ? "/" : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if dirfd >= 0 {
      fsync(dirfd)
      close(dirfd)
    }
  }
}

/// A value's text: its description, or empty for a nil optional.
private func describe(_ value: Any) -> String {
  let mirror = Mirror(reflecting: value)
  if mirror.displayStyle == .optional {
    guard let (_, wrapped) = mirror.children.first else { return "" }
    return describe(wrapped)
  }
  if let string = value as? String { return string }
  return "\(value)"
}

/// A column of field texts: offsets plus bytes.
final class TextColumn {
  let count: Int
  let offsets: UnsafeMutablePointer<Int64>
  let bytes: UnsafeMutablePointer<UInt8>

  init(count: Int, capacity: Int) {
    self.count = count
    offsets = .allocate(capacity: count + 1)
    offsets[0] = 0
    bytes = .allocate(capacity: max(capacity, 1))
  }

  deinit {
    offsets.deallocate()
    bytes.deallocate()
  }

  var byteCount: Int { Int(offsets[count]) }

  /// The bytes of field `i`.
  func field(_ i: Int) -> [UInt8] {
    Array(UnsafeBufferPointer(start: bytes + Int(offsets[i]), count: Int(offsets[i + 1] - offsets[i])))
  }

  /// The decimal text of `count` integers at `values`, by `kernel` (`bs_delim_format_i64`
  /// or `_u64`).
  convenience init<T>(
    _ values: UnsafePointer<T>?, count: Int,
    _ kernel: (UnsafePointer<T>?, Int, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<UInt8>?) -> bs_error
  ) {
    self.init(count: count, capacity: 20 * count)
    precondition(kernel(values, count, offsets, bytes) == BS_OK, "a delimited format kernel refused its arguments")
  }

  /// The decimal text of a column of a narrow integer type, widened to 64 bits.
  convenience init<T: BinaryInteger & ScalarValue>(widening view: ScalarView<T>) {
    if T.isSigned {
      let values = (0..<view.count).map { Int64(view[$0]) }
      self.init(values, count: values.count, bs_delim_format_i64)
    } else {
      let values = (0..<view.count).map { UInt64(view[$0]) }
      self.init(values, count: values.count, bs_delim_format_u64)
    }
  }

  /// Texts that need no quoting (numbers and booleans).
  convenience init(described texts: [String]) {
    self.init(count: texts.count, capacity: texts.reduce(0) { $0 + $1.utf8.count })
    var at = 0
    for (i, text) in texts.enumerated() {
      for byte in text.utf8 {
        bytes[at] = byte
        at += 1
      }
      offsets[i + 1] = Int64(at)
    }
  }
}
