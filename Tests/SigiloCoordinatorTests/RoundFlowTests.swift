import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloModel
import SigiloProtocol

/// Rounds through the service: the running sum (updated in place and written
/// over its row; a failed commit must not leave the refused update in memory)
/// and long-polls for the next round.
@Suite struct RoundFlowTests {
    @Test func aFailedCommitLeavesTheSumAsCommittedAndTheRetryCountsOnce() throws {
        let plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 50, placement: .tenant, minimumTenants: 3, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        let h = try Harness(plan: plan)
        let tenants = try (0..<3).map { try h.enrollTenant("loja\($0)") }
        try h.service.maintain(now: h.now)
        let updates = (0..<3).map { t in
            UpdateEnvelope(round: 1, modelVersion: 1, flags: [.tenantNoised], weight: Double(t + 2),
                           values: (0..<plan.dimension).map { Float(sin(Double($0 * 7 + t))) * 0.01 })
        }
        func post(_ t: Int) throws -> HTTPResponse {
            let body = updates[t].encoded()
            return h.send("POST", "/v1/rounds/1/updates", body: body,
                          headers: try h.signed("POST", "/v1/rounds/1/updates", body: body, tenant: tenants[t].id, key: tenants[t].key))
        }
        #expect(try post(0).status == 202)
        // The second update's commit fails (a trigger on the service's own connection) after it was added in memory.
        try h.service.database.execute("""
            CREATE TEMP TRIGGER refuse BEFORE INSERT ON submissions WHEN NEW.tenant_id = '\(tenants[1].id)'
            BEGIN SELECT RAISE(ABORT, 'injected failure'); END
            """)
        #expect(try post(1).status >= 500)
        try h.service.database.execute("DROP TRIGGER refuse")
        #expect(try post(1).status == 202)
        #expect(try post(2).status == 202) // the round closes: model 2 = model 1 + sum / weight (FedAvg, lr 1, no central noise)
        let file = try #require(try h.service.model(version: 2)).file
        let model = try ModelFile.decode(file)
        let weight = updates.reduce(0) { $0 + $1.weight }
        var expected = [Float](repeating: 0, count: model.weights.count)
        for u in updates { for i in expected.indices { expected[i] += u.values[i] } }
        for i in expected.indices { #expect(abs(model.weights[i] - expected[i] / Float(weight)) < 1e-6, "value \(i)") }
        #expect(model.bias.allSatisfy { $0 == 0 }) // the bias is not federated
    }

    @Test func aLongPollReturnsTheRoundThatOpensWhileItWaits() throws {
        let h = try Harness()
        let first = try h.enrollTenant("loja0")
        let target = "/v1/rounds/current?wait=10"
        let headers = try h.signed("GET", target, tenant: first.id, key: first.key)
        final class Box: @unchecked Sendable { var response: HTTPResponse? }
        let box = Box()
        let done = DispatchSemaphore(value: 0)
        Thread { box.response = h.send("GET", target, headers: headers); done.signal() }.start()
        usleep(300_000) // the poll is waiting: one tenant of the two the plan needs
        _ = try h.enrollTenant("loja1")
        try h.service.maintain(now: h.now)
        #expect(done.wait(timeout: .now() + 10) == .success)
        let response = try #require(box.response)
        #expect(response.status == 200)
        #expect(Harness.json(response)["round"] as? Int == 1)
    }
}
