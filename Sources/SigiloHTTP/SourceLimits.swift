/// A token bucket: `rate` tokens a second up to `burst`; each request takes one.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private(set) var tokens: Double
    private var updated: Double

    public init(rate: Double, burst: Double, now: Double) {
        self.rate = rate
        self.burst = burst
        tokens = burst
        updated = now
    }

    /// Takes a token: nil when taken, else the seconds until one is available.
    public mutating func take(now: Double) -> Double? {
        refill(now: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return (1 - tokens) / rate
    }

    /// Whether the bucket is full (its source can be forgotten).
    func isFull(now: Double) -> Bool { tokens + (now - updated) * rate >= burst }

    private mutating func refill(now: Double) {
        tokens = min(burst, tokens + max(0, now - updated) * rate)
        updated = now
    }
}

/// What one source address may hold: connections at once and requests per
/// second, so one client (a flood, a slow-loris burst) cannot take what others
/// need. Pure bookkeeping; the server calls it under its own lock.
public struct SourceLimits: Sendable {
    public struct Policy: Sendable, Equatable {
        public var connectionsPerAddress: Int
        public var requestsPerSecond: Double
        public var requestBurst: Double

        public init(connectionsPerAddress: Int = 256, requestsPerSecond: Double = 100, requestBurst: Double = 200) {
            self.connectionsPerAddress = connectionsPerAddress
            self.requestsPerSecond = requestsPerSecond
            self.requestBurst = requestBurst
        }
    }

    public let policy: Policy
    private var connections: [String: Int] = [:]
    private var buckets: [String: TokenBucket] = [:]
    private var lastSweep = 0.0

    public init(policy: Policy) { self.policy = policy }

    /// Admits a new connection from `address`, or says no.
    public mutating func openConnection(from address: String) -> Bool {
        let count = connections[address, default: 0]
        guard count < policy.connectionsPerAddress else { return false }
        connections[address] = count + 1
        return true
    }

    public mutating func closeConnection(from address: String) {
        guard let count = connections[address] else { return }
        connections[address] = count > 1 ? count - 1 : nil
    }

    /// Admits a request: nil, or the seconds to wait before the next one (for Retry-After).
    public mutating func admitRequest(from address: String, now: Double) -> Double? {
        var bucket = buckets[address] ?? TokenBucket(rate: policy.requestsPerSecond, burst: policy.requestBurst, now: now)
        let wait = bucket.take(now: now)
        buckets[address] = bucket
        if now - lastSweep > 60 { forgetIdleSources(now: now) }
        return wait
    }

    /// Sources whose bucket refilled are forgotten, so the table does not grow with every address ever seen.
    private mutating func forgetIdleSources(now: Double) {
        lastSweep = now
        buckets = buckets.filter { !$0.value.isFull(now: now) }
    }
}
