import SigiloCrypto
import SigiloFederation
import SigiloPrivacy
import SigiloProtocol

/// One secure round's four stages in one process, through the functions the
/// tenant CLI and the coordinator call (SecureRound.swift,
/// SecureUnmasking.swift), with tenants vanishing at random stages: each
/// drops with probability `dropout`, at a stage drawn uniformly, and answers
/// nothing from then on. No HTTP; the same keys, shares, masks and unmasking.
struct SecureRoundSimulation {
    typealias Stage = RoundMachine.SecureStages.Stage

    let plan: Plan
    let identities: [Ed25519.KeyPair]
    let dropout: Double

    init(plan: Plan, tenants: Int, dropout: Double) throws {
        self.plan = plan
        identities = try (0..<tenants).map { _ in try Ed25519.KeyPair.generate() }
        self.dropout = dropout
    }

    static func id(_ t: Int) -> String { "tenant-\(t + 1)" }

    /// The round's t for the whole cohort (the noise shares are calibrated to it).
    var threshold: Int { SecureAggregation.threshold(cohortSize: identities.count, survivorFraction: plan.survivorFraction) }

    struct Outcome {
        /// The unmasked sum of the survivors' grid releases (nil: abandoned, nothing released).
        var sum: SecureAggregation.MaskedSum?
        var survivors: Int
        /// Tenants that vanished, by the stage they did not answer.
        var dropped: [Stage: Int]
        var abandonedBecause: String?
        /// Whether the unmask stage began (reveals were asked for): an abandoned round's charge then stays.
        var reachedUnmasking = false
        /// What every tenant sent, as the wire carries it: the stage answers' JSON and the masked inputs' envelopes.
        var bytesSent = 0
    }

    /// `release(t)`: tenant t's grid release and weight, asked only of tenants that reach the mask stage.
    func run(round: UInt64, drawing rng: inout some RandomNumberGenerator,
             release: (Int) throws -> (values: [Int64], weight: Double)) throws -> Outcome {
        let n = identities.count
        var vanishes = [Stage?](repeating: nil, count: n)
        for t in 0..<n where Double.random(in: 0..<1, using: &rng) < dropout { vanishes[t] = Stage.allCases.randomElement(using: &rng) }
        var dropped = [Stage: Int]()
        for case let stage? in vanishes { dropped[stage, default: 0] += 1 }
        func answers(_ t: Int, _ stage: Stage) -> Bool { vanishes[t].map { stage < $0 } ?? true }
        let ids = (0..<n).map(Self.id)
        let p = try SecureAggregation.parameters(round: round, modelVersion: round, cohort: ids, survivorFraction: plan.survivorFraction,
                                                 graphSeed: try secureRandomBytes(32))
        var bytes = 0
        let abandoned = { (why: String, survivors: Int) in Outcome(sum: nil, survivors: survivors, dropped: dropped, abandonedBecause: why, bytesSent: bytes) }
        let random = SecureRandom()

        // 1. Advertise.
        let secrets = try (0..<n).map { _ in try SecureAggregation.RoundSecrets.generate() }
        var ads = [String: SecureAggregation.Advertisement]()
        for t in 0..<n where answers(t, .advertise) {
            ads[ids[t]] = try .signed(round: round, tenant: ids[t], identity: identities[t], secrets: secrets[t])
            bytes += SecureRoundWire.advertisement(ads[ids[t]]!).utf8.count
        }
        guard ads.count >= p.threshold else { return abandoned("\(ads.count) advertised, below t = \(p.threshold)", 0) }

        // 2. Share.
        var received = [String: [SecureAggregation.EncryptedShare]]()
        var shared = Set<String>()
        for t in 0..<n where ads[ids[t]] != nil && answers(t, .share) {
            let neighbours = try p.neighbours(of: ids[t]).compactMap { ads[$0] }
            let shares = try SecureAggregation.shares(of: ids[t], secrets: secrets[t], parameters: p, neighbours: neighbours, random: { random.next() })
            bytes += SecureRoundWire.shares(shares).utf8.count
            for share in shares { received[share.to, default: []].append(share) }
            shared.insert(ids[t])
        }
        guard shared.count >= p.threshold else { return abandoned("\(shared.count) shared, below t = \(p.threshold)", 0) }
        func maskedWith(_ t: Int) throws -> [SecureAggregation.Advertisement] { try p.neighbours(of: ids[t]).filter(shared.contains).map { ads[$0]! } }

        // 3. Masked inputs.
        var sum = SecureAggregation.MaskedSum(dimension: plan.dimension)
        var survivors = Set<String>()
        for t in 0..<n where shared.contains(ids[t]) && answers(t, .mask) {
            let (values, weight) = try release(t)
            let masked = try SecureAggregation.maskedInput(values, tenant: ids[t], secrets: secrets[t], parameters: p, sharedNeighbours: try maskedWith(t))
            let wire = UpdateEnvelope(round: round, modelVersion: round, weight: weight, masked: masked).encoded()
            bytes += wire.count
            let received = try UpdateEnvelope.decode(wire, maximumDimension: plan.dimension)
            sum.add(received.masked!, weight: received.weight)
            survivors.insert(ids[t])
        }
        guard survivors.count >= p.threshold else { return abandoned("\(survivors.count) masked inputs, below t = \(p.threshold)", survivors.count) }

        // 4. Unmask.
        var revealed = [String: [SecureAggregation.RevealedShare]]()
        for t in 0..<n where survivors.contains(ids[t]) && answers(t, .unmask) {
            revealed[ids[t]] = try SecureAggregation.reveal(tenant: ids[t], secrets: secrets[t], parameters: p, maskedWith: try maskedWith(t),
                                                            received: received[ids[t]] ?? [], survivors: survivors, answered: nil)
            bytes += SecureRoundWire.reveals(revealed[ids[t]]!).utf8.count
        }
        do {
            try SecureAggregation.unmask(&sum, parameters: p, advertisements: ads, shared: shared, survivors: survivors, revealed: revealed)
        } catch let e as SecureAggregationError {
            var outcome = abandoned("unmasking failed: \(e)", survivors.count)
            outcome.reachedUnmasking = true
            return outcome
        }
        return Outcome(sum: sum, survivors: survivors.count, dropped: dropped, reachedUnmasking: true, bytesSent: bytes)
    }
}
