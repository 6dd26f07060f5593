#if canImport(Glibc)
import Glibc
#endif

/// A byte stream over an accepted socket: plain TCP or TLS. The server reads
/// with a short socket timeout, so `read` reports `.timedOut` regularly.
public protocol Channel: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead
    /// Writes all bytes; false when the peer is gone.
    func write(_ bytes: [UInt8]) -> Bool
    /// Says goodbye at the protocol level (a TLS close_notify); the server closes the socket.
    func finish()
}

public enum ChannelRead: Equatable {
    case bytes(Int)
    case closed
    case timedOut
    case failed
}

/// Makes a channel from an accepted socket (for TLS: the handshake), or
/// throws to drop the connection. `deadline` bounds the handshake.
public protocol ChannelFactory: Sendable {
    func channel(for fd: Int32, deadline: Double) throws -> any Channel
}

/// Plain TCP.
public struct PlainChannels: ChannelFactory {
    public init() {}
    public func channel(for fd: Int32, deadline: Double) throws -> any Channel { PlainChannel(fd: fd) }
}

final class PlainChannel: Channel {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .closed }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .timedOut : .failed
        }
    }

    func write(_ bytes: [UInt8]) -> Bool { HTTPServer.send(fd, bytes) }

    func finish() {}
}
