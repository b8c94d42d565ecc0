import Bigmachine
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// The driver's debug pages over HTTP/1 (NIO's parser and encoder; nothing hand-written):
/// - `/debug/status`: an HTML page that reloads itself every 2 s, with each recent job's
///   operations (upstream first), the operations each reads, their task counts and a cell
///   per task coloured by its state, and the machines with their memory, disk and load;
/// - `/debug/tasks`: the same as JSON (`DebugTasks`);
/// - `/debug/trace`: the Chrome trace so far;
/// - `/debug`: links to the three.
///
/// Pages are made on the server's event loop from the status model's snapshots: a request
/// takes the status locks briefly and never waits for a task.
final class DebugServer: Sendable {
  /// The address and port the server listens on (the port chosen when 0 was asked for).
  let host: String
  let port: Int
  private let channel: any Channel

  /// Listens on `address`: `HOST:PORT`, or `:PORT` or `PORT` for loopback (`127.0.0.1`);
  /// port 0 takes any free port.
  /// - Throws: `BigsliceError.invalidArgument` for an address it cannot read; NIO's error when
  ///   it cannot listen there.
  init(address: String, pages: DebugPages) throws {
    let (host, port) = try DebugServer.parse(address)
    let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
          try channel.pipeline.syncOperations.addHandler(DebugHandler(pages: pages))
        }
      }
    channel = try bootstrap.bind(host: host, port: port).wait()
    self.host = host
    self.port = channel.localAddress?.port ?? port
  }

  /// Stops listening; connections already open finish their request.
  func stop() { channel.close(promise: nil) }

  static func parse(_ address: String) throws -> (String, Int) {
    if let port = Int(address.hasPrefix(":") ? String(address.dropFirst()) : address) {
      guard (0...65535).contains(port) else {
        throw BigsliceError.invalidArgument("debug address \(address): the port is not 0 to 65535")
      }
      return ("127.0.0.1", port)
    }
    guard let (host, port) = splitHostPort(address) else {
      throw BigsliceError.invalidArgument("debug address \(address): expected HOST:PORT, [IPV6]:PORT, :PORT or PORT")
    }
    return (host, port)
  }
}

/// `text` with HTML's special characters escaped.
func html(_ text: String) -> String {
  var out = ""
  for c in text {
    switch c {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    default: out.append(c)
    }
  }
  return out
}

/// Answers each request once its end has arrived.
private final class DebugHandler: ChannelInboundHandler, RemovableChannelHandler {
  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let pages: DebugPages
  private var head: HTTPRequestHead?

  init(pages: DebugPages) { self.pages = pages }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head): self.head = head
    case .body: break
    case .end:
      guard let head else { return }
      self.head = nil
      let (status, type, text) = pages.respond(method: head.method, uri: head.uri)
      let body = context.channel.allocator.buffer(string: text)
      var headers = HTTPHeaders()
      headers.add(name: "Content-Type", value: type)
      headers.add(name: "Content-Length", value: "\(body.readableBytes)")
      headers.add(name: "Cache-Control", value: "no-store")
      let keepAlive = head.isKeepAlive
      if !keepAlive { headers.add(name: "Connection", value: "close") }
      context.write(
        wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
      if head.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
      let sent = context.writeAndFlush(wrapOutboundOut(.end(nil)))
      if !keepAlive {
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        sent.whenComplete { _ in bound.value.close(promise: nil) }
      }
    }
  }
}
