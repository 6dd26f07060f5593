import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloFederation
import SigiloModel
import SigiloProtocol

/// Issue 23: a business adds an intent without starting over.
@Suite struct PlanLifecycleTests {
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

        // Reordering, dropping or renaming in place is refused by name; appending is taken.
        for labels in [["b", "a", "c", "d"], ["a", "b"], ["a", "b", "x", "d"]] {
            var changed = plan
            changed.labels = labels
            #expect(throws: CoordinatorError.self) { try h.service.setPlan(changed, now: h.now) }
        }
        // Set while round 2 is open (with tenants taking part continuously, a round nearly always is): staged until it ends.
        let old = plan
        plan.labels += ["d", "falar_com_humano"]
        try h.service.maintain(now: h.now)
        #expect(try h.service.setPlan(plan, now: h.now) == .staged(untilRound: 2))
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
        #expect(actions.contains("plan.stage") && actions.contains("plan.intents_added"))

        // Round 3 trains the wider model; the optimiser's momentum was widened with it.
        try round(3, version: 4, dimension: plan.dimension)
        let next = try ModelFile.decode(try #require(try h.service.latestModel()).file)
        #expect(next.labels.count == 5 && next.weights.count == plan.dimension - 5)
    }

    @Test func widenedParametersKeepEachOldValueInItsPlace() {
        let values: [Float] = [1, 2, 3, 4, /* bias */ 5, 6] // dimension 2, 2 labels
        #expect(SoftmaxModel.widenParameters(values, dimension: 2, from: 2, to: 3) == [1, 2, 0, 3, 4, 0, 5, 6, 0])
        #expect(SoftmaxModel.widenParameters([], dimension: 2, from: 2, to: 3).isEmpty)
    }
}
