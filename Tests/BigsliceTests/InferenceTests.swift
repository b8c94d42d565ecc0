import Foundation
import Testing

/// Type-checks snippets of user code against the built `Bigslice` module with `swiftc`, as a
/// user's package would compile them: the chains that must infer with no annotations beyond
/// a closure's parameters, and a mistake that must not compile.
@Suite(.engine) struct InferenceTests {
  /// The directory of the built modules, beside the test bundle.
  static func buildDirectory() throws -> URL {
    let exe = try #require(Bundle.main.executablePath.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath() })
    return exe.deletingLastPathComponent()
  }

  /// `swiftc -typecheck` of `source` with the package's modules and C module maps; its exit
  /// status and everything it printed.
  static func typecheck(_ source: String) throws -> (status: Int32, output: String) {
    let build = try buildDirectory()
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    var maps: [String] = []
    let fm = FileManager.default
    // Host tools' copies of a module (`-tool.build`) would define it twice.
    for entry in (try? fm.contentsOfDirectory(atPath: build.path)) ?? []
    where entry.hasSuffix(".build") && !entry.hasSuffix("-tool.build") {
      for candidate in ["\(entry)/module.modulemap", "\(entry)/include/module.modulemap"]
      where fm.fileExists(atPath: build.appendingPathComponent(candidate).path) {
        maps.append(build.appendingPathComponent(candidate).path)
      }
    }
    let checkouts = root.appendingPathComponent(".build/checkouts")
    if let walker = fm.enumerator(atPath: checkouts.path) {
      for case let path as String in walker
      where path.hasSuffix("include/module.modulemap") && path.contains("/Sources/") {
        maps.append(checkouts.appendingPathComponent(path).path)
      }
    }
    let file = NSTemporaryDirectory() + "/bigslice-inference-\(UUID().uuidString).swift"
    try source.write(toFile: file, atomically: true, encoding: .utf8)
    defer { try? fm.removeItem(atPath: file) }
    var arguments = ["swiftc", "-typecheck", "-I", build.appendingPathComponent("Modules").path]
    for map in maps { arguments += ["-Xcc", "-fmodule-map-file=\(map)"] }
    arguments.append(file)
    let shell = arguments.map { "'\($0)'" }.joined(separator: " ") + " 2>&1"
    let result = try run("/bin/sh", ["-c", shell])
    return (result.status, result.out)
  }

  @Test func theCommonChainsTypeCheckWithoutAnnotations() throws {
    let source = """
      import Bigslice
      // map right after cogroup, with unannotated closure parameters
      let a = const(4, [1, 2], [3, 4])
      let b = const(4, [1, 2], ["x", "y"])
      let joined = cogroup(a, b).map { k, xs, ys in (k, xs.count * ys.count) }
      // a Func returning a cogroup with no declared return type
      let f = Func("y") { (shards: Int, k: [Int], v: [Int]) in cogroup(const(shards, k, v), const(shards, k, v)) }
      // flatMap to one column without a type token
      let words = const(2, ["a b", "c"]).flatMap { (out: RowEmitter<String>, line: String) in
        for w in line.split(separator: " ") { out.emit(String(w)) }
      }
      // keys of two columns
      let sums = const(2, ["a"], [1], [2]).prefixed(2).reduce(.sum)
      let largest = const(2, ["a"], [1], [2]).prefixed(2).reduce { max($0, $1) }
      let g = Func("z") { (s: Int, a: [String], b: [Int], c: [Int]) in const(s, a, b, c).prefixed(2).fold(0) { $0 + $1 } }
      let pairs = cogroup(a.map { k, v in (k, k, v) }.prefixed(2), a.map { k, v in (k, k, "\\(v)") }.prefixed(2))
      // a struct key stored as columns, declared as the README shows, with nothing but Bigslice
      struct Cell: ColumnRecord {
        var row: Int
        var column: Int
        static let columns = RecordColumns(Cell.init(row:column:), \\.row, \\.column)
      }
      let cells = a.map { k, v in (Cell(row: k, column: v), 1) }.reduce(.sum)
      // a plain Codable struct key, and opting a type out into boxed storage
      struct Visit: Codable, Hashable, Sendable { var user: String; var day: Int }
      let visits = b.map { k, s in (Visit(user: s, day: k), 1.5) }.reduce { $0 + $1 }
      BoxedOps.register(Visit.self)
      """
    let (status, output) = try Self.typecheck(source)
    #expect(status == 0, "\(output)")
  }

  @Test func aClosureOfTheWrongValueTypeDoesNotCompile() throws {
    let (status, output) = try Self.typecheck(
      """
      import Bigslice
      let wrong = const(2, [1], [2]).reduce { (x: String, y: String) in x + y }
      """)
    #expect(status != 0)
    // The error is the snippet's own, on its second line, not one of setting up the compile.
    #expect(output.contains(".swift:2:") && output.contains("error:"), "\(output)")
  }
}
