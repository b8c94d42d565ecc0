import NIOCore

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif

/// How `Codable` arguments, replies, errors and service values travel: JSON.
///
/// Why JSON: it needs no schema or type registry beyond `Codable`, it is the same on every
/// platform, and a reader can see it on the wire. Its cost (a few microseconds per small
/// call) is small beside a loopback round trip; bulk bytes never go through it but through
/// streams (ByteStream.swift).
enum Payload {
  static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
    Array(try JSONEncoder().encode(value))
  }

  static func encode<T: Encodable>(_ value: T, allocator: ByteBufferAllocator) throws -> ByteBuffer {
    let data = try JSONEncoder().encode(value)
    var b = allocator.buffer(capacity: data.count)
    b.writeBytes(data)
    return b
  }

  static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
    let data = buffer.withUnsafeReadableBytes { Data($0) }
    return try JSONDecoder().decode(type, from: data)
  }

  static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
    try JSONDecoder().decode(type, from: Data(bytes))
  }
}
