#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

#if canImport(Glibc)
  import Glibc
#endif

/// Decodes argument `index` of a func from its JSON, as the func's parameter type.
func decodeArgument(_ type: Any.Type, _ json: String, index: Int, func key: String) throws -> Any {
  guard let decodable = type as? any Decodable.Type else {
    throw BigsliceError.invalidArgument("argument \(index + 1) of func \(key) (\(type)) is not Decodable")
  }
  do {
    return try JSONDecoder().decode(decodable, from: Data(json.utf8))
  } catch {
    throw BigsliceError.invalidArgument("argument \(index + 1) of func \(key) does not decode as \(type): \(error)")
  }
}

/// The JSON of argument `index` of a func, for its workers.
func encodeArgument(_ value: Any, index: Int, func key: String) throws -> String {
  guard let encodable = value as? any Encodable else {
    throw BigsliceError.invalidArgument(
      "argument \(index + 1) of func \(key) (\(type(of: value))) is not Codable, so it cannot be sent to machines")
  }
  do {
    return String(decoding: try JSONEncoder().encode(encodable), as: UTF8.self)
  } catch {
    throw BigsliceError.invalidArgument("argument \(index + 1) of func \(key) does not encode: \(error)")
  }
}
