import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Wraps a connected client socket in a channel: plain TCP, or TLS after a
/// handshake that verifies the server as `host`.
public protocol ClientChannelFactory: Sendable {
    func clientChannel(for fd: Int32, host: String, deadline: Double) throws -> any Channel
}

extension PlainChannels: ClientChannelFactory {
    public func clientChannel(for fd: Int32, host: String, deadline: Double) throws -> any Channel { PlainChannel(fd: fd) }
}

/// Why an exchange failed before a complete response arrived.
public struct HTTPClientError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A blocking HTTP/1.1 client for one origin, keeping its connection alive
/// between requests.
///
/// Written instead of using URLSession because on Linux URLSession (libcurl
/// under libdispatch) spins a core while it waits for the answer to an
/// upload: a tenant waiting for the coordinator to commit its update burned
/// 4 CPU seconds in 4 s (measured, curl 7.88). Here a waiting client sleeps
/// in `recv`.
///
/// `timeout` bounds silence, not the whole exchange: a 16 MB upload may
/// take long as long as bytes keep moving.
public final class HTTPClient: @unchecked Sendable {
    public let host: String
    public let port: UInt16
    public let timeout: Double
    let channels: any ClientChannelFactory
    let limits: HTTPLimits
    private var connection: (fd: Int32, channel: any Channel)?
    private let lock = NSLock()

    public init(host: String, port: UInt16, timeout: Double = 30, channels: any ClientChannelFactory = PlainChannels(),
                limits: HTTPLimits = HTTPLimits(maximumBodyBytes: 256 << 20)) {
        self.host = host
        self.port = port
        self.timeout = timeout
        self.channels = channels
        self.limits = limits
    }

    deinit { disconnect() }

    /// Sends one request and returns the whole response. Adds Host and
    /// Content-Length; the head and the body are written separately, so a
    /// large body is never copied.
    public func send(method: String, target: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> HTTPClientResponse {
        try lock.withLock {
            var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host.contains(":") ? "[\(host)]" : host):\(port)\r\n"
            for (name, value) in headers { head += "\(name): \(value)\r\n" }
            if !body.isEmpty || method == "POST" || method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
            head += "\r\n"
            let channel = try connected()
            guard channel.write(Array(head.utf8)), body.isEmpty || channel.write(body) else {
                disconnect()
                throw HTTPClientError("\(host):\(port): connection lost (or no progress for \(Int(timeout)) s) while sending the request")
            }
            var parser = ResponseParser(limits: limits)
            var buffer = [UInt8](repeating: 0, count: 256 * 1024)
            var lastProgress = Date()
            while true {
                let read = buffer.withUnsafeMutableBytes { channel.read(into: $0) }
                let result: ResponseParser.Result
                switch read {
                case .bytes(let n):
                    lastProgress = Date()
                    buffer.withUnsafeBytes { parser.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    result = parser.next()
                case .closed:
                    disconnect()
                    result = parser.finish()
                case .timedOut, .wantsWrite:
                    guard Date().timeIntervalSince(lastProgress) < timeout else {
                        disconnect()
                        throw HTTPClientError("\(host):\(port): no answer within \(Int(timeout)) s")
                    }
                    continue
                case .failed:
                    disconnect()
                    throw HTTPClientError("\(host):\(port): connection failed while reading the response")
                }
                switch result {
                case .needMore:
                    continue
                case .failure(let message):
                    disconnect()
                    throw HTTPClientError("\(host):\(port): malformed response: \(message)")
                case .response(let response):
                    if !response.keepAlive { disconnect() }
                    return response
                }
            }
        }
    }

    /// Closes the connection (the next request opens a new one).
    public func disconnect() {
        guard let (fd, channel) = connection else { return }
        channel.finish()
        close(fd)
        connection = nil
    }

    /// The open connection, unless the server has closed it while idle; else a new one.
    private func connected() throws -> any Channel {
        if let (fd, channel) = connection {
            var probe: UInt8 = 0
            let n = recv(fd, &probe, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { return channel } // idle and open
            disconnect() // closed by the server, or unexpected bytes: start clean
        }
        let deadline = Date().timeIntervalSince1970 + timeout
        let fd = try Self.connect(host: host, port: port, timeout: timeout)
        do {
            let channel = try channels.clientChannel(for: fd, host: host, deadline: deadline)
            connection = (fd, channel)
            return channel
        } catch {
            close(fd)
            throw error
        }
    }

    /// A connected TCP socket (every address of `host` in turn), with reads
    /// waking once a second and sends giving up after `timeout` without progress.
    static func connect(host: String, port: UInt16, timeout: Double) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw HTTPClientError("\(host):\(port): cannot resolve host (\(String(cString: gai_strerror(rc))))")
        }
        defer { freeaddrinfo(first) }
        var failure = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let address = next {
            next = address.pointee.ai_next
            let fd = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            guard fd >= 0 else { failure = String(cString: strerror(errno)); continue }
            // Non-blocking connect, so an unreachable host fails after `timeout`, not the kernel's minutes.
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var result = Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen)
            if result != 0, errno == EINPROGRESS {
                var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                if poll(&descriptor, 1, Int32(timeout * 1000)) == 1 {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                    errno = error
                    result = error == 0 ? 0 : -1
                } else {
                    errno = ETIMEDOUT
                }
            }
            guard result == 0 else {
                failure = String(cString: strerror(errno))
                close(fd)
                continue
            }
            _ = fcntl(fd, F_SETFL, flags)
            var yes: Int32 = 1 // head and body go out as separate writes: do not let Nagle hold the body back
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            var wake = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wake, socklen_t(MemoryLayout<timeval>.size))
            var stall = timeval(tv_sec: Int(timeout.rounded(.up)), tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stall, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }
        throw HTTPClientError("\(host):\(port): cannot connect (\(failure))")
    }
}
