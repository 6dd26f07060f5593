/// The life of rounds as a pure state machine: events in (with the time),
/// actions out. The coordinator service performs the actions (persisting,
/// publishing) and feeds the events; tests drive it with a fake clock.
public struct RoundMachine: Sendable, Equatable {
    public struct Round: Sendable, Equatable {
        public var id: UInt64
        public var modelVersion: UInt64
        public var openedAt: Double
        public var deadline: Double
        /// Tenants active when the round opened (a revocation removes one).
        public var expected: Set<String>
        public var submitted: Set<String>
        public var minimumTenants: Int
        /// Secure placement: the masks cancel only when every expected tenant
        /// has submitted, so the round closes with all of them or not at all.
        public var everyoneRequired: Bool

        public init(id: UInt64, modelVersion: UInt64, openedAt: Double, deadline: Double, expected: Set<String>,
                    submitted: Set<String>, minimumTenants: Int, everyoneRequired: Bool = false) {
            self.id = id
            self.modelVersion = modelVersion
            self.openedAt = openedAt
            self.deadline = deadline
            self.expected = expected
            self.submitted = submitted
            self.minimumTenants = minimumTenants
            self.everyoneRequired = everyoneRequired
        }
    }

    public enum State: Sendable, Equatable {
        case idle
        case open(Round)
    }

    /// What the service must do now.
    public enum Action: Sendable, Equatable {
        case none
        /// Aggregate the running sum and publish the next model.
        case close(Round)
        /// Discard the running sum: too few tenants by the deadline; nothing is released.
        case abandon(Round)
    }

    public enum MachineError: Error, Equatable, Sendable {
        case roundAlreadyOpen(UInt64)
        case noOpenRound
        case wrongRound(expected: UInt64, got: UInt64)
        case notExpected(String)
        case duplicate(String)
    }

    public private(set) var state: State = .idle

    public init(state: State = .idle) { self.state = state }

    /// Opens round `id`. The caller has already checked the privacy budget.
    public mutating func open(id: UInt64, modelVersion: UInt64, tenants: Set<String>, minimumTenants: Int,
                              now: Double, duration: Double, everyoneRequired: Bool = false) throws -> Round {
        if case .open(let r) = state { throw MachineError.roundAlreadyOpen(r.id) }
        let round = Round(id: id, modelVersion: modelVersion, openedAt: now, deadline: now + duration, expected: tenants,
                          submitted: [], minimumTenants: minimumTenants, everyoneRequired: everyoneRequired)
        state = .open(round)
        return round
    }

    /// Whether `tenant` may submit to `round` now (checked before any state changes).
    public func admit(tenant: String, round id: UInt64) throws {
        guard case .open(let r) = state else { throw MachineError.noOpenRound }
        guard r.id == id else { throw MachineError.wrongRound(expected: r.id, got: id) }
        guard r.expected.contains(tenant) else { throw MachineError.notExpected(tenant) }
        guard !r.submitted.contains(tenant) else { throw MachineError.duplicate(tenant) }
    }

    /// Records an accepted (and persisted) update; closes when everyone has submitted.
    public mutating func submitted(tenant: String, round id: UInt64, now: Double) throws -> Action {
        try admit(tenant: tenant, round: id)
        guard case .open(var r) = state else { return .none }
        r.submitted.insert(tenant)
        state = .open(r)
        return evaluate(now: now)
    }

    /// A tenant was revoked: it no longer holds the round open. When
    /// everyone is required and it had not submitted, the round cannot close.
    public mutating func revoked(tenant: String, now: Double) -> Action {
        guard case .open(var r) = state else { return .none }
        if r.everyoneRequired, r.expected.contains(tenant), !r.submitted.contains(tenant) { return .abandon(r) }
        if !r.submitted.contains(tenant) { r.expected.remove(tenant) }
        state = .open(r)
        return evaluate(now: now)
    }

    /// Time passes: the deadline may close or abandon the round.
    public mutating func tick(now: Double) -> Action { evaluate(now: now) }

    /// The service finished a close or abandon action.
    public mutating func finished() { state = .idle }

    private func evaluate(now: Double) -> Action {
        guard case .open(let r) = state else { return .none }
        if !r.expected.isEmpty, r.submitted.isSuperset(of: r.expected), r.submitted.count >= r.minimumTenants { return .close(r) }
        guard now >= r.deadline else { return .none }
        return r.submitted.count >= r.minimumTenants && !r.everyoneRequired ? .close(r) : .abandon(r)
    }
}
