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

    @Test func theLatestModelNamesItsVersionUnderTheSignature() throws {
        let plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 50, placement: .tenant, minimumTenants: 1, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        let h = try Harness(plan: plan)
        let tenant = try h.enrollTenant("loja")
        func get(_ target: String) throws -> HTTPResponse {
            h.send("GET", target, headers: try h.signed("GET", target, tenant: tenant.id, key: tenant.key))
        }
        func header(_ response: HTTPResponse, _ name: String) -> String? { response.headers.first { $0.0.lowercased() == name }?.1 }
        func checkLatest(is version: UInt64) throws {
            let latest = try get("/v1/models/latest")
            #expect(latest.status == 200 && header(latest, ModelProvenance.versionHeader) == String(version))
            #expect(latest.body == (try #require(try h.service.model(version: version))).file)
            // The signature binds the named version: the same answer cannot pass for another version.
            let signature = header(latest, ModelProvenance.signatureHeader), digest = header(latest, ModelProvenance.digestHeader)
            let key = try #require(Hex.decode(h.service.publicKeyHex))
            try ModelProvenance.verify(file: latest.body, version: version, sha256: digest, signature: signature, coordinatorKey: key)
            #expect(throws: ProtocolError.self) {
                try ModelProvenance.verify(file: latest.body, version: version + 1, sha256: digest, signature: signature, coordinatorKey: key)
            }
        }
        try checkLatest(is: 1) // the plan's initial model
        try h.service.maintain(now: h.now)
        let update = UpdateEnvelope(round: 1, modelVersion: 1, flags: [.tenantNoised], weight: 2, values: [Float](repeating: 0.01, count: plan.dimension))
        #expect(h.send("POST", "/v1/rounds/1/updates", body: update.encoded(),
                       headers: try h.signed("POST", "/v1/rounds/1/updates", body: update.encoded(), tenant: tenant.id, key: tenant.key)).status == 202)
        try checkLatest(is: 2)
        for target in ["/v1/models/99", "/v1/models/newest", "/v1/models/-1"] {
            let missing = try get(target)
            #expect(missing.status == 404 && Harness.json(missing)["error"] as? String == "unknown_model", "\(target)")
        }
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

