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

    init(_ storage: sockaddr_storage) {
        var copy = storage
        if Int32(storage.ss_family) == AF_INET6 {
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

    /// The port a listening socket was given (for port 0).
    static func boundPort(_ fd: Int32) -> UInt16 {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return SocketAddress(storage).port
    }
}
