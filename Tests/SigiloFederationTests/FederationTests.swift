import Foundation
import Testing
@testable import SigiloFederation
import SigiloModel
import SigiloText
import SigiloCrypto

@Suite struct RoundMachineTests {
    func opened(_ tenants: Set<String> = ["a", "b", "c"], minimum: Int = 2) throws -> RoundMachine {
        var m = RoundMachine()
        _ = try m.open(id: 1, modelVersion: 5, tenants: tenants, minimumTenants: minimum, now: 100, duration: 60)
        return m
    }

    @Test func closesWhenEveryActiveTenantHasSubmitted() throws {
        var m = try opened()
        #expect(try m.submitted(tenant: "a", round: 1, now: 101) == .none)
        #expect(try m.submitted(tenant: "b", round: 1, now: 102) == .none)
        guard case .close(let r) = try m.submitted(tenant: "c", round: 1, now: 103) else { Issue.record("expected close"); return }
        #expect(r.submitted == ["a", "b", "c"])
    }

    @Test func deadlineClosesWithEnoughTenantsAndAbandonsWithout() throws {
        var m = try opened()
        _ = try m.submitted(tenant: "a", round: 1, now: 101)
        #expect(m.tick(now: 159) == .none)
        guard case .abandon = m.tick(now: 160) else { Issue.record("expected abandon with 1 of minimum 2"); return }
        var n = try opened()
        _ = try n.submitted(tenant: "a", round: 1, now: 101)
        _ = try n.submitted(tenant: "b", round: 1, now: 102)
        guard case .close = n.tick(now: 161) else { Issue.record("expected close at the deadline"); return }
    }

    @Test func revocationNoLongerHoldsTheRoundOpen() throws {
        var m = try opened()
        _ = try m.submitted(tenant: "a", round: 1, now: 101)
        _ = try m.submitted(tenant: "b", round: 1, now: 102)
        guard case .close = m.revoked(tenant: "c", now: 103) else { Issue.record("expected close after c was revoked"); return }
    }

    @Test func refusesWrongRoundsStrangersDuplicatesAndASecondOpenRound() throws {
        var m = try opened()
        #expect(throws: RoundMachine.MachineError.wrongRound(expected: 1, got: 2)) { try m.admit(tenant: "a", round: 2) }
        #expect(throws: RoundMachine.MachineError.notExpected("z")) { try m.admit(tenant: "z", round: 1) }
        _ = try m.submitted(tenant: "a", round: 1, now: 101)
        #expect(throws: RoundMachine.MachineError.duplicate("a")) { try m.submitted(tenant: "a", round: 1, now: 102) }
        #expect(throws: RoundMachine.MachineError.roundAlreadyOpen(1)) {
            try m.open(id: 2, modelVersion: 6, tenants: ["a"], minimumTenants: 1, now: 103, duration: 10)
        }
        m.finished()
        #expect(throws: RoundMachine.MachineError.noOpenRound) { try m.admit(tenant: "a", round: 1) }
    }
}

@Suite struct AggregationTests {
    let plan = Plan(labels: ["a", "b"], bucketBits: 8, placement: .tenant, serverOptimizer: .init(kind: .fedavg))

    /// A plan-sized vector starting with `head`, zeros after.
    func vector(_ head: [Float]) -> [Float] { head + [Float](repeating: 0, count: plan.dimension - head.count) }

    @Test func averagesOverTheExpectedNotTheObservedCount() throws {
        var sum = RoundSum(dimension: plan.dimension)
        sum.add(vector([1, 2, 3]), weight: 2.5)
        sum.add(vector([3, 2, 1]), weight: 2.5)
        var optimizer = ServerOptimizerState()
        let next = try closeRound(sum: sum, model: vector([]), plan: plan, optimizer: &optimizer) { _ in Issue.record("no central noise for tenant placement") }
        #expect(next == vector([0.8, 0.8, 0.8])) // (4, 4, 4) / 5 expected customers, not / 2 updates
    }

    @Test func centralPlacementNoisesTheSumOnce() throws {
        var central = plan
        central.placement = .central
        var sum = RoundSum(dimension: plan.dimension)
        sum.add(vector([1, 1]), weight: 1)
        var calls = 0
        var optimizer = ServerOptimizerState()
        let next = try closeRound(sum: sum, model: vector([]), plan: central, optimizer: &optimizer) { values in
            calls += 1
            values[0] += 10
        }
        #expect(calls == 1)
        #expect(next == vector([11, 1]))
    }

