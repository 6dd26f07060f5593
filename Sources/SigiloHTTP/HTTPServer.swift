import Foundation
#if canImport(Glibc)
import Glibc
internal import CEpoll
#endif

/// An event-driven HTTP/1.1 server on epoll, with no knowledge of what it serves.
///
/// A few event-loop threads own every socket (non-blocking; a connection costs
/// its buffers, not a thread); handlers, which may block on the database, run
/// on a bounded worker pool, and may answer later from any thread (a
/// long-poll). Each connection's protocol logic is a `ConnectionMachine`; this
/// file only performs what it asks.
///
/// Refused with a precise status, counted by reason in `statistics()`, and
/// before any handler runs: too many connections in all (503) or from one
/// address (429), too many requests per second from one address (429 with
/// Retry-After), a head the `headCheck` refuses (its answer: authentication
/// and size are judged before the body is read), a head or body too slow (408),
/// malformed or oversized input (400, 413, 417, 431, 501, 505).
public final class HTTPServer: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// A numeric IPv4 or IPv6 address; "::" listens on both (dual stack).
        public var host: String
        public var port: UInt16
        public var limits: HTTPLimits
        /// Connections held at once, from everyone (also bounded by the descriptor limit).
        public var maximumConnections: Int
        /// Connections and requests per second from one source address.
        public var sourceLimits: SourceLimits.Policy
        /// A request head must arrive within this many seconds of its first byte.
        public var requestTimeout: Double
        /// An idle keep-alive connection is closed after this many seconds.
        public var idleTimeout: Double
        /// A body must arrive at least this fast (bytes/s, on average after `bodyGrace` seconds), or 408.
        public var minimumBodyRate: Double
        public var bodyGrace: Double
        /// Plain TCP or TLS.
        public var channels: any ChannelFactory
        /// Bodies of at least `largeBodyBytes` are received and handled at most
        /// `maximumLargeBodies` at a time; the others wait their turn unread
        /// (their bytes stay in the kernel), so memory depends on this, not on
        /// how many clients upload at once.
        public var largeBodyBytes: Int = 1 << 20
        public var maximumLargeBodies: Int = 4
        public var eventLoops: Int
        public var workers: Int
        /// Listen on this Unix-domain socket (mode 0600: the server's user only) instead of `host` and `port`.
        public var unixSocketPath: String?

        public init(host: String = "127.0.0.1", port: UInt16 = 0, limits: HTTPLimits = HTTPLimits(),
                    maximumConnections: Int = 50_000, sourceLimits: SourceLimits.Policy = .init(),
                    requestTimeout: Double = 30, idleTimeout: Double = 60, minimumBodyRate: Double = 8192, bodyGrace: Double = 5,
                    channels: any ChannelFactory = PlainChannels(), eventLoops: Int = 2, workers: Int = 4) {
            self.host = host
            self.port = port
            self.limits = limits
            self.maximumConnections = maximumConnections
            self.sourceLimits = sourceLimits
            self.requestTimeout = requestTimeout
            self.idleTimeout = idleTimeout
            self.minimumBodyRate = minimumBodyRate
            self.bodyGrace = bodyGrace
            self.channels = channels
            self.eventLoops = eventLoops
            self.workers = workers
        }

        var machineSettings: ConnectionMachine.Settings {
            .init(limits: limits, headTimeout: requestTimeout, idleTimeout: idleTimeout, minimumBodyRate: minimumBodyRate,
                  bodyGrace: bodyGrace, largeBodyBytes: largeBodyBytes)
        }
    }

    /// Handles one request on a worker thread; `peer` is the client's address ("127.0.0.1:53412").
    public typealias Handler = @Sendable (_ request: HTTPRequest, _ peer: String) -> HTTPResponse
    /// Handles one request on a worker thread and answers through `responder`, now or later, from any thread.
    public typealias DeferredHandler = @Sendable (_ request: HTTPRequest, _ peer: String, _ responder: HTTPResponder) -> Void
    /// Judges a request by its head (the body empty, `bodyLength` declared) on a
    /// worker thread: nil lets it go on, a response refuses it before its body is read.
    public typealias HeadCheck = @Sendable (_ head: HTTPRequest, _ bodyLength: Int, _ peer: String) -> HTTPResponse?
    /// Answers, on the event loop itself, the requests that never block (a
    /// liveness probe), so they do not wait for a worker; nil passes the request on.
    public typealias ImmediateHandler = @Sendable (_ request: HTTPRequest) -> HTTPResponse?

    /// Counters for monitoring.
    public struct Statistics: Sendable {
        public var openConnections: Int
        public var acceptedConnections: Int
        /// Requests and connections refused before a handler saw them, by reason.
        public var refused: [String: Int]
        public var eventLoopThreads: Int
        public var workerThreads: Int
        /// Connections it will hold at once: the configured cap, or the descriptor limit less a margin.
        public var connectionCap: Int
        /// The soft descriptor limit before and after `start` raised it to the hard one.
        public var descriptorLimit: (before: Int, after: Int)
    }

    public let configuration: Configuration
    let handler: DeferredHandler
    let headCheck: HeadCheck?
    let immediate: ImmediateHandler?
    let settings: ConnectionMachine.Settings
    private let lock = NSLock()
    private var sources: SourceLimits
    private var open = 0
    private var accepted = 0
    private var refusals: [String: Int] = [:]
    private var largeBodiesInUse = 0
    private var largeBodyQueue: [Connection] = []
    private var stopping = false
    private var connectionCap = 0
    private var descriptorLimit = (before: 0, after: 0)
    private var listenFD: Int32?
    private var loops: [EventLoop] = []
    private(set) var pool: WorkerPool?

    /// A server whose handler answers at once.
    public convenience init(configuration: Configuration, headCheck: HeadCheck? = nil, handler: @escaping Handler) {
        self.init(configuration: configuration, headCheck: headCheck, deferredHandler: { request, peer, responder in
            responder.respond(handler(request, peer))
        })
    }

    public init(configuration: Configuration, headCheck: HeadCheck? = nil, immediate: ImmediateHandler? = nil,
                deferredHandler: @escaping DeferredHandler) {
        self.configuration = configuration
        self.handler = deferredHandler
        self.headCheck = headCheck
        self.immediate = immediate
        settings = configuration.machineSettings
        sources = SourceLimits(policy: configuration.sourceLimits)
    }

    /// Binds, listens and starts serving; returns the bound port.
    @discardableResult
    public func start() throws -> UInt16 {
        signal(SIGPIPE, SIG_IGN) // a vanished peer must not kill the server
        let fd: Int32
        if let path = configuration.unixSocketPath {
            fd = try SocketAddress.listen(unixPath: path, backlog: 4096)
        } else {
            let address = try SocketAddress(parsing: configuration.host.contains(":") ? "[\(configuration.host)]:\(configuration.port)"
                                                                                        : "\(configuration.host):\(configuration.port)")
            fd = try address.listen(backlog: 4096)
        }
        descriptorLimit = Self.raiseDescriptorLimit()
        connectionCap = min(configuration.maximumConnections, descriptorLimit.after - 64)
        pool = WorkerPool(threads: configuration.workers, maximumQueued: 16_384, name: "sigilo-http-worker")
        for index in 0..<max(1, configuration.eventLoops) {
            loops.append(try EventLoop(name: "sigilo-http-loop-\(index)", tickInterval: 0.25))
        }
        listenFD = fd
        // Every loop waits on the one listening socket; EPOLLEXCLUSIVE wakes one of them per connection.
        for loop in loops {
            loop.execute { loop.register(fd, events: EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue, handler: ListenerHandle(fd: fd, server: self, loop: loop)) }
        }
        return configuration.unixSocketPath == nil ? SocketAddress.boundPort(fd) : 0
    }

    /// Stops accepting; lets in-flight requests finish (answered with
    /// `Connection: close`) and closes idle connections; returns when every
    /// connection is closed. `draining` runs once no new request can arrive
    /// (to answer parked long-polls, say).
    public func shutdown(draining: () -> Void = {}) {
        let already = lock.withLock { defer { stopping = true }; return stopping }
        guard !already, let listenFD else { return }
        let done = DispatchGroup()
        for loop in loops {
            done.enter()
            loop.execute {
                loop.deregister(listenFD)
                done.leave()
            }
        }
        done.wait()
        close(listenFD)
        if let path = configuration.unixSocketPath { unlink(path) }
        draining()
        for loop in loops { loop.execute { for case let connection as Connection in loop.registered { connection.stop() } } }
        while lock.withLock({ open }) > 0 { usleep(10_000) }
        for loop in loops { loop.stop() }
        pool?.stop()
    }

    /// The number of connections being served.
    public var openConnections: Int { lock.withLock { open } }

    public func statistics() -> Statistics {
        lock.withLock {
            Statistics(openConnections: open, acceptedConnections: accepted, refused: refusals, eventLoopThreads: loops.count,
                       workerThreads: pool?.threadCount ?? 0, connectionCap: connectionCap, descriptorLimit: descriptorLimit)
        }
    }

    // MARK: - Connections

    fileprivate func accept(on loop: EventLoop, from listener: Int32) {
        for _ in 0..<64 { // a batch, then the other descriptors get their turn
            guard let (fd, peer) = Syscall.accept(listener) else { return }
            let refusal: (String, HTTPResponse)? = lock.withLock {
                if stopping { return ("shutting_down", .error(503, code: "shutting_down", message: "the server is stopping; retry later")) }
                guard open < connectionCap else {
                    return ("too_many_connections", .error(503, code: "too_many_connections", message: "the server is at its connection limit"))
                }
                guard sources.openConnection(from: peer.host) else {
                    return ("too_many_connections_from_address",
                            .error(429, code: "too_many_connections", message: "too many connections from \(peer.host)"))
                }
                open += 1
                accepted += 1
                return nil
            }
            if let (reason, response) = refusal {
                count(reason)
                // One try, without waiting: a client that does not read gets nothing.
                let bytes = response.serialized(keepAlive: false)
                _ = bytes.withUnsafeBytes { Syscall.send(fd, $0) }
                close(fd)
                continue
            }
            Syscall.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            guard let channel = try? configuration.channels.channel(for: fd) else {
                close(fd)
                connectionClosed(peer)
                continue
            }
            Connection(fd: fd, peer: peer, channel: channel, server: self, loop: loop, now: EventLoop.now()).start()
        }
    }

    fileprivate func connectionClosed(_ peer: SocketAddress) {
        lock.withLock {
            open -= 1
            sources.closeConnection(from: peer.host)
        }
    }

    // MARK: - Admission, slots, counters

    /// The per-address request rate: nil, or a 429 to answer.
    fileprivate func admit(from peer: SocketAddress) -> HTTPResponse? {
        guard let wait = lock.withLock({ sources.admitRequest(from: peer.host, now: EventLoop.now()) }) else { return nil }
        count("rate_limited")
        var response = HTTPResponse.error(429, code: "rate_limited", message: "too many requests from \(peer.host); retry later")
        response.headers.append(("Retry-After", String(Int(wait.rounded(.up)))))
        return response
    }

    /// Grants a large-body slot now, or queues the connection for one.
    fileprivate func acquireLargeBodySlot(_ connection: Connection) {
        let granted: Bool = lock.withLock {
            guard largeBodiesInUse < configuration.maximumLargeBodies else {
                largeBodyQueue.append(connection)
                return false
            }
            largeBodiesInUse += 1
            return true
        }
        if granted { connection.slotGranted() }
    }

    fileprivate func releaseLargeBodySlot() {
        let next: Connection? = lock.withLock {
            guard !largeBodyQueue.isEmpty else {
                largeBodiesInUse -= 1
                return nil
            }
            return largeBodyQueue.removeFirst() // the slot passes on
        }
        if let next { next.loop.execute { next.slotGranted() } }
    }

    func count(_ reason: String) { lock.withLock { refusals[reason, default: 0] += 1 } }

    /// Raises the soft descriptor limit to the hard one (each connection is a
    /// descriptor); returns the soft limit before and after.
    static func raiseDescriptorLimit() -> (before: Int, after: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return (1024, 1024) }
        let before = Int(min(limit.rlim_cur, 1 << 30))
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return (before, Int(min(limit.rlim_cur, 1 << 30)))
    }

    /// Writes all bytes to a blocking socket (retrying on EINTR, never raising SIGPIPE); false if the peer is gone.
    @discardableResult
    public static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool { Syscall.sendAll(fd, bytes) }
}

