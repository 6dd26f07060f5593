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
                try answer { try client.reveal(reveals, round: round) }
                return Outcome(kind: .sent, message: "round \(round): revealed \(reveals.count) shares to unmask the sum of \(survivors.count) tenants' inputs", round: round)
            }
        } catch let e as SecureAggregationError {
            // The coordinator relayed something an honest round never holds: nothing is sent.
            return Outcome(kind: .failed, message: "refused round \(round): \(e)", round: round)
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
