import Bigmachine
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The driver's debug pages over HTTP/1 (NIO's parser and encoder; nothing hand-written):
/// - `/debug/status`: an HTML page that reloads itself every 2 s, with each recent job's
///   operations (upstream first), the operations each reads, their task counts and a cell
///   per task coloured by its state, and the machines with their memory, disk and load;
/// - `/debug/tasks`: the same as JSON (`DebugTasks`);
/// - `/debug/trace`: the Chrome trace so far;
/// - `/debug`: links to the three.
///
/// Pages are made on NIO's blocking pool from the status model's snapshots (never on the
/// event loop that RPC connections share): a request takes the status locks briefly and
/// never waits for a task. At most `maxConnections` are open at once (more are closed as they
/// come), one idle for `idleTimeout` is closed, and a request whose `Host` is not this
/// server's (a DNS-rebinding page in a browser) is refused with 403: a server on a loopback
/// address answers only `localhost`, `127.0.0.1` and `[::1]` at its port, one on a named
/// address only that address, and one on every interface any host at its port.
final class DebugServer: Sendable {
  static let maxConnections = 64
  static let idleTimeout: TimeAmount = .seconds(30)
  /// The address and port the server listens on (the port chosen when 0 was asked for).
  let host: String
  let port: Int
  private let channel: any Channel

  /// Listens on `address`: `HOST:PORT`, or `:PORT` or `PORT` for loopback (`127.0.0.1`);
  /// port 0 takes any free port.
  /// - Throws: `BigsliceError.invalidArgument` for an address it cannot read; NIO's error when
  ///   it cannot listen there.
  init(address: String, pages: DebugPages, idleTimeout: TimeAmount = DebugServer.idleTimeout) throws {
    let (host, port) = try DebugServer.parse(address)
    let open = Locked(0)
    let hosts = Locked<Set<String>?>(nil)
    let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
      .serverChannelOption(.backlog, value: 64)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      .childChannelInitializer { channel in
        let admitted = open.value.withLock { n -> Bool in
          guard n < DebugServer.maxConnections else { return false }
          n += 1
          return true
        }
        guard admitted else { return channel.eventLoop.makeFailedFuture(ChannelError.inputClosed) }
        channel.closeFuture.whenComplete { _ in open.value.withLock { $0 -= 1 } }
        return channel.eventLoop.makeCompletedFuture {
          try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idleTimeout))
          try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
          try channel.pipeline.syncOperations.addHandler(
            DebugHandler(pages: pages, allowedHosts: hosts.value.withLock { $0 }))
        }
      }
    channel = try bootstrap.bind(host: host, port: port).wait()
    self.host = host
    self.port = channel.localAddress?.port ?? port
    hosts.value.withLock { $0 = DebugServer.allowedHosts(host: host, port: self.port) }
  }

  /// Stops listening; connections already open finish their request.
  func stop() { channel.close(promise: nil) }

  /// The `Host` values a server bound to `host:port` answers; nil for any (every interface).
  static func allowedHosts(host: String, port: Int) -> Set<String>? {
    if host == "0.0.0.0" || host == "::" { return nil }
    let loopback = host.hasPrefix("127.") || host == "::1" || host == "localhost"
    let names = loopback ? ["localhost", "127.0.0.1", "::1", host] : [host]
    return Set(names.map { joinHostPort($0, port).lowercased() })
  }

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
  private let allowedHosts: Set<String>?
  private var head: HTTPRequestHead?

  init(pages: DebugPages, allowedHosts: Set<String>?) {
    self.pages = pages
    self.allowedHosts = allowedHosts
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head): self.head = head
    case .body: break
    case .end:
      guard let head else { return }
      self.head = nil
      let host = head.headers.first(name: "Host")?.lowercased()
      if let allowedHosts, !(host.map(allowedHosts.contains) ?? false) {
        let shown = host.map { wireSafe($0) } ?? "none"
        return reply(context, head, (.forbidden, "text/plain", "this server does not answer for host \(shown)\n"))
      }
      // A page (the whole trace, say) is made off the event loop that connections share.
      let pages = self.pages
      let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
      NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) {
        pages.respond(method: head.method, uri: head.uri)
      }
      .whenComplete { result in
        let (handler, context) = bound.value
        switch result {
        case .success(let page): handler.reply(context, head, page)
        case .failure: context.close(promise: nil)
        }
      }
    }
  }

  private func reply(
    _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ page: (HTTPResponseStatus, String, String)
  ) {
    let (status, type, text) = page
    let body = context.channel.allocator.buffer(string: text)
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: type)
    headers.add(name: "Content-Length", value: "\(body.readableBytes)")
    headers.add(name: "Cache-Control", value: "no-store")
    headers.add(name: "X-Content-Type-Options", value: "nosniff")
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

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      context.close(promise: nil)
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }
}

/// At most 200 characters of a header a client sent, control characters replaced.
private func wireSafe(_ text: String) -> String {
  String(
    String.UnicodeScalarView(
      text.unicodeScalars.prefix(200).map { $0.properties.generalCategory == .control ? "\u{FFFD}" : $0 }))
}

/// A value behind a lock, shared by the closures of a server.
private final class Locked<T: Sendable>: Sendable {
  let value: Mutex<T>
  init(_ initial: T) { value = Mutex(initial) }
}