/// Secure placement through the routes: the cohort is the tenants with an
/// agreement key, the coordinator sums masked updates, and the round closes
/// only when every member's is in.
@Suite struct SecureRoundTests {
    static let plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                           maximumEpsilon: 50, placement: .secure, minimumTenants: 2, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))

    struct Member {
        var id: String
        var key: Ed25519.KeyPair
        var agreement: X25519.KeyPair
    }

    static func cohort(_ h: Harness, size: Int) throws -> [Member] {
        try (0..<size).map { t in
            let agreement = try X25519.KeyPair.generate()
            let enrolled = try h.enrollTenant("loja\(t)", agreementKey: agreement.publicKey)
            return Member(id: enrolled.id, key: enrolled.key, agreement: agreement)
        }
    }

    static func post(_ h: Harness, _ member: Member, _ envelope: UpdateEnvelope) throws -> HTTPResponse {
        let body = envelope.encoded()
        return h.send("POST", "/v1/rounds/1/updates", body: body,
                      headers: try h.signed("POST", "/v1/rounds/1/updates", body: body, tenant: member.id, key: member.key))
    }

    @Test func theRoundClosesOnTheUnmaskedSumOfEveryMembersRelease() throws {
        let h = try Harness(plan: Self.plan)
        let members = try Self.cohort(h, size: 3)
        _ = try h.enrollTenant("sem-chave") // no agreement key: not in a secure round's cohort
        try h.service.maintain(now: h.now)

        let target = "/v1/rounds/current"
        let answer = h.send("GET", target, headers: try h.signed("GET", target, tenant: members[0].id, key: members[0].key))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(answer.body)) as? [String: Any])
        let listed = try #require(object["cohort"] as? [[String: Any]])
        #expect(listed.compactMap { $0["tenant"] as? String }.sorted() == members.map(\.id).sorted())
        #expect(object["tenant"] as? String == members[0].id)
        let cohort = try #require(try h.service.currentRound(for: members[0].id)).cohort
        #expect(cohort.count == 3)

        // Grid releases as the tenants would compute them (rounded sums plus noise shares), masked.
        let releases: [[Int64]] = (0..<3).map { t in
            (0..<Self.plan.dimension).map { i -> Int64 in
                let spread = (i * 31 + t * 7) % 2001
                return Int64(spread - 1000) * 1_000
            }
        }
        let masked = try (0..<3).map { t in
            try SecureAggregation.masked(releases[t], tenant: members[t].id, key: members[t].agreement, cohort: cohort, round: 1, modelVersion: 1)
        }
        #expect(masked[0].map { Int64(bitPattern: $0) } != releases[0])

        // A float update is refused in a secure round, and changes nothing.
        let plain = UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: 1, values: [Float](repeating: 0, count: Self.plan.dimension))
        #expect(try Self.post(h, members[0], plain).status == 400)

        for t in 0..<3 {
            #expect(try Self.post(h, members[t], UpdateEnvelope(round: 1, modelVersion: 1, weight: Double(t + 1), masked: masked[t])).status == 202)
        }
        let model = try ModelFile.decode(try #require(try h.service.model(version: 2)).file)
        let step = try SecureAggregation.mechanism(Self.plan).step
        for i in model.weights.indices {
            let expected = Double(releases[0][i] + releases[1][i] + releases[2][i]) * step / 6
            #expect(abs(Double(model.weights[i]) - expected) < 1e-6, "value \(i)")
        }
        #expect(model.bias.allSatisfy { $0 == 0 })
    }

    @Test func aRestartKeepsTheMaskedSumOfAcknowledgedUpdates() throws {
        let h = try Harness(plan: Self.plan)
        let members = try Self.cohort(h, size: 3)
        try h.service.maintain(now: h.now)
        let cohort = try #require(try h.service.currentRound(for: members[0].id)).cohort
        let bodies = try (0..<3).map { t in
            UpdateEnvelope(round: 1, modelVersion: 1, weight: 1, masked: try SecureAggregation.masked(
                [Int64](repeating: Int64(t + 1) * 4096, count: Self.plan.dimension), tenant: members[t].id, key: members[t].agreement,
                cohort: cohort, round: 1, modelVersion: 1)).encoded()
        }
        for t in 0..<2 { _ = try h.service.submit(tenant: members[t].id, round: 1, body: bodies[t], now: h.now) }
        // A new process on the same state: the round and its masked sum come back from the database.
        let restarted = try CoordinatorService(directory: h.directory)
        #expect(try restarted.submit(tenant: members[1].id, round: 1, body: bodies[1], now: h.now)) // a retry: acknowledged again, not counted
        #expect(try !restarted.submit(tenant: members[2].id, round: 1, body: bodies[2], now: h.now))
        let model = try ModelFile.decode(try #require(try restarted.model(version: 2)).file)
        let expected = Float(Double(6 * 4096) * (try SecureAggregation.mechanism(Self.plan).step) / 3)
        #expect(model.weights.allSatisfy { abs($0 - expected) < 1e-6 })
    }

    @Test func aMissingMemberAbandonsTheRoundAndNothingIsReleased() throws {
        let h = try Harness(plan: Self.plan)
        let members = try Self.cohort(h, size: 3)
        try h.service.maintain(now: h.now)
        let cohort = try #require(try h.service.currentRound(for: members[0].id)).cohort
        for t in 0..<2 {
            let masked = try SecureAggregation.masked([Int64](repeating: 5, count: Self.plan.dimension), tenant: members[t].id,
                                                      key: members[t].agreement, cohort: cohort, round: 1, modelVersion: 1)
            #expect(try Self.post(h, members[t], UpdateEnvelope(round: 1, modelVersion: 1, weight: 1, masked: masked)).status == 202)
        }
        // Two of three is enough for the plan's minimum, but not for the masks: at the deadline the round is abandoned.
        h.now += 601
        try h.service.maintain(now: h.now)
        #expect(try h.service.model(version: 2) == nil)
        var state = ""
        try h.service.database.run("SELECT state FROM rounds WHERE id = 1") { state = $0.text(0) }
        #expect(state == "abandoned")
    }
}
