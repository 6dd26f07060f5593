import Foundation
import SigiloCrypto
import SigiloFederation
import SigiloSQLite

/// Secure placement's side of the coordinator (the protocol is in
/// SigiloFederation's SecureRound.swift): a round's public parameters, the
/// answers to its four stages made durable as they arrive, the view each
/// tenant is given, and the unmasking. The coordinator relays what tenants
/// encrypt to each other and checks every signature it can, so that a broken
/// or forged answer is refused at once instead of failing the round later.
extension CoordinatorService {
    typealias Stage = RoundMachine.SecureStages.Stage

    static let secureSchema = """
    ALTER TABLE rounds ADD COLUMN secure_threshold INTEGER;
    ALTER TABLE rounds ADD COLUMN secure_degree INTEGER;
    ALTER TABLE rounds ADD COLUMN graph_seed BLOB;
    ALTER TABLE rounds ADD COLUMN secure_stage TEXT;
    CREATE TABLE secure_keys(round_id INTEGER NOT NULL, tenant_id TEXT NOT NULL, identity_key BLOB NOT NULL, encryption_key BLOB NOT NULL,
        mask_key BLOB NOT NULL, seed_commitment BLOB NOT NULL, signature BLOB NOT NULL, PRIMARY KEY(round_id, tenant_id));
    CREATE TABLE secure_shares(round_id INTEGER NOT NULL, recipient TEXT NOT NULL, sender TEXT NOT NULL, ciphertext BLOB NOT NULL,
        PRIMARY KEY(round_id, recipient, sender));
    CREATE TABLE secure_reveals(round_id INTEGER NOT NULL, holder TEXT NOT NULL, owner TEXT NOT NULL,
        kind TEXT NOT NULL CHECK(kind IN ('seed', 'key')), x INTEGER NOT NULL, share BLOB NOT NULL, PRIMARY KEY(round_id, holder, owner));
    """

    /// A new secure round's parameters: t and k from the plan's survivor
    /// fraction, the neighbour graph from fresh public randomness. Refuses a
    /// cohort so large that each tenant's noise share would fall below what
    /// the accounting's bound covers.
    func secureRoundParameters(round: UInt64, modelVersion: UInt64, cohort: Set<String>, plan: Plan) throws -> SecureAggregation.RoundParameters {
        let parameters = try SecureAggregation.parameters(round: round, modelVersion: modelVersion, cohort: Array(cohort),
                                                          survivorFraction: plan.survivorFraction, graphSeed: try secureRandomBytes(32))
        _ = try SecureAggregation.noiseShare(plan, threshold: parameters.threshold)
        return parameters
    }

    /// After a restart: the open secure round's parameters, stage and answers, as committed.
    func restoreSecureRound(_ round: inout RoundMachine.Round, threshold: Int, degree: Int, graphSeed: [UInt8], stage name: String) throws {
        guard let stage = Stage(name: name) else { throw DatabaseError("round \(round.id) is at an unknown secure stage \"\(name)\"") }
        secureParameters = try SecureAggregation.RoundParameters(round: round.id, modelVersion: round.modelVersion, cohort: Array(round.expected),
                                                                 threshold: threshold, degree: degree, graphSeed: graphSeed)
        var stages = RoundMachine.SecureStages(threshold: threshold, openedAt: round.openedAt, duration: round.deadline - round.openedAt, stage: stage)
        let id: [Database.Value] = [.integer(Int64(round.id))]
        secureAdvertisements = [:]
        try database.run("SELECT tenant_id, identity_key, encryption_key, mask_key, seed_commitment, signature FROM secure_keys WHERE round_id = ?", id) {
            self.secureAdvertisements[$0.text(0)] = .init(tenant: $0.text(0), identityKey: $0.blob(1), encryptionKey: $0.blob(2), maskKey: $0.blob(3),
                                                     seedCommitment: $0.blob(4), signature: $0.blob(5))
        }
        stages.advertised = Set(secureAdvertisements.keys)
        try database.run("SELECT DISTINCT sender FROM secure_shares WHERE round_id = ?", id) { stages.shared.insert($0.text(0)) }
        try database.run("SELECT DISTINCT holder FROM secure_reveals WHERE round_id = ?", id) { stages.unmasked.insert($0.text(0)) }
        revealedShares = [:]
        try database.run("SELECT owner, COUNT(*) FROM secure_reveals WHERE round_id = ? GROUP BY owner", id) { self.revealedShares[$0.text(0)] = Int($0.integer(1)) }
        // Revoked since it opened: no longer waited for.
        var revoked = Set<String>()
        try database.run("SELECT id FROM tenants WHERE status != 'active'") { revoked.insert($0.text(0)) }
        round.expected.subtract(revoked)
        round.secure = stages
    }

