import Foundation
import Testing
@testable import SigiloFederation
import SigiloCrypto
import SigiloPrivacy

/// Secure placement's stages as a pure machine: when stages end, when a round is abandoned.
@Suite struct SecureStageMachineTests {
    typealias Stage = RoundMachine.SecureStages.Stage

    static func open(_ tenants: Set<String> = ["a", "b", "c", "d"], threshold: Int = 3) throws -> RoundMachine {
        var m = RoundMachine()
        _ = try m.open(id: 1, modelVersion: 1, tenants: tenants, minimumTenants: 2, now: 0, duration: 100, secureThreshold: threshold)
        return m
    }

    static func stage(_ m: RoundMachine) -> Stage? {
        guard case .open(let r) = m.state else { return nil }
        return r.secure?.stage
    }

    @Test func aStageEndsEarlyWhenEveryoneAskedHasAnswered() throws {
        var m = try Self.open()
        for t in ["a", "b", "c"] { #expect(try m.answered(tenant: t, round: 1, stage: .advertise, now: 1) == .none) }
        guard case .advanced = try m.answered(tenant: "d", round: 1, stage: .advertise, now: 2) else { Issue.record("all four in: next stage"); return }
        #expect(Self.stage(m) == .share)
        // A stage's answer at another stage is refused.
        #expect(throws: RoundMachine.MachineError.wrongStage(open: .share, got: .advertise)) { try m.admit(tenant: "a", round: 1, stage: .advertise) }
        #expect(throws: RoundMachine.MachineError.wrongStage(open: .share, got: .mask)) { try m.admit(tenant: "a", round: 1) }
    }

    @Test func aStageEndsAtItsDeadlineAndTheLateAreLeftOut() throws {
        var m = try Self.open()
        for t in ["a", "b", "c"] { _ = try m.answered(tenant: t, round: 1, stage: .advertise, now: 1) }
        #expect(m.tick(now: 14) == .none)
        guard case .advanced = m.tick(now: 15) else { Issue.record("the advertise stage ends at 15% of the round"); return }
        // d missed it: every later stage goes on without it.
        #expect(throws: RoundMachine.MachineError.droppedOut("d")) { try m.admit(tenant: "d", round: 1, stage: .share) }
        for t in ["a", "b", "c"] { _ = try m.answered(tenant: t, round: 1, stage: .share, now: 16) }
        #expect(Self.stage(m) == .mask)
        _ = try m.submitted(tenant: "a", round: 1, now: 17)
        #expect(throws: RoundMachine.MachineError.duplicate("a")) { try m.admit(tenant: "a", round: 1) }
    }

    @Test func fewerThanTheThresholdAtAnyStageAbandons() throws {
        for failing in Stage.allCases where failing != .unmask {
            var m = try Self.open()
            var action = RoundMachine.Action.none
            for stage in Stage.allCases where stage <= failing {
                let answering = stage == failing ? ["a", "b"] : ["a", "b", "c"]
                for t in answering { action = try m.answered(tenant: t, round: 1, stage: stage == .mask ? nil : stage, now: 1) }
                if stage != failing { action = m.tick(now: RoundMachine.SecureStages.schedule[stage.rawValue] * 100) }
            }
            if case .abandon = action { continue }
            guard case .abandon(let r) = m.tick(now: RoundMachine.SecureStages.schedule[failing.rawValue] * 100) else {
                Issue.record("two of four at the \(failing.name) stage must abandon"); continue
            }
            #expect(r.secure?.stage == failing)
        }
    }

    @Test func theUnmaskStageClosesWithEveryoneOrAtItsDeadline() throws {
        var m = try Self.open(["a", "b", "c"], threshold: 2)
        for stage in [Stage.advertise, .share] { for t in ["a", "b", "c"] { _ = try m.answered(tenant: t, round: 1, stage: stage, now: 1) } }
        _ = try m.submitted(tenant: "a", round: 1, now: 2)
        _ = try m.submitted(tenant: "b", round: 1, now: 2)
        guard case .advanced = m.tick(now: 80) else { Issue.record("the mask stage ends at 80%"); return }
        #expect(throws: RoundMachine.MachineError.droppedOut("c")) { try m.admit(tenant: "c", round: 1, stage: .unmask) }
        #expect(try m.answered(tenant: "a", round: 1, stage: .unmask, now: 81) == .none)
        guard case .close = try m.answered(tenant: "b", round: 1, stage: .unmask, now: 82) else { Issue.record("every survivor answered: close"); return }
    }

    @Test func aRevokedTenantIsNotWaitedFor() throws {
        var m = try Self.open(["a", "b", "c"], threshold: 2)
        _ = try m.answered(tenant: "a", round: 1, stage: .advertise, now: 1)
        _ = try m.answered(tenant: "b", round: 1, stage: .advertise, now: 1)
        guard case .advanced = m.revoked(tenant: "c", now: 2) else { Issue.record("the two left have answered"); return }
        #expect(Self.stage(m) == .share)
    }
}

/// The protocol's pure steps, run in process by a small cohort.
@Suite struct SecureProtocolTests {
    static let plan = Plan(labels: ["a", "b"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1.3, sampleRate: 1, placement: .secure)

    /// A cohort of `n` with its identities and round secrets, advertised.
    struct Cohort {
        let p: SecureAggregation.RoundParameters
        let secrets: [String: SecureAggregation.RoundSecrets]
        let ads: [String: SecureAggregation.Advertisement]

        init(_ n: Int, round: UInt64 = 5, survivorFraction: Double = 0.8) throws {
            let ids = (1...n).map { "tenant-\($0)" }
            p = try SecureAggregation.parameters(round: round, modelVersion: 4, cohort: ids, survivorFraction: survivorFraction,
                                                 graphSeed: try secureRandomBytes(32))
            var secrets = [String: SecureAggregation.RoundSecrets](), ads = [String: SecureAggregation.Advertisement]()
            for id in ids {
                secrets[id] = try .generate()
                ads[id] = try .signed(round: round, tenant: id, identity: try .generate(), secrets: secrets[id]!)
            }
            self.secrets = secrets
            self.ads = ads
        }

        func neighbourAds(_ id: String, among: Set<String>) throws -> [SecureAggregation.Advertisement] {
            try p.neighbours(of: id).filter(among.contains).map { ads[$0]! }
        }
    }

    /// Runs every stage with `vanish[id]` naming the stage a tenant stops at;
    /// returns the unmasked total (or the error) and the survivors' releases' total.
    static func run(_ c: Cohort, d: Int = 64, vanish: [String: RoundMachine.SecureStages.Stage] = [:]) throws -> (total: [Int64], expected: [Int64]) {
        func answers(_ id: String, _ stage: RoundMachine.SecureStages.Stage) -> Bool { vanish[id].map { stage < $0 } ?? true }
        let advertised = Set(c.p.cohort.filter { answers($0, .advertise) })
        var received = [String: [SecureAggregation.EncryptedShare]](), shared = Set<String>()
        let rng = SecureRandom()
        for id in c.p.cohort where advertised.contains(id) && answers(id, .share) {
            for s in try SecureAggregation.shares(of: id, secrets: c.secrets[id]!, parameters: c.p, neighbours: try c.neighbourAds(id, among: advertised),
                                                  random: { rng.next() }) { received[s.to, default: []].append(s) }
            shared.insert(id)
        }
        var sum = SecureAggregation.MaskedSum(dimension: d), survivors = Set<String>()
        var expected = [Int64](repeating: 0, count: d)
        for (n, id) in c.p.cohort.enumerated() where shared.contains(id) && answers(id, .mask) {
            let release = (0..<d).map { Int64(($0 * 31 + n * 17) % 1001) - 500 }
            sum.add(try SecureAggregation.maskedInput(release, tenant: id, secrets: c.secrets[id]!, parameters: c.p,
                                                      sharedNeighbours: try c.neighbourAds(id, among: shared)), weight: 1)
            for i in 0..<d { expected[i] += release[i] }
            survivors.insert(id)
        }
        var revealed = [String: [SecureAggregation.RevealedShare]]()
        for id in survivors where answers(id, .unmask) {
            revealed[id] = try SecureAggregation.reveal(tenant: id, secrets: c.secrets[id]!, parameters: c.p, maskedWith: try c.neighbourAds(id, among: shared),
                                                        received: received[id] ?? [], survivors: survivors, answered: nil)
        }
        try SecureAggregation.unmask(&sum, parameters: c.p, advertisements: c.ads, shared: shared, survivors: survivors, revealed: revealed)
        return (sum.values.map { Int64(bitPattern: $0) }, expected)
    }

    @Test func theSumComesOutWithTenantsVanishingAtEveryStage() throws {
        let c = try Cohort(10)
        #expect(c.p.threshold == 8 && c.p.degree == 9) // small: the complete graph
        #expect(try { let r = try Self.run(c); return r.total == r.expected }())
        let r = try Self.run(c, vanish: ["tenant-3": .share, "tenant-7": .unmask])
        #expect(r.total == r.expected)
        // Vanishing after sharing but before its masked input: its pairwise masks are removed with its mask key.
        let late = try Self.run(c, vanish: ["tenant-2": .mask, "tenant-9": .mask])
        #expect(late.total == late.expected)
    }

    @Test func aSparseGraphCarriesALargeCohort() throws {
        let c = try Cohort(300)
        #expect(c.p.degree < 100 && c.p.degree % 2 == 0, "\(c.p.degree)")
        // k-regular and symmetric.
        for id in c.p.cohort {
            let mine = try c.p.neighbours(of: id)
            #expect(mine.count == c.p.degree && !mine.contains(id))
            for other in mine { #expect(try c.p.neighbours(of: other).contains(id)) }
        }
        var vanish = [String: RoundMachine.SecureStages.Stage]()
        for (i, stage) in [RoundMachine.SecureStages.Stage.advertise, .share, .mask, .unmask].enumerated() {
            for j in 0..<10 { vanish["tenant-\(1 + 4 * j + 40 * i)"] = stage } // 40 of 300, 10 at each stage
        }
        let r = try Self.run(c, d: 16, vanish: vanish)
        #expect(r.total == r.expected)
    }

    @Test func degreeGrowsLikeTheLogarithmOfTheCohort() {
        #expect(SecureAggregation.degree(cohortSize: 10, survivorFraction: 0.8) == 9)
        let k100 = SecureAggregation.degree(cohortSize: 100, survivorFraction: 0.7), k1000 = SecureAggregation.degree(cohortSize: 1000, survivorFraction: 0.7)
        // A strict majority of each neighbourhood must survive, with 30% of tenants vanishing: about 190 of 1,000.
        #expect(k100 == 99 && k1000 < 250 && k1000 > k100, "\(k100) \(k1000)")
        #expect(SecureAggregation.threshold(cohortSize: 1000, survivorFraction: 0.7) == 700)
        #expect(SecureAggregation.threshold(cohortSize: 2, survivorFraction: 0.6) == 2)
    }

    @Test func sharesAddUpToAtLeastTheRoundsNoise() throws {
        let full = try SecureAggregation.mechanism(Self.plan)
        for t in [1, 2, 3, 7, 20, 1000] {
            let share = try SecureAggregation.noiseShare(Self.plan, threshold: t)
            #expect(share.step == full.step)
            let total = Double(t) * Double(share.sigmaInSteps) * Double(share.sigmaInSteps)
            #expect(total >= Double(full.sigmaInSteps) * Double(full.sigmaInSteps), "threshold \(t)")
        }
        #expect(throws: SecureAggregationError.self) { try SecureAggregation.noiseShare(Self.plan, threshold: 0) }
        #expect(throws: SecureAggregationError.self) { try SecureAggregation.noiseShare(Self.plan, threshold: 100_000_000) }
    }

    @Test func aTenantNeverRevealsBothSharesOfAPeer() throws {
        let c = try Cohort(5, survivorFraction: 0.6) // t = 3
        let rng = SecureRandom()
        var received = [String: [SecureAggregation.EncryptedShare]]()
        for id in c.p.cohort {
            for s in try SecureAggregation.shares(of: id, secrets: c.secrets[id]!, parameters: c.p, neighbours: try c.neighbourAds(id, among: Set(c.p.cohort)),
                                                  random: { rng.next() }) { received[s.to, default: []].append(s) }
        }
        let me = "tenant-1", everyone = Set(c.p.cohort)
        let first = Set(["tenant-1", "tenant-2", "tenant-3", "tenant-4"])
        let shares = try SecureAggregation.reveal(tenant: me, secrets: c.secrets[me]!, parameters: c.p, maskedWith: try c.neighbourAds(me, among: everyone),
                                                  received: received[me]!, survivors: first, answered: nil)
        #expect(shares.first { $0.owner == "tenant-5" }?.kind == .key && shares.first { $0.owner == "tenant-2" }?.kind == .seed)
        // Told afterwards that tenant-5 survived too: its seed share would join its key share. Refused.
        #expect(throws: SecureAggregationError.self) {
            try SecureAggregation.reveal(tenant: me, secrets: c.secrets[me]!, parameters: c.p, maskedWith: try c.neighbourAds(me, among: everyone),
                                         received: received[me]!, survivors: everyone, answered: first)
        }
        // The same list again is answered the same way (a lost answer, resent).
        #expect(try SecureAggregation.reveal(tenant: me, secrets: c.secrets[me]!, parameters: c.p, maskedWith: try c.neighbourAds(me, among: everyone),
                                             received: received[me]!, survivors: first, answered: first) == shares)
        // Below the threshold, or without itself, it reveals nothing.
        for survivors: Set<String> in [["tenant-1", "tenant-2"], ["tenant-2", "tenant-3", "tenant-4"]] {
            #expect(throws: SecureAggregationError.self) {
                try SecureAggregation.reveal(tenant: me, secrets: c.secrets[me]!, parameters: c.p, maskedWith: try c.neighbourAds(me, among: everyone),
                                             received: received[me]!, survivors: survivors, answered: nil)
            }
        }
    }

    @Test func aSubstitutedPeerKeyIsRefused() throws {
        let c = try Cohort(4, survivorFraction: 0.6)
        let me = "tenant-1"
        var forged = try c.neighbourAds(me, among: Set(c.p.cohort))
        // The coordinator swaps in a mask key of its own for tenant-2, keeping tenant-2's signature.
        forged[0].maskKey = try X25519.KeyPair.generate().publicKey
        #expect(throws: SecureAggregationError.self) {
            try SecureAggregation.shares(of: me, secrets: c.secrets[me]!, parameters: c.p, neighbours: forged, random: { 7 })
        }
        #expect(throws: SecureAggregationError.self) {
            try SecureAggregation.maskedInput([1, 2], tenant: me, secrets: c.secrets[me]!, parameters: c.p, sharedNeighbours: forged)
        }
        // Or signs keys of its own under another identity key: the registered one no longer matches what signed.
        var resigned = try SecureAggregation.Advertisement.signed(round: c.p.round, tenant: "tenant-2", identity: try .generate(), secrets: try .generate())
        resigned.identityKey = c.ads["tenant-2"]!.identityKey
        #expect(throws: SecureAggregationError.self) { try resigned.verify(round: c.p.round) }
        // Keys signed for another round do not pass for this one.
        #expect(throws: SecureAggregationError.self) { try c.ads["tenant-2"]!.verify(round: c.p.round + 1) }
    }

    @Test func aWrongRevealedShareIsNamedNotSummed() throws {
        let c = try Cohort(4, survivorFraction: 0.6)
        var revealed = [String: [SecureAggregation.RevealedShare]]()
        let rng = SecureRandom()
        var received = [String: [SecureAggregation.EncryptedShare]]()
        for id in c.p.cohort {
            for s in try SecureAggregation.shares(of: id, secrets: c.secrets[id]!, parameters: c.p, neighbours: try c.neighbourAds(id, among: Set(c.p.cohort)),
                                                  random: { rng.next() }) { received[s.to, default: []].append(s) }
        }
        let everyone = Set(c.p.cohort)
        for id in c.p.cohort {
            revealed[id] = try SecureAggregation.reveal(tenant: id, secrets: c.secrets[id]!, parameters: c.p, maskedWith: try c.neighbourAds(id, among: everyone),
                                                        received: received[id]!, survivors: everyone, answered: nil)
        }
        revealed["tenant-2"]![0].share.values[0] ^= 1
        var sum = SecureAggregation.MaskedSum(dimension: 4)
        #expect(throws: SecureAggregationError.self) {
            try SecureAggregation.unmask(&sum, parameters: c.p, advertisements: c.ads, shared: everyone, survivors: everyone, revealed: revealed)
        }
    }

    @Test func aLateInputFromATenantDeclaredDroppedRevealsNothing() throws {
        let c = try Cohort(5, survivorFraction: 0.6)
        let all = Set(c.p.cohort)
        let release = [Int64](repeating: 3, count: 32)
        // tenant-5 was declared dropped and its mask key revealed; its input, arriving late, still carries its self mask.
        let late = try SecureAggregation.maskedInput(release, tenant: "tenant-5", secrets: c.secrets["tenant-5"]!, parameters: c.p,
                                                     sharedNeighbours: try c.neighbourAds("tenant-5", among: all))
        var pairwise = [UInt64](repeating: 0, count: 32), stream = [UInt64](repeating: 0, count: 32)
        for ad in try c.neighbourAds("tenant-5", among: all) {
            try SecureAggregation.mask(secret: c.secrets["tenant-5"]!.mask.sharedSecret(with: ad.maskKey), between: "tenant-5", and: ad.tenant,
                                       round: c.p.round, modelVersion: c.p.modelVersion, into: &stream)
            for i in pairwise.indices { pairwise[i] = SecureAggregation.precedes("tenant-5", ad.tenant) ? pairwise[i] &+ stream[i] : pairwise[i] &- stream[i] }
        }
        let withoutPairwise = zip(late, pairwise).map { $0 &- UInt64(littleEndian: $1) }
        #expect(withoutPairwise.filter { Int64(bitPattern: $0) == 3 }.isEmpty)
    }

    @Test func sharesAreBoundToTheirRoundAndPair() throws {
        let c = try Cohort(3, survivorFraction: 0.6)
        let share = try SecureAggregation.shares(of: "tenant-1", secrets: c.secrets["tenant-1"]!, parameters: c.p,
                                                 neighbours: try c.neighbourAds("tenant-1", among: Set(c.p.cohort)), random: { 9 })[0]
        #expect(share.ciphertext.count == SecureAggregation.shareCiphertextBytes)
        let holder = share.to, other = holder == "tenant-2" ? "tenant-3" : "tenant-2"
        // Relayed to another tenant, or claimed from another sender, it does not open.
        #expect(throws: SecureAggregationError.self) {
            try SecureAggregation.open(.init(from: "tenant-1", to: other, ciphertext: share.ciphertext), holder: other, secrets: c.secrets[other]!,
                                       sender: c.ads["tenant-1"]!, parameters: c.p)
        }
        #expect(throws: SecureAggregationError.self) {
            try SecureAggregation.open(.init(from: other, to: holder, ciphertext: share.ciphertext), holder: holder, secrets: c.secrets[holder]!,
                                       sender: c.ads[other]!, parameters: c.p)
        }
        _ = try SecureAggregation.open(share, holder: holder, secrets: c.secrets[holder]!, sender: c.ads["tenant-1"]!, parameters: c.p)
    }
}