/// Answers one request, once, from any thread.
public final class HTTPResponder: @unchecked Sendable {
    private let lock = NSLock()
    private var connection: Connection?

    init(_ connection: Connection) { self.connection = connection }

    /// Sends `response`; later calls do nothing.
    public func respond(_ response: HTTPResponse) {
        guard let connection = lock.withLock({ defer { self.connection = nil }; return self.connection }) else { return }
        connection.loop.execute { connection.responded(response) }
    }
}

/// A server start-up failure (address in use, bad address).
public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The listening socket as one loop sees it: readable means connections wait to be accepted.
final class ListenerHandle: EventLoop.Handler {
    let fd: Int32
    unowned let server: HTTPServer
    let loop: EventLoop
    init(fd: Int32, server: HTTPServer, loop: EventLoop) {
        self.fd = fd
        self.server = server
        self.loop = loop
    }

    func ready(events: UInt32) { server.accept(on: loop, from: fd) }
    func tick(_ now: Double) {}
}

/// One connection: its socket, channel and state machine, touched only on its
/// loop's thread (`responded` and `slotGranted` are brought there by `execute`).
final class Connection: EventLoop.Handler, @unchecked Sendable {
    let fd: Int32
    let peer: SocketAddress
    let channel: any ServerChannel
    unowned let server: HTTPServer
    let loop: EventLoop
    private var machine: ConnectionMachine
    private var output: [[UInt8]] = []
    private var outputOffset = 0
    private var closeWhenFlushed = false
    private var handshaking = true
    private var handshakeWants = ChannelProgress.wantsRead
    private var writeWants = ChannelProgress.wantsWrite
    /// The events epoll watches for (nil before the first registration).
    private var registered: UInt32?
    private let openedAt: Double
    /// Closed: no more I/O on `fd`, whose number the kernel may give to another socket.
    private var isGone = false