    /// A stage began: made durable, written to the audit log, and the tenants waiting on it woken.
    func secureStageBegan(_ round: RoundMachine.Round, now: Double) throws {
        guard let stages = round.secure else { return }
        try database.transaction {
            try database.run("UPDATE rounds SET secure_stage = ? WHERE id = ?", [.text(stages.stage.name), .integer(Int64(round.id))])
            try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "round.stage", object: "round \(round.id)",
                                  detail: "\(stages.stage.name) stage until \(Int(stages.stageDeadline)): \(round.due.count) tenants asked"))
        }
        wakeLongPolls()
    }

    /// In the transaction that ends a round: what tenants relayed for it is not kept.
    func forgetSecureRound(_ id: UInt64) throws {
        for table in ["secure_keys", "secure_shares", "secure_reveals"] {
            try database.run("DELETE FROM \(table) WHERE round_id = ?", [.integer(Int64(id))])
        }
    }

    // MARK: - Stage answers

    /// Stage 1: `tenant`'s signed keys for `round`, checked against the identity key it is enrolled with.
    public func advertise(tenant: String, round id: UInt64, encryptionKey: [UInt8], maskKey: [UInt8], seedCommitment: [UInt8], signature: [UInt8],
                          now: Double) throws {
        try locked {
            try admit(tenant, round: id, stage: .advertise)
            guard let identity = try tenantKey(tenant)?.key else { throw CoordinatorError(403, "not_in_round", "tenant \(tenant) is not enrolled") }
            let ad = SecureAggregation.Advertisement(tenant: tenant, identityKey: identity, encryptionKey: encryptionKey, maskKey: maskKey,
                                                     seedCommitment: seedCommitment, signature: signature)
            do { try ad.verify(round: id) } catch let e as SecureAggregationError { throw CoordinatorError(400, "bad_round_keys", e.description) }
            try database.run("""
                INSERT INTO secure_keys(round_id, tenant_id, identity_key, encryption_key, mask_key, seed_commitment, signature)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, [.integer(Int64(id)), .text(tenant), .blob(identity), .blob(encryptionKey), .blob(maskKey), .blob(seedCommitment), .blob(signature)])
            secureAdvertisements[tenant] = ad
            try perform(try machine.answered(tenant: tenant, round: id, stage: .advertise, now: now), now: now)
        }
    }

    /// Stage 2: `tenant`'s encrypted shares, exactly one for each neighbour that advertised.
    public func shareKeys(tenant: String, round id: UInt64, shares: [(to: String, ciphertext: [UInt8])], now: Double) throws {
        try locked {
            try admit(tenant, round: id, stage: .share)
            guard let p = secureParameters else { throw CoordinatorError(409, "wrong_round", "no secure round is open") }
            let expected = Set(try p.neighbours(of: tenant)).intersection(secureAdvertisements.keys)
            let sent = Set(shares.map(\.to))
            guard sent.count == shares.count, sent == expected else {
                throw CoordinatorError(400, "bad_shares", "send exactly one share to each neighbour that advertised keys (\(expected.count)); got \(shares.count) for \(sent.count) tenants"
                                       + (sent.subtracting(expected).sorted().first.map { ", including \($0)" } ?? ""))
            }
            guard expected.count >= p.shareThreshold else {
                throw CoordinatorError(409, "too_few_neighbours", "\(expected.count) neighbours advertised keys; \(p.shareThreshold) are needed to recover this tenant's secrets")
            }
            if let bad = shares.first(where: { $0.ciphertext.count != SecureAggregation.shareCiphertextBytes }) {
                throw CoordinatorError(400, "bad_shares", "the share to \(bad.to) is \(bad.ciphertext.count) bytes, not \(SecureAggregation.shareCiphertextBytes)")
            }
            try database.transaction {
                for share in shares {
                    try database.run("INSERT INTO secure_shares(round_id, recipient, sender, ciphertext) VALUES (?, ?, ?, ?)",
                                     [.integer(Int64(id)), .text(share.to), .text(tenant), .blob(share.ciphertext)])
                }
            }
            try perform(try machine.answered(tenant: tenant, round: id, stage: .share, now: now), now: now)
        }
    }

    /// Stage 4: the shares `tenant` reveals, exactly one for each neighbour
    /// it masked with, of the kind that neighbour's fate calls for.
    public func reveal(tenant: String, round id: UInt64, shares: [SecureAggregation.RevealedShare], now: Double) throws {
        try locked {
            try admit(tenant, round: id, stage: .unmask)
            guard let p = secureParameters, case .open(let round) = machine.state, let stages = round.secure else {
                throw CoordinatorError(409, "wrong_round", "no secure round is open")
            }
            let maskedWith = Set(try p.neighbours(of: tenant)).intersection(stages.shared)
            let owners = Set(shares.map(\.owner))
            guard owners.count == shares.count, owners == maskedWith else {
                throw CoordinatorError(400, "bad_unmask", "reveal exactly one share for each of the \(maskedWith.count) neighbours this tenant masked with; got \(shares.count) for \(owners.count)")
            }
            let x = try p.point(of: tenant)
            for share in shares {
                let kind: SecureAggregation.RevealedShare.Kind = round.submitted.contains(share.owner) ? .seed : .key
                guard share.kind == kind else {
                    throw CoordinatorError(400, "bad_unmask", "\(share.owner) \(kind == .seed ? "sent its masked input: reveal its seed share" : "sent no masked input: reveal its mask-key share")")
                }
                guard share.share.x == x, share.share.values.count == SecureAggregation.shareElements,
                      share.share.values.allSatisfy({ $0 < ShamirSharing.prime }) else {
                    throw CoordinatorError(400, "bad_unmask", "the share of \(share.owner) must be at x = \(x) with \(SecureAggregation.shareElements) field elements")
                }
            }
            try database.transaction {
                for share in shares {
                    try database.run("INSERT INTO secure_reveals(round_id, holder, owner, kind, x, share) VALUES (?, ?, ?, ?, ?, ?)",
                                     [.integer(Int64(id)), .text(tenant), .text(share.owner), .text(share.kind.rawValue), .integer(Int64(x)),
                                      .blob(share.share.values.flatMap(SecureAggregation.littleEndianBytes))])
                }
            }
            var action = try machine.answered(tenant: tenant, round: id, stage: .unmask, now: now)
            for share in shares { revealedShares[share.owner, default: 0] += 1 }
            // Every secret the unmasking needs can be recovered now: waiting
            // for the other survivors' shares (and for the deadline, if one
            // of them vanished) would only delay the release.
            if action == .none, stages.shared.allSatisfy({ revealedShares[$0, default: 0] >= p.shareThreshold }) {
                action = machine.unmaskingRecoverable(round: id)
            }
            try perform(action, now: now)
        }
    }

    /// Whether `tenant` may answer `stage` of `round` now, as the refusal a tenant can act on.
    private func admit(_ tenant: String, round id: UInt64, stage: Stage) throws {
        do { try machine.admit(tenant: tenant, round: id, stage: stage) } catch let e as RoundMachine.MachineError {
            throw Self.refusal(e, round: id)
        }
    }

    static func refusal(_ error: RoundMachine.MachineError, round id: UInt64) -> CoordinatorError {
        switch error {
        case .noOpenRound: CoordinatorError(409, "wrong_round", "no round is open")
        case .wrongRound(let open, _): CoordinatorError(409, "wrong_round", "round \(open) is open, not \(id)")
        case .roundAlreadyOpen(let open): CoordinatorError(409, "wrong_round", "round \(open) is open")
        case .notExpected(let tenant): CoordinatorError(403, "not_in_round", "tenant \(tenant) is not part of round \(id)")
        case .duplicate: CoordinatorError(409, "already_answered", "this tenant already answered this stage of round \(id)")
        case .wrongStage(let open, let got):
            CoordinatorError(409, "wrong_stage", "round \(id) is \(open.map { "at its \($0.name) stage" } ?? "not a secure round"), not \(got.map { "at \($0.name)" } ?? "taking updates")")
        case .droppedOut(let tenant):
            CoordinatorError(409, "dropped_out", "tenant \(tenant) did not answer an earlier stage of round \(id) in time: the round goes on without it")
        }
    }

    // MARK: - What a tenant sees

    /// `round` as `tenant` is told of it at the current stage (the caller holds the lock).
    func secureView(of round: RoundMachine.Round, for tenant: String) throws -> SecureAggregation.RoundView? {
        guard let p = secureParameters, let stages = round.secure, p.cohort.contains(tenant) else { return nil }
        var view = SecureAggregation.RoundView(parameters: p, stage: stages.stage, stageDeadline: stages.stageDeadline)
        guard stages.stage > .advertise else { return view }
        let neighbours = try p.neighbours(of: tenant)
        view.neighbours = neighbours.compactMap { secureAdvertisements[$0] }
        guard stages.stage > .share else { return view }
        view.sharedNeighbours = neighbours.filter { stages.shared.contains($0) }
        guard stages.stage > .mask else { return view }
        view.survivors = round.submitted.sorted(by: SecureAggregation.precedes)
        try database.run("SELECT sender, ciphertext FROM secure_shares WHERE round_id = ? AND recipient = ? ORDER BY sender",
                         [.integer(Int64(round.id)), .text(tenant)]) {
            view.shares.append(.init(from: $0.text(0), to: tenant, ciphertext: $0.blob(1)))
        }
        return view
    }

    // MARK: - Unmasking

    /// The open round's masked sum with every mask taken off by the shares
    /// revealed, and what the round's close records about it: how many
    /// inputs, and how much noise the survivors above t added.
    func unmaskedOpenRound(_ round: RoundMachine.Round) throws -> (sum: SecureAggregation.MaskedSum, detail: String) {
        guard let p = secureParameters, var masked = maskedSum, let stages = round.secure else {
            throw SecureAggregationError("the round's secure state is missing")
        }
        var revealed = [String: [SecureAggregation.RevealedShare]]()
        try database.run("SELECT holder, owner, kind, x, share FROM secure_reveals WHERE round_id = ?", [.integer(Int64(round.id))]) {
            let words: [UInt64] = Self.values($0.blob(4))
            revealed[$0.text(0), default: []].append(.init(owner: $0.text(1), kind: $0.text(2) == "seed" ? .seed : .key,
                                                         share: .init(x: UInt64($0.integer(3)), values: words.map { UInt64(littleEndian: $0) })))
        }
        try SecureAggregation.unmask(&masked, parameters: p, advertisements: secureAdvertisements, shared: stages.shared,
                                     survivors: round.submitted, revealed: revealed)
        let extra = Double(round.submitted.count) / Double(p.threshold)
        return (masked, " (secure: \(round.submitted.count) of \(p.cohort.count) masked inputs, unmasked with \(stages.unmasked.count) tenants' shares; noise variance \(String(format: "%.2f", extra))x the accounted, threshold \(p.threshold))")
    }
}
