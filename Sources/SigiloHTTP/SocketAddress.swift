#if canImport(Glibc)
import Glibc
#endif

/// An IPv4 or IPv6 socket address: parsed from "HOST:PORT" or "[HOST]:PORT",
/// and read back from the kernel for peers.
public struct SocketAddress: Sendable, Equatable, CustomStringConvertible {
    /// The numeric host: "127.0.0.1", "::1". An IPv4 peer reaching a dual-stack
    /// socket (::ffff:a.b.c.d) is shown as its IPv4 address, so it is one source
    /// to the per-address limits whichever socket it came through.
    public let host: String
    public let port: UInt16
    let isIPv6: Bool

    /// Parses "127.0.0.1:8443", "[::1]:8443" or "[::]:0" (numeric hosts only).
    public init(parsing text: String) throws {
        let host: Substring, port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw HTTPServerError("\"\(text)\" is not [IPV6]:PORT")
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { throw HTTPServerError("\"\(text)\" is not HOST:PORT (write an IPv6 host in brackets: [::1]:8443)") }
            host = parts[0]
            port = parts[1]
        }
        guard let number = UInt16(port) else { throw HTTPServerError("\"\(port)\" in \"\(text)\" is not a port (0-65535)") }
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, String(host), &v4) == 1 {
            isIPv6 = false
        } else if inet_pton(AF_INET6, String(host), &v6) == 1 {
            isIPv6 = true
        } else {
            throw HTTPServerError("\"\(host)\" is not a numeric IPv4 or IPv6 address")
        }
        self.host = String(host)
        self.port = number
    }

    /// `address` with the port the server was given (when it asked for port 0).
    public init(parsingBound address: SocketAddress, port: UInt16) {
        self.init(host: address.host, port: port, isIPv6: address.isIPv6)
    }

    init(host: String, port: UInt16, isIPv6: Bool) {
        self.host = host
        self.port = port
        self.isIPv6 = isIPv6
    }

    /// Every peer of a Unix-domain socket: one local source to the per-address limits.
    static let unixPeer = SocketAddress(host: "unix", port: 0, isIPv6: false)

    init(_ storage: sockaddr_storage) {
        var copy = storage
        if Int32(storage.ss_family) == AF_UNIX {
            self = Self.unixPeer
        } else if Int32(storage.ss_family) == AF_INET6 {
            let address = withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee } }
            var bytes = address.sin6_addr
            let raw = withUnsafeBytes(of: &bytes) { Array($0) }
            let port = UInt16(bigEndian: address.sin6_port)
            if raw[0..<10].allSatisfy({ $0 == 0 }), raw[10] == 0xff, raw[11] == 0xff {
                self.init(host: "\(raw[12]).\(raw[13]).\(raw[14]).\(raw[15])", port: port, isIPv6: false)
                return
            }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            inet_ntop(AF_INET6, &bytes, &text, socklen_t(INET6_ADDRSTRLEN))
            self.init(host: String(cString: text), port: port, isIPv6: true)
        } else {
            let address = withUnsafePointer(to: &copy) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee } }
            var bytes = address.sin_addr
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            inet_ntop(AF_INET, &bytes, &text, socklen_t(INET_ADDRSTRLEN))
            self.init(host: String(cString: text), port: UInt16(bigEndian: address.sin_port), isIPv6: false)
        }
    }

    /// "127.0.0.1:8443" or "[::1]:8443".
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Whether the host is a loopback address (127.0.0.0/8 or ::1).
    public var isLoopback: Bool { isIPv6 ? host == "::1" : host.hasPrefix("127.") }

    /// Whether the host is the wildcard ("0.0.0.0" or "::").
    var isWildcard: Bool { host == "0.0.0.0" || host == "::" }

    /// A listening socket bound to this address; an IPv6 wildcard also takes IPv4 (dual stack).
    func listen(backlog: Int32) throws -> Int32 {
        let fd = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError("socket: \(String(cString: strerror(errno)))") }
        Syscall.setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1)
        let bound: Int32
        if isIPv6 {
            Syscall.setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, isWildcard ? 0 : 1)
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &address.sin6_addr)
            bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw HTTPServerError("cannot listen on \(self): \(message)")
        }
        return fd
    }

    /// A listening Unix-domain socket at `path`, created with mode 0600. A
    /// socket file left by a server that is gone is replaced; one that a live
    /// server answers on, or any other file, is refused.
    static func listen(unixPath path: String, backlog: Int32) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw HTTPServerError("the socket path must be 1 to \(MemoryLayout.size(ofValue: address.sun_path) - 1) bytes: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        func call(_ body: (UnsafePointer<sockaddr>) -> Int32) -> Int32 {
            withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1, body) }
        }
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFSOCK else { throw HTTPServerError("\(path) exists and is not a socket; refusing to replace it") }
            let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            let answered = call { connect(probe, $0, length) } == 0
            close(probe)
            guard !answered else { throw HTTPServerError("another server is listening on \(path)") }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError("socket: \(String(cString: strerror(errno)))") }
        let previous = umask(0o177) // the socket file is created 0600: only this user may connect
        let bound = call { bind(fd, $0, length) }
        umask(previous)
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw HTTPServerError("cannot listen on \(path): \(message)")
        }
        return fd
    }

    /// The port a listening socket was given (for port 0).
    static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return SocketAddress(storage).port
    }
}