    init(fd: Int32, peer: SocketAddress, channel: any ServerChannel, server: HTTPServer, loop: EventLoop, now: Double) {
        self.fd = fd
        self.peer = peer
        self.channel = channel
        self.server = server
        self.loop = loop
        openedAt = now
        machine = ConnectionMachine(settings: server.settings, now: now)
    }

    func start() {
        advanceHandshake()
        updateInterest()
    }

    func ready(events: UInt32) {
        guard !isGone else { return }
        if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0, events & EPOLLIN.rawValue == 0 { return close() }
        if handshaking {
            advanceHandshake()
        } else {
            if events & EPOLLOUT.rawValue != 0 { flush() }
            if events & (EPOLLIN.rawValue | EPOLLOUT.rawValue) != 0 { readAvailable() }
        }
        updateInterest()
    }

    func tick(_ now: Double) {
        guard !isGone else { return }
        if handshaking {
            if now - openedAt > server.settings.headTimeout { close() }
            return
        }
        perform(machine.tick(now: now))
    }

    func stop() {
        guard !isGone else { return }
        perform(machine.stop())
    }

    func responded(_ response: HTTPResponse) {
        perform(machine.responded(response, now: EventLoop.now()))
    }

    func slotGranted() {
        perform(machine.slotGranted(now: EventLoop.now()))
    }