    /// The bias is not federated: whatever reaches its coordinates (noise
    /// only, from honest tenants) is dropped and the model's bias stays.
    @Test func theBiasCoordinatesAreDropped() throws {
        let biasStart = plan.dimension - plan.labels.count
        var sum = RoundSum(dimension: plan.dimension)
        var update = vector([2])
        for i in biasStart..<plan.dimension { update[i] = 5 }
        sum.add(update, weight: 1)
        var model = vector([])
        model[biasStart] = -1
        var optimizer = ServerOptimizerState()
        let next = try closeRound(sum: sum, model: model, plan: plan, optimizer: &optimizer) { _ in }
        #expect(next[0] == 2)
        #expect(Array(next[biasStart...]) == [-1, 0])
    }

    @Test func optimisersStepInTheUpdatesDirection() {
        for kind in [Plan.ServerOptimizer.Kind.fedavg, .fedavgm, .fedadam] {
            var state = ServerOptimizerState()
            var model: [Float] = [0, 0]
            for _ in 0..<3 { state.apply([1, -1], to: &model, settings: .init(kind: kind, learningRate: 0.1)) }
            #expect(model[0] > 0 && model[1] < 0, "\(kind)")
        }
        // Momentum accumulates: three steps of FedAvgM go further than three of FedAvg.
        var avg = ServerOptimizerState(), mom = ServerOptimizerState()
        var a: [Float] = [0], m: [Float] = [0]
        for _ in 0..<3 {
            avg.apply([1], to: &a, settings: .init(kind: .fedavg, learningRate: 1))
            mom.apply([1], to: &m, settings: .init(kind: .fedavgm, learningRate: 1, momentum: 0.9))
        }
        #expect(m[0] > a[0])
    }

    @Test func normBoundAdmitsHonestUpdatesOnly() {
        let bound = updateNormBound(population: 10, clipNorm: 1, noiseMultiplier: 1, tenantNoised: true, dimension: 10_000)
        #expect(bound > 10 + 100) // signal + sqrt(d) noise
        #expect(bound < 10 + 100 + 11)
        #expect(updateNormBound(population: 10, clipNorm: 1, noiseMultiplier: 1, tenantNoised: false, dimension: 10_000) < 10.001)
    }
}

@Suite struct PlanTests {
    @Test func decodesValidatesAndNamesTheBadField() throws {
        let good = try JSONEncoder().encode(Plan(labels: ["saudacao", "cancelar"]))
        #expect(try Plan.decode(good).labels == ["saudacao", "cancelar"])
        func message(_ json: String) -> String {
            do { _ = try Plan.decode(Data(json.utf8)); return "" } catch { return "\(error)" }
        }
        var plan = try JSONSerialization.jsonObject(with: good) as! [String: Any]
        plan["sampleRate"] = 1.5
        #expect(message(String(decoding: try JSONSerialization.data(withJSONObject: plan), as: UTF8.self)).contains("sampleRate"))
        plan["sampleRate"] = 0.1
        plan.removeValue(forKey: "clipNorm")
        #expect(message(String(decoding: try JSONSerialization.data(withJSONObject: plan), as: UTF8.self)).contains("clipNorm"))
        #expect(message("{not json").contains("not valid JSON"))
        #expect(throws: PlanError.self) { try Plan(labels: ["a", "a"]).validate() }
        #expect(throws: PlanError.self) { try Plan(labels: ["a"], noiseMultiplier: .nan).validate() }
    }

