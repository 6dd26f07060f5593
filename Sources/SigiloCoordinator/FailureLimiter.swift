/// Lock-out after repeated authentication failures, per key (an identity or a
/// source address): `limit` failures within `window` seconds lock the key for
/// `lockout` seconds. Pure: the caller supplies the time. Kept in memory, so
/// a restart (an administrator's act) lifts lock-outs.
public struct FailureLimiter: Sendable {
    public struct Policy: Sendable, Equatable {
        public var limit: Int
        public var window: Double
        public var lockout: Double

        public init(limit: Int, window: Double, lockout: Double) {
            self.limit = limit
            self.window = window
            self.lockout = lockout
        }
    }

    let policy: Policy
    private var failures: [String: [Double]] = [:]
    private var lockedUntil: [String: Double] = [:]

    init(policy: Policy) { self.policy = policy }

    /// Seconds until `key` is unlocked, or nil when it is not locked.
    func lockedFor(_ key: String, now: Double) -> Double? {
        guard let until = lockedUntil[key], until > now else { return nil }
        return until - now
    }

    /// Records a failure; true when it locks the key (reported once).
    mutating func recordFailure(_ key: String, now: Double) -> Bool {
        if failures.count > 10_000 { _ = lockedCount(now: now) } // bound memory under a spray of identities
        var recent = failures[key, default: []].filter { $0 > now - policy.window }
        recent.append(now)
        if recent.count >= policy.limit {
            failures[key] = nil
            lockedUntil[key] = now + policy.lockout
            return true
        }
        failures[key] = recent
        return false
    }

    /// How many keys are locked now (a metrics gauge); forgets expired locks.
    mutating func lockedCount(now: Double) -> Int {
        lockedUntil = lockedUntil.filter { $0.value > now }
        failures = failures.filter { $0.value.contains { $0 > now - policy.window } }
        return lockedUntil.count
    }
}
