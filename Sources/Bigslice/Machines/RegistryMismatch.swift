#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// The func registries of the driver and a worker, compared.
///
/// Funcs are Swift globals, registered when first touched, so two processes of one binary may
/// have registered different sets by the time they compare. A func registered in both under
/// one key with different signatures is an error at machine start: the worker would build
/// another job. A func the worker lacks fails when it is invoked, naming the func; one only
/// the worker has is harmless.
struct RegistryMismatch: Error, CustomStringConvertible {
  /// Keys registered in both with different signatures, with the driver's and the worker's.
  let differing: [(key: String, driver: String, worker: String)]
  /// Keys registered only in the driver.
  let onlyInDriver: [String]

  init(driver: [String], worker: [String]) {
    func table(_ lines: [String]) -> [String: String] {
      var t: [String: String] = [:]
      for line in lines {
        let key = line.components(separatedBy: ": ").first ?? line
        t[key] = line
      }
      return t
    }
    let d = table(driver)
    let w = table(worker)
    differing = d.keys.sorted().compactMap { key in
      guard let mine = w[key], mine != d[key] else { return nil }
      return (key, d[key]!, mine)
    }
    onlyInDriver = d.keys.filter { w[$0] == nil }.sorted()
  }

  var description: String {
    "the worker's func registry differs from the driver's: funcs with other signatures: "
      + differing.map { "\($0.driver) in the driver, \($0.worker) in the worker" }.joined(separator: "; ")
      + " (the driver and its workers must run the same build)"
  }
}
