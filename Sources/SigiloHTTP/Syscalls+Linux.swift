#if canImport(Glibc)
import Glibc
internal import CEpoll

/// The socket and epoll system calls the HTTP layer makes, in one place:
/// each retries on EINTR and reports errors as values.
enum Syscall {
    /// One receive: bytes, the peer's end, nothing now (EAGAIN or a receive timeout), or a failure.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .closed }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? .timedOut : .failed
        }
    }

    /// One send without SIGPIPE: the bytes taken (0 when the socket is full), nil when the peer is gone.
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int? {
        guard bytes.count > 0 else { return 0 }
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : nil
        }
    }

    /// Writes all bytes on a blocking socket; false if the peer is gone (or a send timeout passed).
    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                guard let n = send(fd, UnsafeRawBufferPointer(rebasing: all[offset...])), n > 0 else { return false }
                offset += n
            }
            return true
        }
    }

    static func setNonBlocking(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var value = value
        setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Accepts one connection, non-blocking and close-on-exec: the socket and
    /// its peer's address, nil when none is waiting (or on a transient failure:
    /// out of descriptors, a connection aborted before it was taken).
    static func accept(_ listener: Int32) -> (fd: Int32, address: SocketAddress)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        while true {
            let fd = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listener, $0, &length) }
            }
            if fd >= 0 {
                setNonBlocking(fd)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                return (fd, SocketAddress(storage))
            }
            if errno == EINTR || errno == ECONNABORTED { continue }
            return nil
        }
    }

    static func epollControl(_ epoll: Int32, _ operation: Int32, _ fd: Int32, events: UInt32, data: UInt64) {
        var event = epoll_event()
        event.events = events
        event.data.u64 = data
        _ = epoll_ctl(epoll, operation, fd, &event)
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
#endif
