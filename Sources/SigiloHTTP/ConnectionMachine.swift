/// One HTTP/1.1 connection's life as a pure state machine: the event loop
/// reports what happened (bytes arrived, a check or a handler finished, time
/// passed) and performs the actions returned. No I/O, no clock of its own:
/// tests drive it with byte sequences and chosen times.
///
/// One request is in hand at a time. While its head is checked, its body waits
/// for a large-body slot, or its handler runs, the connection reads nothing
/// (back-pressure: pipelined bytes stay in the kernel). Deadlines: a head must
/// arrive within `headTimeout` of its first byte, a body must keep at least
/// `minimumBodyRate` bytes/s on average once `bodyGrace` has passed, and an
/// idle keep-alive connection is closed after `idleTimeout`.
public struct ConnectionMachine: Sendable {
    public struct Settings: Sendable {
        public var limits: HTTPLimits
        public var headTimeout: Double
        public var idleTimeout: Double
        public var minimumBodyRate: Double
        public var bodyGrace: Double
        /// Bodies of at least this many bytes wait for a slot before they are read.
        public var largeBodyBytes: Int

        public init(limits: HTTPLimits = HTTPLimits(), headTimeout: Double = 30, idleTimeout: Double = 60,
                    minimumBodyRate: Double = 8192, bodyGrace: Double = 5, largeBodyBytes: Int = 1 << 20) {
            self.limits = limits
            self.headTimeout = headTimeout
            self.idleTimeout = idleTimeout
            self.minimumBodyRate = minimumBodyRate
            self.bodyGrace = bodyGrace
            self.largeBodyBytes = largeBodyBytes
        }
    }

    /// What the event loop must do, in order.
    public enum Action: Equatable, Sendable {
        /// Decide whether this request may go on (rate, authentication, size)
        /// before its body is read; answer with `headChecked`.
        case checkHead(HTTPRequest, bodyLength: Int)
        /// Wait for a large-body slot; answer with `slotGranted`.
        case awaitSlot
        /// Give back the large-body slot this connection held.
        case releaseSlot
        /// Run the handler; answer with `responded`.
        case handle(HTTPRequest)
        /// Queue bytes for the peer.
        case write([UInt8])
        /// Close once every queued byte is written.
        case close
    }

    enum State: Equatable, Sendable {
        /// Between requests since the given time, nothing buffered.
        case idle(since: Double)
        /// Part of a head has arrived; the first byte at the given time.
        case receivingHead(since: Double)
        case checkingHead(HTTPRequest, bodyLength: Int)
        case awaitingSlot(HTTPRequest)
        /// Reading a body since the given time.
        case receivingBody(since: Double)
        case handling(keepAlive: Bool)
        case closed
    }

    public let settings: Settings
    private(set) var state: State
    private var parser: RequestParser
    private var holdsSlot = false
    private var stopping = false

    public init(settings: Settings, now: Double) {
        self.settings = settings
        state = .idle(since: now)
        parser = RequestParser(limits: settings.limits)
    }

    /// Whether the loop should read from the socket now.
    public var wantsToRead: Bool {
        switch state {
        case .idle, .receivingHead, .receivingBody: return true
        case .checkingHead, .awaitingSlot, .handling, .closed: return false
        }
    }

    public var isClosed: Bool { state == .closed }

    /// Bytes arrived from the peer.
    public mutating func received<Bytes: Collection<UInt8>>(_ bytes: Bytes, now: Double) -> [Action] {
        guard wantsToRead else { return [] }
        if case .idle = state { state = .receivingHead(since: now) }
        parser.feed(bytes)
        return advance(now: now)
    }

    /// The answer to `checkHead`: nil lets the request go on, a response refuses it (and closes).
    public mutating func headChecked(refusal: HTTPResponse?, now: Double) -> [Action] {
        guard case .checkingHead(let request, let length) = state else { return [] }
        if let refusal { return refuse(refusal) }
        if length == 0 {
            state = .handling(keepAlive: request.keepAlive)
            return [.handle(request)]
        }
        if length >= settings.largeBodyBytes {
            state = .awaitingSlot(request)
            return [.awaitSlot]
        }
        return startBody(request, now: now)
    }

