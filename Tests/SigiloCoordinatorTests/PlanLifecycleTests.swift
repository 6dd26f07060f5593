import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloFederation
import SigiloModel
import SigiloPrivacy
import SigiloProtocol

/// Issue 23: a business adds an intent without starting over.
@Suite struct PlanLifecycleTests {
    /// What `body` threw, as printed ("" when it did not throw).
    func refusal(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    @Test func addingIntentsKeepsTheModelAndRoundsGoOn() throws {
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 1000, placement: .tenant, minimumTenants: 1, roundSeconds: 600,
                        serverOptimizer: .init(kind: .fedavgm, learningRate: 1, momentum: 0.9))
        let h = try Harness(plan: plan)
        let tenant = try h.enrollTenant("loja")
        func round(_ id: UInt64, version: UInt64, dimension: Int) throws {
            try h.service.maintain(now: h.now)
            #expect(try h.service.status().openRound == id)
            let values = (0..<dimension).map { Float(($0 % 7) + 1) * 0.001 }
            let body = UpdateEnvelope(round: id, modelVersion: version, flags: [.tenantNoised], weight: 1, values: values).encoded()
            let answer = h.send("POST", "/v1/rounds/\(id)/updates", body: body,
                                headers: try h.signed("POST", "/v1/rounds/\(id)/updates", body: body, tenant: tenant.id, key: tenant.key))
            #expect(answer.status == 202, "\(String(decoding: answer.body, as: UTF8.self))")
            #expect(try h.service.status().openRound == nil) // closed on its only tenant's update; the next opens at the next tick
            h.now += 1
        }
        try round(1, version: 1, dimension: plan.dimension)

        // Dropping an intent, or renaming it without saying so in formerLabels, is refused by name; so are other features.
        for labels in [["a", "b"], ["a", "b", "x", "d"]] {
            var changed = plan
            changed.labels = labels
            let refused = refusal { try h.service.setPlan(changed, now: h.now) }
            #expect(refused.contains("\"c\" is missing") && refused.contains("formerLabels"), "\(refused)")
        }
        var wider = plan
        wider.bucketBits = 9
        #expect(refusal { try h.service.setPlan(wider, now: h.now) }.contains("bucketBits"))
        // Set while round 2 is open (with tenants taking part continuously, a round nearly always is): staged until it ends.
        let old = plan
        plan.labels += ["d", "falar_com_humano"]
        try h.service.maintain(now: h.now)
        #expect(try h.service.setPlan(plan, now: h.now).stagedUntilRound == 2)
        #expect(try h.service.plan() == old)
        try round(2, version: 2, dimension: old.dimension) // the open round finishes under the plan it opened with
        let learnt = try ModelFile.decode(try #require(try h.service.latestModel()).file)
        #expect(learnt.weights.contains { $0 != 0 } && learnt.labels.count == 3)

        // The next tick puts the plan in force and publishes the wider model before opening round 3 on it.
        try h.service.maintain(now: h.now)
        #expect(try h.service.plan() == plan)
        let widened = try #require(try h.service.latestModel())
        #expect(widened.version == 4) // 1 initial, 2 and 3 from rounds 1 and 2, 4 with the new intents
        let model = try ModelFile.decode(widened.file)
        #expect(model.labels == ["a", "b", "c", "d", "falar_com_humano"] && model.handoffLabels.contains(4))
        for bucket in 0..<learnt.features.dimension {
            for label in 0..<3 { #expect(model.weights[bucket * 5 + label] == learnt.weights[bucket * 3 + label]) }
            #expect(model.weights[bucket * 5 + 3] == 0 && model.weights[bucket * 5 + 4] == 0)
        }
        #expect(Array(model.bias.prefix(3)) == learnt.bias && model.bias.suffix(2) == [0, 0])
        let actions = try h.service.auditEntries().map(\.entry.action)
        #expect(actions.contains("plan.stage") && actions.contains("plan.labels_changed"))

        // Round 3 trains the wider model; the optimiser's momentum was widened with it.
        try round(3, version: 4, dimension: plan.dimension)
        let next = try ModelFile.decode(try #require(try h.service.latestModel()).file)
        #expect(next.labels.count == 5 && next.weights.count == plan.dimension - 5)
    }

    /// A spent budget raised by a new plan: the new rounds compose with every round already charged,
    /// so the reported epsilon is that of all rounds together, never a fresh count.
    @Test func aRaisedBudgetComposesWithWhatWasSpent() throws {
        var plan = Plan(labels: ["a", "b"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5, maximumEpsilon: 1,
                        placement: .tenant, minimumTenants: 1, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        let charged = try GaussianNoise(clipNorm: 1, noiseMultiplier: 1, dimension: plan.dimension).effectiveNoiseMultiplier
        let epsilon = { (rounds: Int) in try PLDAccountant.epsilon(try SubsampledGaussian(sampleRate: 0.5, noiseMultiplier: charged), steps: rounds, delta: 1e-5) }
        plan.maximumEpsilon = (try epsilon(2) + epsilon(3)) / 2 // two rounds fit
        let h = try Harness(plan: plan)
        let tenant = try h.enrollTenant("loja")
        func roundOpens() throws -> Bool {
            try h.service.maintain(now: h.now)
            guard let id = try h.service.status().openRound else { return false }
            let version = try #require(try h.service.latestModel()).version
            let body = UpdateEnvelope(round: id, modelVersion: version, flags: [.tenantNoised], weight: 1, values: [Float](repeating: 0.001, count: plan.dimension)).encoded()
            #expect(h.send("POST", "/v1/rounds/\(id)/updates", body: body,
                           headers: try h.signed("POST", "/v1/rounds/\(id)/updates", body: body, tenant: tenant.id, key: tenant.key)).status == 202)
            h.now += 1
            return true
        }
        #expect(try roundOpens() && roundOpens())
        #expect(try !roundOpens())
        #expect(h.service.noRoundReason(for: tenant.id).contains("privacy budget exhausted"))
        #expect(try h.service.auditEntries().contains { $0.entry.action == "alert.budget_exhausted" })

        // The operator raises the budget to fit four rounds in all: two more open, not four.
        plan.maximumEpsilon = (try epsilon(4) + epsilon(5)) / 2
        #expect(try h.service.setPlan(plan, now: h.now).stagedUntilRound == nil)
        #expect(try roundOpens() && roundOpens())
        #expect(try !roundOpens())
        #expect(abs(try h.service.status().epsilon - epsilon(4)) < 1e-9)
    }

    @Test func relabelledParametersKeepRenameAverageAndAdd() {
        let values: [Float] = [1, 2, 3, 4, 5, 6, /* bias */ 7, 8, 9] // dimension 2, labels x y z
        // New labels: z kept, x and y merged, one added.
        #expect(SoftmaxModel.relabelParameters(values, dimension: 2, from: 3, sources: [[2], [0, 1], []]) == [3, 1.5, 0, 6, 4.5, 0, 9, 7.5, 0])
        #expect(SoftmaxModel.relabelParameters([], dimension: 2, from: 3, sources: [[0]]).isEmpty)
    }

    @Test func intentsAreRenamedAndMergedThroughFormerLabels() throws {
        let plan = Plan(labels: ["oi", "falar_com_humano", "boleto", "2via"], bucketBits: 8, sampleRate: 1, delta: 1e-5, maximumEpsilon: 1000,
                        minimumTenants: 1, serverOptimizer: .init(kind: .fedadam, learningRate: 1, momentum: 0.9))
        let h = try Harness(plan: plan)
        let tenant = try h.enrollTenant("loja")
        try h.service.maintain(now: h.now)
        let values = (0..<plan.dimension).map { Float($0 % 11) * 0.01 }
        let body = UpdateEnvelope(round: 1, modelVersion: 1, flags: [.tenantNoised], weight: 1, values: values).encoded()
        #expect(h.send("POST", "/v1/rounds/1/updates", body: body,
                       headers: try h.signed("POST", "/v1/rounds/1/updates", body: body, tenant: tenant.id, key: tenant.key)).status == 202)
        let learnt = try ModelFile.decode(try #require(try h.service.latestModel()).file)
        #expect(learnt.weights.contains { $0 != 0 }) // round 1 closed on the update

        var changed = plan
        changed.labels = ["segunda_via", "oi", "atendente"]
        changed.formerLabels = ["boleto": "segunda_via", "2via": "segunda_via", "falar_com_humano": "atendente"]
        let change = try h.service.setPlan(changed, now: h.now)
        #expect(change.labels == "renamed falar_com_humano to atendente; merged boleto + 2via into segunda_via (mean of their weights)")
        #expect(change.stagedUntilRound == nil)
        let model = try ModelFile.decode(try #require(try h.service.latestModel()).file)
        #expect(model.labels == changed.labels && model.handoffLabels == [2]) // the hand-off intent stays one under its new name
        for f in 0..<learnt.features.dimension {
            let old = Array(learnt.weights[(f * 4)..<(f * 4 + 4)]), new = Array(model.weights[(f * 3)..<(f * 3 + 3)])
            #expect(new == [(old[2] + old[3]) / 2, old[0], old[1]])
        }
        #expect(model.bias == [(learnt.bias[2] + learnt.bias[3]) / 2, learnt.bias[0], learnt.bias[1]])
        let audit = try h.service.auditEntries().map(\.entry).last { $0.action == "plan.labels_changed" }
        #expect(audit?.detail.contains("merged boleto + 2via into segunda_via") == true)

        // A tenant's message under a former name trains the label that took its place.
        #expect(changed.labelIndex["2via"] == 0 && changed.labelIndex["falar_com_humano"] == 2 && changed.labelIndex["segunda_via"] == 0)
        // Former names are checked: not a current label, and pointing at one.
        var bad = changed
        bad.formerLabels = ["oi": "atendente"]
        #expect(refusal { try bad.validate() }.contains("formerLabels: \"oi\" is a current label"))
        bad.formerLabels = ["boleto": "pix"]
        #expect(refusal { try bad.validate() }.contains("formerLabels.boleto: \"pix\" is not in labels"))
    }
}
