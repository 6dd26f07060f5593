#if canImport(Glibc)
import Glibc
#endif

/// A blocking byte stream over a connected socket, plain TCP or TLS: what
/// `HTTPClient` uses. Reads use a short socket timeout, so `read` reports
/// `.timedOut` regularly.
public protocol Channel: AnyObject {
    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead
    /// Writes all bytes; false when the peer is gone.
    func write(_ bytes: [UInt8]) -> Bool
    /// Says goodbye at the protocol level (a TLS close_notify); the owner closes the socket.
    func finish()
}

public enum ChannelRead: Equatable {
    case bytes(Int)
    case closed
    /// Nothing to read now (a timeout on a blocking socket, EAGAIN on a non-blocking one).
    case timedOut
    /// A TLS channel must write before it can read on (a key update): wait for the socket to be writable.
    case wantsWrite
    case failed
}

/// Progress of a non-blocking operation that may need the socket to be ready.
public enum ChannelProgress: Equatable, Sendable {
    case done
    case wantsRead
    case wantsWrite
    case failed
}

/// The server's side of an accepted, non-blocking socket: plain TCP or TLS.
/// The event loop calls these only when epoll said the socket is ready, and
/// they never block.
public protocol ServerChannel: AnyObject {
    /// Advances the TLS handshake (plain TCP is done at once).
    func handshake() -> ChannelProgress
    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead
    /// Writes what the socket takes now: the number of bytes written, or nil when the peer is gone.
    /// Zero with `.wantsRead` or `.wantsWrite` in `blocked` says what to wait for.
    func write(_ bytes: UnsafeRawBufferPointer, blocked: inout ChannelProgress) -> Int?
    /// Says goodbye at the protocol level (a TLS close_notify), without waiting; the server closes the socket.
    func finish()
}

/// Wraps an accepted non-blocking socket in a channel (for TLS: a session
/// whose handshake the loop then drives), or throws to drop the connection.
public protocol ChannelFactory: Sendable {
    func channel(for fd: Int32) throws -> any ServerChannel
}

/// Plain TCP.
public struct PlainChannels: ChannelFactory {
    public init() {}
    public func channel(for fd: Int32) throws -> any ServerChannel { PlainServerChannel(fd: fd) }
}

/// A blocking plain socket (the client's).
final class PlainChannel: Channel {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead { Syscall.receive(fd, into: buffer) }

    func write(_ bytes: [UInt8]) -> Bool { Syscall.sendAll(fd, bytes) }

    func finish() {}
}

/// A non-blocking plain socket (the server's).
final class PlainServerChannel: ServerChannel {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }

    func handshake() -> ChannelProgress { .done }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead { Syscall.receive(fd, into: buffer) }

    func write(_ bytes: UnsafeRawBufferPointer, blocked: inout ChannelProgress) -> Int? {
        switch Syscall.send(fd, bytes) {
        case .some(0): blocked = .wantsWrite; return 0
        case let n: return n
        }
    }

    func finish() {}
}
