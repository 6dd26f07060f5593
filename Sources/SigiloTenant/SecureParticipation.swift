import Foundation
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloPrivacy

/// The tenant's part in a secure round's stages other than the masked input
/// (which `participate` trains and sends like any update): advertise its
/// signed round keys, share its secrets with its neighbours, reveal what
/// unmasks the survivors' sum. Each step is idempotent: after a crash or a
/// lost answer the next attempt sends the same keys, and never a second
/// survivor list's shares.
enum SecureParticipation {
    typealias Outcome = TenantTool.Outcome

    static func step(_ info: CoordinatorClient.RoundInfo, view: SecureAggregation.RoundView, roundKey: String, client: CoordinatorClient,
                     store: TenantStore) throws -> Outcome {
        let round = info.round
        let me = client.keyId
        guard info.awaited else {
            if info.answered {
                return Outcome(kind: .waiting, message: "round \(round): answered its \(view.stage.name) stage; waiting for the others",
                               continues: view.stage != .unmask, round: round)
            }
            return Outcome(kind: .waiting, message: "round \(round) went on without this tenant (it missed an earlier stage); it takes part from the next round",
                           round: round)
        }
        do {
            switch view.stage {
            case .advertise:
                let secrets = try store.roundSecrets(round: roundKey, create: true)!
                let ad = try SecureAggregation.Advertisement.signed(round: round, tenant: me, identity: try store.identity(), secrets: secrets)
                try answer { try client.advertise(ad, round: round) }
                return Outcome(kind: .sent, message: "round \(round): advertised this round's keys (secure cohort of \(view.parameters.cohort.count), threshold \(view.parameters.threshold))",
                               continues: true, round: round)
            case .share:
                guard let secrets = try store.roundSecrets(round: roundKey, create: false) else { return lostSecrets(round) }
                let rng = SecureRandom()
                let shares = try SecureAggregation.shares(of: me, secrets: secrets, parameters: view.parameters, neighbours: view.neighbours,
                                                          random: { rng.next() })
                try answer { try client.sendShares(shares, round: round) }
                return Outcome(kind: .sent, message: "round \(round): sent its secrets' shares, encrypted, to \(shares.count) neighbours", continues: true, round: round)
            case .mask:
                preconditionFailure("the masked input is sent by participate")
            case .unmask:
                guard let secrets = try store.roundSecrets(round: roundKey, create: false) else { return lostSecrets(round) }
                let survivors = Set(view.survivors)
                let reveals = try SecureAggregation.reveal(tenant: me, secrets: secrets, parameters: view.parameters, maskedWith: view.maskedWith,
                                                           received: view.shares, survivors: survivors, answered: try store.unmaskedFor(round: roundKey))
                try store.recordUnmask(round: roundKey, survivors: survivors) // before anything leaves
                do { try answer { try client.reveal(reveals, round: round) } } catch let e as ClientError where e.code == "wrong_round" {
                    return Outcome(kind: .waiting, message: "round \(round): closed on its other tenants' shares before this tenant's arrived (\(e.message))", round: round)
                }
                return Outcome(kind: .sent, message: "round \(round): revealed \(reveals.count) shares to unmask the sum of \(survivors.count) tenants' inputs", round: round)
            }
        } catch let e as SecureAggregationError {
            // The coordinator relayed something an honest round never holds: nothing is sent.
            return Outcome(kind: .failed, message: "refused round \(round): \(e)", round: round)
        }
    }

    /// The ledger rule for secure rounds (protocol/PROTOCOL.md, "Abandoned
    /// rounds"). A masked input is charged before it leaves, as any update.
    /// But it hides the tenant's vector under a self mask whose seed honest
    /// neighbours reveal only at the unmask stage, and only for a survivor
    /// list of at least t: a round abandoned before that stage began released
    /// nothing, and no sum including this input can ever be unmasked. So the
    /// charge of a round this tenant never saw reach its unmask stage stays
    /// pending until the round is over, and is withdrawn when the coordinator,
    /// under its signature, says the round was abandoned before the unmask
    /// stage (a false statement would be signed evidence against it). A round
    /// that reached the unmask stage, or closed, keeps its charge. Rounds
    /// still open (`openRound`) are left for later.
    static func settleCharges(client: CoordinatorClient, store: TenantStore, openRound: UInt64?) throws {
        let prefix = client.baseURL.absoluteString + "#"
        for key in try store.pendingSecureCharges() where key.hasPrefix(prefix) {
            guard let round = UInt64(key.dropFirst(prefix.count)), round != openRound else { continue }
            let outcome: (state: String, stage: String?)
            do { outcome = try client.roundOutcome(round) } catch let e as ClientError where e.code == "unknown_round" {
                continue // a coordinator restored from an older backup: the charge stays pending
            }
            switch (outcome.state, outcome.stage) {
            case ("open", _):
                continue
            case ("abandoned", let stage) where stage != RoundMachine.SecureStages.Stage.unmask.name:
                try store.settleSecureCharge(round: key, withdrawn: "round \(round) was abandoned at its \(stage ?? "first") stage, before any unmasking (the coordinator's signed outcome)",
                                             now: Date().timeIntervalSince1970)
            default:
                try store.settleSecureCharge(round: key, withdrawn: nil, now: Date().timeIntervalSince1970)
            }
        }
    }

    /// Sends a stage's answer; one the coordinator already has (the first
    /// attempt's answer was lost) counts as sent.
    static func answer(_ send: () throws -> Void) throws {
        do { try send() } catch let e as ClientError where e.code == "already_answered" {}
    }

    static func lostSecrets(_ round: UInt64) -> Outcome {
        Outcome(kind: .failed, message: "round \(round): this tenant's secrets for it are not in its store (it advertised from another store?); it takes part from the next round",
                round: round)
    }
}