    /// Issue 22: encoder features in a plan name the encoder by digest and width, and size the model.
    @Test func encoderFeaturesNeedTheEncodersDigestAndWidth() throws {
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 10)
        #expect(plan.dimension == 1024 * 3 + 3)
        plan.features = .both
        #expect(throws: PlanError.self) { try plan.validate() }
        plan.encoderSHA256 = String(repeating: "ab", count: 32)
        #expect((try? plan.validate()) == nil) // the width is still missing
        plan.encoderDimension = 384
        try plan.validate()
        #expect(plan.dimension == (1024 + 384) * 3 + 3)
        #expect(plan.featureConfiguration.encoderDigest == [UInt8](repeating: 0xab, count: 32))
        plan.features = .encoder
        #expect(plan.dimension == 384 * 3 + 3)
        #expect(try Plan.decodeOperatorFile(JSONEncoder().encode(plan)) == plan)
        var copy = Plan(labels: ["a"])
        copy.useFeatures(of: plan.featureConfiguration)
        #expect(copy.features == .encoder && copy.encoderSHA256 == plan.encoderSHA256 && copy.encoderDimension == 384)
        for (field, edit) in [("encoderSHA256", { (p: inout Plan) in p.encoderSHA256 = String(repeating: "AB", count: 32) }),
                              ("encoderDimension", { (p: inout Plan) in p.encoderDimension = 0 }),
                              ("encoderSHA256", { (p: inout Plan) in p.features = .hashed })] {
            var bad = plan
            edit(&bad)
            do { try bad.validate(); Issue.record("\(field) accepted") } catch { #expect("\(error)".contains(field), "\(error)") }
        }
    }

    /// Issue 23: a typo or an invented field in an operator's plan is named, not dropped.
    @Test func anOperatorsPlanWithAnUnknownFieldIsRefusedByName() throws {
        var plan = Plan(labels: ["a", "b"])
        plan.maximumTenantWeight = 100
        plan.excludeAnomalousUpdates = true
        let good = try JSONEncoder().encode(plan)
        #expect(try Plan.decodeOperatorFile(good) == plan) // every known field, optional ones included
        func refusal(_ edit: (inout [String: Any]) -> Void) throws -> String {
            var object = try JSONSerialization.jsonObject(with: good) as! [String: Any]
            edit(&object)
            let data = try JSONSerialization.data(withJSONObject: object)
            #expect((try? Plan.decode(data)) != nil) // the wire stays lenient: an older tenant reads a newer coordinator's plan
            do { _ = try Plan.decodeOperatorFile(data); return "" } catch { return "\(error)" }
        }
        #expect(try refusal { $0["epsilonBudget"] = 4 }.contains("unknown field epsilonBudget"))
        #expect(try refusal { $0["excludeAnomalousUpdate"] = true }.contains("unknown field excludeAnomalousUpdate;"))
        #expect(try refusal {
            var optimizer = $0["serverOptimizer"] as! [String: Any]
            optimizer["learningrate"] = 2
            $0["serverOptimizer"] = optimizer
        }.contains("unknown field serverOptimizer.learningrate"))
    }
}

@Suite struct LocalRoundTests {
    let plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 0.5, placement: .central)

    /// One customer's update: only the rows of its messages' features, the
    /// bias left at zero (it is not federated), the whole clipped to C.
    @Test func anUpdateTouchesItsFeaturesRowsOnlyAndIsClipped() {
        let model = SoftmaxModel(features: FeatureConfiguration(bucketBits: plan.bucketBits), labels: plan.labels)
        let local = LocalRound(model: model, plan: plan)
        let examples = [(SparseVector(indices: [3, 40], values: [0.6, 0.8]), 0),
                        (SparseVector(indices: [40, 200], values: [0.8, 0.6]), 2)]
        var sum = [Float](repeating: 0, count: plan.dimension)
        let norm = local.addCustomerUpdate(examples: examples, into: &sum)
        #expect(norm > plan.clipNorm) // two local epochs at learning rate 1 go well past C = 0.5
        #expect(abs(RoundSum.norm(sum) - plan.clipNorm) < 1e-5)
        let touched = Set(sum.indices.filter { sum[$0] != 0 }.map { $0 / plan.labels.count })
        #expect(touched == [3, 40, 200])
        // The rows point towards each message's own label.
        #expect(sum[3 * 3 + 0] > 0 && sum[200 * 3 + 2] > 0 && sum[3 * 3 + 2] < 0)
        // A second customer adds to the same sum.
        let before = sum
        local.addCustomerUpdate(examples: [(SparseVector(indices: [7], values: [1]), 1)], into: &sum)
        #expect(sum[7 * 3 + 1] > 0 && sum[3 * 3 + 0] == before[3 * 3 + 0])
    }
}