    private func headChecked(_ refusal: HTTPResponse?) {
        perform(machine.headChecked(refusal: refusal, now: EventLoop.now()))
    }

    private func advanceHandshake() {
        switch channel.handshake() {
        case .done:
            handshaking = false
            readAvailable()
        case .failed:
            close()
        case let wants:
            handshakeWants = wants
        }
    }

    /// Reads while the machine wants bytes and the socket has them (a few buffers per wake-up, for fairness).
    private func readAvailable() {
        var reads = 0
        while !isGone, machine.wantsToRead, output.isEmpty, reads < 4 {
            reads += 1
            switch channel.read(into: loop.readBuffer) {
            case .bytes(let n):
                perform(machine.received(UnsafeRawBufferPointer(rebasing: loop.readBuffer[0..<n]), now: EventLoop.now()), thenRead: false)
            case .timedOut, .wantsWrite:
                return
            case .closed, .failed:
                perform(machine.peerGone(), thenRead: false)
                return
            }
        }
    }

    private func perform(_ actions: [ConnectionMachine.Action], thenRead: Bool = true) {
        guard !isGone else {
            for case .releaseSlot in actions { server.releaseLargeBodySlot() }
            return
        }
        for action in actions {
            switch action {
            case .checkHead(let request, let length):
                if let refusal = server.admit(from: peer) {
                    return perform(machine.headChecked(refusal: refusal, now: EventLoop.now()), thenRead: thenRead)
                }
                guard length > 0, let check = server.headCheck else {
                    return perform(machine.headChecked(refusal: nil, now: EventLoop.now()), thenRead: thenRead)
                }
                let peer = peer.description
                submit { [self] in
                    let refusal = check(request, length, peer)
                    loop.execute { [self] in headChecked(refusal) }
                }
            case .awaitSlot:
                server.acquireLargeBodySlot(self)
            case .releaseSlot:
                server.releaseLargeBodySlot()
            case .handle(let request):
                if let answer = server.immediate?(request) {
                    return perform(machine.responded(answer, now: EventLoop.now()), thenRead: thenRead)
                }
                let responder = HTTPResponder(self)
                let handler = server.handler
                let peer = peer.description
                submit { handler(request, peer, responder) }
            case .write(let bytes):
                output.append(bytes)
            case .close:
                closeWhenFlushed = true
            }
        }
        flush()
        if thenRead { readAvailable() } // bytes may already wait (pipelined, or decrypted by TLS, which epoll cannot see)
        updateInterest()
    }