    /// The answer to `awaitSlot`.
    public mutating func slotGranted(now: Double) -> [Action] {
        guard case .awaitingSlot(let request) = state else { return [.releaseSlot] } // closed meanwhile: give it back
        holdsSlot = true
        return startBody(request, now: now)
    }

    /// The handler's answer to the request in hand.
    public mutating func responded(_ response: HTTPResponse, now: Double) -> [Action] {
        guard case .handling(let keepAlive) = state else { return [] }
        var actions = [Action]()
        if holdsSlot { holdsSlot = false; actions.append(.releaseSlot) }
        let open = keepAlive && !stopping
        actions.append(.write(response.head(keepAlive: open)))
        if !response.body.isEmpty { actions.append(.write(response.body)) }
        guard open else {
            state = .closed
            return actions + [.close]
        }
        state = .idle(since: now)
        return actions + advance(now: now) // a pipelined request may be buffered already
    }

    /// Time passed: enforces the deadlines.
    public mutating func tick(now: Double) -> [Action] {
        switch state {
        case .idle(let since):
            if stopping || now - since > settings.idleTimeout { return closeQuietly() }
        case .receivingHead(let since):
            if now - since > settings.headTimeout {
                return refuse(.error(408, code: "request_timeout", message: "request head not received within \(Int(settings.headTimeout)) s"))
            }
        case .receivingBody(let since):
            let elapsed = now - since
            if elapsed > settings.bodyGrace, Double(parser.receivedBodyBytes) < settings.minimumBodyRate * elapsed {
                return refuse(.error(408, code: "body_too_slow",
                                     message: "request body arrived slower than \(Int(settings.minimumBodyRate)) bytes/s"))
            }
        case .checkingHead, .awaitingSlot, .handling, .closed:
            break
        }
        return []
    }

    /// The server is stopping: an idle connection closes now, a busy one after its answer.
    public mutating func stop() -> [Action] {
        stopping = true
        if case .idle = state { return closeQuietly() }
        return []
    }

    /// The peer closed or the socket failed: nothing more is sent.
    public mutating func peerGone() -> [Action] {
        guard state != .closed else { return [] }
        return closeQuietly()
    }

    // MARK: -

    private mutating func startBody(_ request: HTTPRequest, now: Double) -> [Action] {
        state = .receivingBody(since: now)
        var actions = [Action]()
        // The client waits for this before it sends the body; nothing of it has come yet, or it would not wait.
        if request.expectsContinue, parser.bufferedBytes == 0 { actions.append(.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))) }
        return actions + advance(now: now)
    }

    /// Takes parser events until it needs more bytes or a request is in hand.
    private mutating func advance(now: Double) -> [Action] {
        switch parser.next() {
        case .needMore:
            if parser.isIdle {
                if case .receivingHead = state { state = .idle(since: now) }
            } else if case .idle = state {
                state = .receivingHead(since: now) // a pipelined head began in an earlier read
            }
            return []
        case .failure(let error):
            return refuse(.error(error.status, code: error.code, message: error.message))
        case .head(let request, let length):
            state = .checkingHead(request, bodyLength: length)
            return [.checkHead(request, bodyLength: length)]
        case .request(let request):
            if case .receivingBody = state {
                state = .handling(keepAlive: request.keepAlive)
                return [.handle(request)]
            }
            state = .checkingHead(request, bodyLength: 0)
            return [.checkHead(request, bodyLength: 0)]
        }
    }

    private mutating func refuse(_ response: HTTPResponse) -> [Action] {
        var actions = [Action]()
        if holdsSlot { holdsSlot = false; actions.append(.releaseSlot) }
        state = .closed
        return actions + [.write(response.serialized(keepAlive: false)), .close]
    }

    private mutating func closeQuietly() -> [Action] {
        var actions = [Action]()
        if holdsSlot { holdsSlot = false; actions.append(.releaseSlot) }
        state = .closed
        return actions + [.close]
    }
}
