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
        /// Tenants whose update is in the sum (at secure placement: whose masked input is).
        public var submitted: Set<String>
        public var minimumTenants: Int
        /// Secure placement's stages; nil for a plain round.
        public var secure: SecureStages?

        public init(id: UInt64, modelVersion: UInt64, openedAt: Double, deadline: Double, expected: Set<String>,
                    submitted: Set<String>, minimumTenants: Int, secure: SecureStages? = nil) {
            self.id = id
            self.modelVersion = modelVersion
            self.openedAt = openedAt
            self.deadline = deadline
            self.expected = expected
            self.submitted = submitted
            self.minimumTenants = minimumTenants
            self.secure = secure
        }

        /// Who is asked to answer the current stage: at a plain round, the
        /// expected tenants; at a secure one, those that answered the stage
        /// before (and were not revoked since).
        public var due: Set<String> {
            guard let secure else { return expected }
            switch secure.stage {
            case .advertise: return expected
            case .share: return secure.advertised.intersection(expected)
            case .mask: return secure.shared.intersection(expected)
            case .unmask: return submitted.intersection(expected)
            }
        }

        /// Who answered the current stage.
        public var answered: Set<String> {
            guard let secure else { return submitted }
            switch secure.stage {
            case .advertise: return secure.advertised
            case .share: return secure.shared
            case .mask: return submitted
            case .unmask: return secure.unmasked
            }
        }

        /// Whether `tenant` has something to send now.
        public func awaits(_ tenant: String) -> Bool { due.contains(tenant) && !answered.contains(tenant) }
    }

    /// A secure round's progress through its four stages (SecureRound.swift).
    public struct SecureStages: Sendable, Equatable {
        public enum Stage: Int, Sendable, CaseIterable, Comparable {
            case advertise, share, mask, unmask

            public var name: String { ["advertise", "share", "mask", "unmask"][rawValue] }
            public init?(name: String) {
                guard let found = Self.allCases.first(where: { $0.name == name }) else { return nil }
                self = found
            }
            public static func < (a: Stage, b: Stage) -> Bool { a.rawValue < b.rawValue }
        }

        /// When each stage ends, as fractions of the round's time: keys and
        /// shares are small and quick, the masked input is where training and
        /// the upload happen, the unmask answers are small again.
        public static let schedule = [0.15, 0.3, 0.8, 1.0]

        public var stage: Stage
        /// t: below this many answers at any stage, nothing can be released.
        public var threshold: Int
        /// The absolute time each stage ends, by stage.
        public var ends: [Double]
        public var advertised: Set<String>
        public var shared: Set<String>
        public var unmasked: Set<String>

        public init(threshold: Int, openedAt: Double, duration: Double, stage: Stage = .advertise,
                    advertised: Set<String> = [], shared: Set<String> = [], unmasked: Set<String> = []) {
            self.stage = stage
            self.threshold = threshold
            ends = Self.schedule.map { openedAt + $0 * duration }
            self.advertised = advertised
            self.shared = shared
            self.unmasked = unmasked
        }

        public var stageDeadline: Double { ends[stage.rawValue] }
    }

    public enum State: Sendable, Equatable {
        case idle
        case open(Round)
    }

    /// What the service must do now.
    public enum Action: Sendable, Equatable {
        case none
        /// A secure round moved on to its next stage (persist it, wake the tenants).
        case advanced(Round)
        /// Aggregate the running sum (at secure placement: unmask it first) and publish the next model.
        case close(Round)
        /// Discard the running sum: too few tenants answered in time; nothing is released.
        case abandon(Round)
    }

    public enum MachineError: Error, Equatable, Sendable {
        case roundAlreadyOpen(UInt64)
        case noOpenRound
        case wrongRound(expected: UInt64, got: UInt64)
        case notExpected(String)
        case duplicate(String)
        /// A secure round is at another stage than the answer is for.
        case wrongStage(open: SecureStages.Stage?, got: SecureStages.Stage?)
        /// The tenant did not answer the stage before (or was revoked): the round goes on without it.
        case droppedOut(String)
    }

    public private(set) var state: State = .idle

    public init(state: State = .idle) { self.state = state }

    /// Opens round `id`. The caller has already checked the privacy budget.
    /// `secureThreshold`: a secure round's t (nil: a plain round).
    public mutating func open(id: UInt64, modelVersion: UInt64, tenants: Set<String>, minimumTenants: Int,
                              now: Double, duration: Double, secureThreshold: Int? = nil) throws -> Round {
        if case .open(let r) = state { throw MachineError.roundAlreadyOpen(r.id) }
        let round = Round(id: id, modelVersion: modelVersion, openedAt: now, deadline: now + duration, expected: tenants,
                          submitted: [], minimumTenants: minimumTenants,
                          secure: secureThreshold.map { SecureStages(threshold: $0, openedAt: now, duration: duration) })
        state = .open(round)
        return round
    }

    /// Whether `tenant` may answer `round` at `stage` now (checked before any
    /// state changes). An update is the mask stage's answer at secure
    /// placement, and a plain round's only one (`stage` nil).
    public func admit(tenant: String, round id: UInt64, stage: SecureStages.Stage? = nil) throws {
        guard case .open(let r) = state else { throw MachineError.noOpenRound }
        guard r.id == id else { throw MachineError.wrongRound(expected: r.id, got: id) }
        guard r.expected.contains(tenant) else { throw MachineError.notExpected(tenant) }
        let asked = r.secure == nil ? nil : (stage ?? .mask)
        guard asked == r.secure?.stage, stage == nil || r.secure != nil else { throw MachineError.wrongStage(open: r.secure?.stage, got: asked ?? stage) }
        guard !r.answered.contains(tenant) else { throw MachineError.duplicate(tenant) }
        guard r.due.contains(tenant) else { throw MachineError.droppedOut(tenant) }
    }

    /// Records an accepted (and persisted) update; closes when everyone has submitted.
    public mutating func submitted(tenant: String, round id: UInt64, now: Double) throws -> Action {
        try answered(tenant: tenant, round: id, stage: nil, now: now)
    }

    /// Records an accepted (and persisted) answer to `stage` (nil: an update).
    public mutating func answered(tenant: String, round id: UInt64, stage: SecureStages.Stage?, now: Double) throws -> Action {
        try admit(tenant: tenant, round: id, stage: stage)
        guard case .open(var r) = state else { return .none }
        switch r.secure?.stage {
        case nil, .mask: r.submitted.insert(tenant)
        case .advertise: r.secure!.advertised.insert(tenant)
        case .share: r.secure!.shared.insert(tenant)
        case .unmask: r.secure!.unmasked.insert(tenant)
        }
        state = .open(r)
        return evaluate(now: now)
    }

    /// The unmask stage's shares so far recover every secret the unmasking
    /// needs (the service counts them; the machine does not know the graph):
    /// the round closes without waiting for the other survivors' answers.
    public mutating func unmaskingRecoverable(round id: UInt64) -> Action {
        guard case .open(let r) = state, r.id == id, r.secure?.stage == .unmask else { return .none }
        return .close(r)
    }

    /// A tenant was revoked: it no longer holds the round open (at secure
    /// placement its input, if in, stays, and it is no longer waited for).
    public mutating func revoked(tenant: String, now: Double) -> Action {
        guard case .open(var r) = state else { return .none }
        if r.secure != nil || !r.submitted.contains(tenant) { r.expected.remove(tenant) }
        state = .open(r)
        return evaluate(now: now)
    }

    /// Time passes: a deadline may end a stage, or close or abandon the round.
    public mutating func tick(now: Double) -> Action { evaluate(now: now) }

    /// The service finished a close or abandon action.
    public mutating func finished() { state = .idle }

    private mutating func evaluate(now: Double) -> Action {
        guard case .open(var r) = state else { return .none }
        guard r.secure != nil else {
            if !r.expected.isEmpty, r.submitted.isSuperset(of: r.expected), r.submitted.count >= r.minimumTenants { return .close(r) }
            guard now >= r.deadline else { return .none }
            return r.submitted.count >= r.minimumTenants ? .close(r) : .abandon(r)
        }
        // A stage ends when everyone asked has answered, or at its deadline;
        // with fewer than t answers the round cannot release anything.
        var advanced = false
        while r.answered.isSuperset(of: r.due) || now >= r.secure!.stageDeadline {
            guard r.secure!.stage == .unmask || r.answered.count >= r.secure!.threshold else { return .abandon(r) }
            guard let next = SecureStages.Stage(rawValue: r.secure!.stage.rawValue + 1) else { return .close(r) }
            r.secure!.stage = next
            state = .open(r)
            advanced = true
        }
        return advanced ? .advanced(r) : .none
    }
}
