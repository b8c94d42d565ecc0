/// `host:port`, bracketing an IPv6 host (`[::1]:7070`).
public func joinHostPort(_ host: String, _ port: Int) -> String {
  host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
}

/// The host and port of `host:port`, `[ipv6]:port` or a bare IPv6 address with a port after
/// its last colon only when bracketed: the host comes back without brackets, ready for
/// `getaddrinfo`. Nil when there is no port, the port is not 0 to 65535, or the host is empty.
public func splitHostPort(_ address: String) -> (host: String, port: Int)? {
  guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
    (0...65535).contains(port)
  else { return nil }
  var host = address[..<colon]
  if host.hasPrefix("[") {
    guard host.hasSuffix("]"), host.count > 2 else { return nil }
    host = host.dropFirst().dropLast()
  } else if host.contains(":") {
    // An IPv6 address with a port must be bracketed: "::1:80" could be either.
    return nil
  }
  guard !host.isEmpty else { return nil }
  return (String(host), port)
}
