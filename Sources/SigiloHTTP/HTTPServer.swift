import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 server on POSIX sockets, with no knowledge of what it serves.
///
/// One thread per connection doing blocking I/O: a handler may block (on the
/// database, say) without starving a shared pool. Every read has a deadline:
/// a request must arrive whole within `requestTimeout` of its first byte
/// (slow-loris), and an idle keep-alive connection is closed after
/// `idleTimeout`. At most `maximumConnections` are served; more get 503.
/// `shutdown()` stops accepting, lets in-flight requests finish and returns
/// when every connection is closed.
public final class HTTPServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: UInt16
        public var limits: HTTPLimits
        public var maximumConnections: Int
        public var requestTimeout: Double
        public var idleTimeout: Double
        /// Plain TCP or TLS.
        public var channels: any ChannelFactory
        /// Bodies of at least `largeBodyBytes` are received and handled at most
        /// `maximumLargeBodies` at a time; the others wait their turn (their bytes
        /// stay in the kernel), so memory depends on this, not on how many
        /// clients upload at once.
        public var largeBodyBytes: Int = 1 << 20
        public var maximumLargeBodies: Int = 2

        public init(host: String = "127.0.0.1", port: UInt16 = 0, limits: HTTPLimits = HTTPLimits(),
                    maximumConnections: Int = 256, requestTimeout: Double = 30, idleTimeout: Double = 60,
                    channels: any ChannelFactory = PlainChannels()) {
            self.channels = channels
            self.host = host
            self.port = port
            self.limits = limits
            self.maximumConnections = maximumConnections
            self.requestTimeout = requestTimeout
            self.idleTimeout = idleTimeout
        }
    }

    /// Handles one request; `peer` is the client's address ("127.0.0.1:53412").
    public typealias Handler = @Sendable (_ request: HTTPRequest, _ peer: String) -> HTTPResponse

    public let configuration: Configuration
    private let handler: Handler
    private let lock = NSLock()
    private var listenFD: Int32 = -1
    private var connections = 0
    private var stopping = false
    private var acceptThread: Thread?
    private let stopped = DispatchSemaphore(value: 0)
    private let largeBodies: DispatchSemaphore

    public init(configuration: Configuration, handler: @escaping Handler) {
        self.configuration = configuration
        self.handler = handler
        largeBodies = DispatchSemaphore(value: configuration.maximumLargeBodies)
    }

    /// Binds, listens and starts accepting; returns the bound port.
    @discardableResult
    public func start() throws -> UInt16 {
        signal(SIGPIPE, SIG_IGN) // a vanished peer must not kill the server
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = configuration.port.bigEndian
        guard inet_pton(AF_INET, configuration.host, &address.sin_addr) == 1 else {
            close(fd)
            throw HTTPServerError("not an IPv4 address: \(configuration.host)")
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw HTTPServerError("cannot listen on \(configuration.host):\(configuration.port): \(message)")
        }
        guard listen(fd, 128) == 0 else {
            close(fd)
            throw HTTPServerError("listen: \(String(cString: strerror(errno)))")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        lock.withLock { listenFD = fd }
        let thread = Thread { [self] in acceptLoop(fd) }
        thread.name = "sigilo-http-accept"
        thread.start()
        acceptThread = thread
        return UInt16(bigEndian: actual.sin_port)
    }

    /// Stops accepting, waits for in-flight requests and open connections to end.
    public func shutdown() {
        let fd: Int32 = lock.withLock {
            stopping = true
            defer { listenFD = -1 }
            return listenFD
        }
        if fd >= 0 {
            Glibc.shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
            stopped.wait()
        }
        // Connections notice `stopping` within a second and close once idle.
        while lock.withLock({ connections }) > 0 { usleep(10_000) }
    }

    /// The number of connections being served.
    public var openConnections: Int { lock.withLock { connections } }

    private var isStopping: Bool { lock.withLock { stopping } }

    private func acceptLoop(_ fd: Int32) {
        defer { stopped.signal() }
        while true {
            var peerAddress = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let client = withUnsafeMutablePointer(to: &peerAddress) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &length) }
            }
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return // the listening socket was closed: shutting down
            }
            if isStopping { close(client); return }
            let peer = Self.describe(peerAddress)
            let admitted: Bool = lock.withLock {
                guard connections < configuration.maximumConnections else { return false }
                connections += 1
                return true
            }
            guard admitted else {
                let response = HTTPResponse.error(503, code: "too_many_connections", message: "the server is at its connection limit")
                Self.send(client, response.serialized(keepAlive: false))
                close(client)
                continue
            }
            let thread = Thread { [self] in
                serve(client, peer: peer)
                close(client)
                lock.withLock { connections -= 1 }
            }
            thread.start()
        }
    }

    private func serve(_ fd: Int32, peer: String) {
        // Reads wake up every half second so deadlines and shutdown are noticed.
        var timeout = timeval(tv_sec: 0, tv_usec: 500_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // Head and body go out as separate writes: without this, Nagle's algorithm holds a
        // small body back until the client acknowledges the head (a delayed ACK: 40 ms or more).
        var noDelay: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        let deadline = Date().timeIntervalSince1970 + configuration.requestTimeout
        guard let channel = try? configuration.channels.channel(for: fd, deadline: deadline) else { return }
        defer { channel.finish() }
        var parser = RequestParser(limits: configuration.limits)
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var lastActivity = Date()
        var requestStart: Date?
        var holdsLargeBody = false
        defer { if holdsLargeBody { largeBodies.signal() } }
        while true {
            // Answer every complete request already buffered (pipelining).
            while true {
                switch parser.next() {
                case .needMore:
                    break
                case .failure(let error):
                    _ = channel.write(HTTPResponse.error(error.status, code: error.code, message: error.message).serialized(keepAlive: false))
                    return
                case .request(let request):
                    requestStart = nil
                    // (A large body that arrived whole, without pausing, takes its turn here.)
                    if !holdsLargeBody, request.body.count >= configuration.largeBodyBytes {
                        guard takeLargeBodyTurn(channel) else { return }
                        holdsLargeBody = true
                    }
                    let response = handler(request, peer)
                    if holdsLargeBody { largeBodies.signal(); holdsLargeBody = false }
                    let keepAlive = request.keepAlive && !isStopping
                    // Head and body are written separately: a large body is never copied.
                    guard channel.write(response.head(keepAlive: keepAlive)), response.body.isEmpty || channel.write(response.body), keepAlive else { return }
                    lastActivity = Date()
                    continue
                }
                break
            }
            if parser.isIdle && isStopping { return }
            if !holdsLargeBody, let pending = parser.pendingBodyBytes, pending >= configuration.largeBodyBytes {
                guard takeLargeBodyTurn(channel) else { return }
                holdsLargeBody = true
                requestStart = Date() // the deadline for the body starts once it may be received
            }
            switch buffer.withUnsafeMutableBytes({ channel.read(into: $0) }) {
            case .bytes(let n):
                if requestStart == nil { requestStart = Date() }
                parser.feed(buffer[0..<n])
                lastActivity = Date()
                continue
            case .closed, .failed:
                return
            case .timedOut:
                break
            }
            let now = Date()
            if let start = requestStart, !parser.isIdle, now.timeIntervalSince(start) > configuration.requestTimeout {
                _ = channel.write(HTTPResponse.error(408, code: "request_timeout", message: "request not received within \(Int(configuration.requestTimeout)) s").serialized(keepAlive: false))
                return
            }
            if parser.isIdle, now.timeIntervalSince(lastActivity) > configuration.idleTimeout { return }
        }
    }

    /// Waits for one of the large-body slots: as long as it takes (the queue
    /// is the server's doing, not a slow client's), unless the server stops,
    /// when it answers 503.
    private func takeLargeBodyTurn(_ channel: any Channel) -> Bool {
        while largeBodies.wait(timeout: .now() + 0.5) == .timedOut {
            if isStopping {
                _ = channel.write(HTTPResponse.error(503, code: "shutting_down", message: "the server is stopping; retry later").serialized(keepAlive: false))
                return false
            }
        }
        return true
    }

    /// Writes all bytes (retrying on EINTR, never raising SIGPIPE); false if the peer is gone.
    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                return false
            }
            offset += n
        }
        return true
    }

    static func describe(_ address: sockaddr_in) -> String {
        var copy = address.sin_addr
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &copy, &text, socklen_t(INET_ADDRSTRLEN))
        return "\(String(cString: text)):\(UInt16(bigEndian: address.sin_port))"
    }
}

/// A server start-up failure (address in use, bad address).
public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