    /// Runs `job` on the worker pool, or answers 503 when its queue is full.
    private func submit(_ job: @escaping () -> Void) {
        guard server.pool?.submit(job) != true else { return }
        server.count("overloaded")
        output.append(HTTPResponse.error(503, code: "overloaded", message: "the server is overloaded; retry later").serialized(keepAlive: false))
        closeWhenFlushed = true
    }

    private func flush() {
        while let first = output.first {
            let written = first.withUnsafeBytes { bytes in
                channel.write(UnsafeRawBufferPointer(rebasing: bytes[outputOffset...]), blocked: &writeWants)
            }
            guard let written else { return close() }
            if written == 0 { return }
            outputOffset += written
            if outputOffset == first.count {
                output.removeFirst()
                outputOffset = 0
            }
        }
        if closeWhenFlushed { close() }
    }

    private func updateInterest() {
        guard !isGone else { return }
        var events: UInt32 = 0
        if handshaking {
            events = handshakeWants == .wantsWrite ? EPOLLOUT.rawValue : EPOLLIN.rawValue
        } else {
            if !output.isEmpty { events |= writeWants == .wantsRead ? EPOLLIN.rawValue : EPOLLOUT.rawValue }
            if machine.wantsToRead, output.isEmpty { events |= EPOLLIN.rawValue }
        }
        // Registered even with no events: epoll still reports a hang-up or an error.
        if events != registered {
            registered = events
            loop.register(fd, events: events, handler: self)
        }
    }

    private func close() {
        guard !isGone else { return }
        let actions = machine.peerGone()
        isGone = true
        for case .releaseSlot in actions { server.releaseLargeBodySlot() }
        loop.deregister(fd)
        channel.finish()
        Glibc.close(fd)
        output = []
        server.connectionClosed(peer)
    }
}
