/// Errors raised by the Frame layer. Each case carries what a user needs to find the problem.
public enum FrameError: Error, Equatable, CustomStringConvertible {
  /// A value or column of one type was used where another was expected.
  case typeMismatch(expected: String, found: String)
  /// Columns of a frame have different lengths.
  case lengthMismatch(column: Int, expected: Int, found: Int)
  /// A boxed column type was used (decoded, hashed, compared) before it was registered.
  case unregisteredType(String)
  /// An operation does not support a column type (for example a boxed combiner key).
  case unsupported(String)
  /// Encoded column data is malformed: a length out of bounds, a bad offset, bad UTF-8.
  case corrupt(String)
  /// A C kernel ran out of memory.
  case outOfMemory(String)
  /// A boxed value failed to encode or decode with its Codable implementation.
  case codable(type: String, message: String)
  /// An argument is out of its documented range (a group id past the group count, say).
  case invalidArgument(String)

  public var description: String {
    switch self {
    case .typeMismatch(let expected, let found): "type mismatch: expected \(expected), found \(found)"
    case .lengthMismatch(let column, let expected, let found):
      "column \(column) has \(found) rows, expected \(expected)"
    case .unregisteredType(let name):
      "boxed column type \(name) is not registered; call BoxedOps.register(\(name).self) before use"
    case .unsupported(let what): "unsupported: \(what)"
    case .corrupt(let what): "corrupt column data: \(what)"
    case .outOfMemory(let what): "out of memory: \(what)"
    case .codable(let type, let message): "cannot code a value of type \(type): \(message)"
    case .invalidArgument(let what): "invalid argument: \(what)"
    }
  }
}
