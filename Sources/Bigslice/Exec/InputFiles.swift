import SliceIO

#if canImport(Glibc)
  import Glibc
#endif

/// The paths a file reader was given (files, directories, patterns), expanded into files once
/// per compile: by the driver, whose list its machines then use, so every process reads the
/// same files. A task finds its compile's list in its `TaskContext`.
final class InputFiles: Sendable {
  /// The reader's name in errors (`scanReader`, `readDelimited`).
  let op: String
  let paths: [String]

  init(op: String, paths: [String]) {
    self.op = op
    self.paths = paths
  }

  /// The files `paths` name, each expanded and sorted, in the order of `paths`.
  /// - Throws: `BigsliceError.invalidArgument` for a pattern or directory with no file, or
  ///   one that cannot be read.
  func expand() throws -> [String] {
    try paths.flatMap { try Self.expand($0, op: op) }
  }

  /// The files `path` names: itself, a directory's files (not hidden ones or subdirectories),
  /// or a pattern's matches, sorted.
  private static func expand(_ path: String, op: String) throws -> [String] {
    var info = stat()
    if stat(path, &info) == 0 {
      guard info.st_mode & S_IFMT == S_IFDIR else { return [path] }
      let files = directoryEntries(path).filter { !$0.hasPrefix(".") }.map { "\(path)/\($0)" }.filter { name in
        var entry = stat()
        return stat(name, &entry) == 0 && entry.st_mode & S_IFMT == S_IFREG
      }.sorted()
      guard !files.isEmpty else { throw BigsliceError.invalidArgument("\(op): directory \(path) holds no file") }
      return files
    }
    // Not a file: a pattern, if it has pattern characters (else the file is missing, which
    // its read reports with the reason).
    guard path.contains(where: { "*?[".contains($0) }) else { return [path] }
    var matches = glob_t()
    defer { globfree(&matches) }
    let rc = glob(path, 0, nil, &matches)
    guard rc == 0 else {
      throw BigsliceError.invalidArgument(
        rc == GLOB_NOMATCH ? "\(op): pattern \(path) matches no file" : "\(op): pattern \(path) cannot be read")
    }
    return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }.sorted()
  }
}

extension TaskContext {
  /// The files of `input` in the compile this task belongs to (expanded now if the task was
  /// made without one).
  func files(_ input: InputFiles) throws -> [String] {
    if let files = inputFiles[ObjectIdentifier(input)] { return files }
    return try input.expand()
  }
}
