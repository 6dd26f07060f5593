import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloFederation
import SigiloPrivacy
import SigiloHTTP
import SigiloModel
import SigiloProtocol

/// Rounds through the service: the running sum (updated in place and written
/// over its row; a failed commit must not leave the refused update in memory)
/// and long-polls for the next round.
@Suite struct RoundFlowTests {
    /// Three tenants' updates to round 1, whose plan needs all three; the model the round publishes is model 1 +
    /// their sum / their weight (FedAvg, lr 1, tenant-noised: no central noise).
    struct ThreeUpdates {
        let h: Harness
        let tenants: [(id: String, key: Ed25519.KeyPair)]
        let updates: [UpdateEnvelope]

        init() throws {
            let plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                            maximumEpsilon: 50, placement: .tenant, minimumTenants: 3, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
            let h = try Harness(plan: plan)
            tenants = try (0..<3).map { try h.enrollTenant("loja\($0)") }
            try h.service.maintain(now: h.now)
            self.h = h
            updates = (0..<3).map { t in
                UpdateEnvelope(round: 1, modelVersion: 1, flags: [.tenantNoised], weight: Double(t + 2),
                               values: (0..<plan.dimension).map { Float(sin(Double($0 * 7 + t))) * 0.01 })
            }
        }

        /// Posts tenant `t`'s update through `routes` (the harness's by default).
        func post(_ t: Int, to routes: CoordinatorRoutes? = nil) throws -> HTTPResponse {
            let body = updates[t].encoded()
            let headers = try h.signed("POST", "/v1/rounds/1/updates", body: body, tenant: tenants[t].id, key: tenants[t].key)
            return (routes ?? h.routes).handle(h.request("POST", "/v1/rounds/1/updates", body: body, headers: headers), peer: "10.0.0.1:5000")
        }

        /// Model 2 holds each update exactly once.
        func expectPublished(by service: CoordinatorService) throws {
            let file = try #require(try service.model(version: 2)).file
            let model = try ModelFile.decode(file)
            let weight = updates.reduce(0) { $0 + $1.weight }
            var expected = [Float](repeating: 0, count: model.weights.count)
            for u in updates { for i in expected.indices { expected[i] += u.values[i] } }
            for i in expected.indices { #expect(abs(model.weights[i] - expected[i] / Float(weight)) < 1e-6, "value \(i)") }
            #expect(model.bias.allSatisfy { $0 == 0 }) // the bias is not federated
        }
    }

    @Test func aFailedCommitLeavesTheSumAsCommittedAndTheRetryCountsOnce() throws {
        let round = try ThreeUpdates(), h = round.h
        #expect(try round.post(0).status == 202)
        // The second update's commit fails (a trigger on the service's own connection) after it was added in memory.
        try h.service.database.execute("""
            CREATE TEMP TRIGGER refuse BEFORE INSERT ON submissions WHEN NEW.tenant_id = '\(round.tenants[1].id)'
            BEGIN SELECT RAISE(ABORT, 'injected failure'); END
            """)
        #expect(try round.post(1).status >= 500)
        try h.service.database.execute("DROP TRIGGER refuse")
        #expect(try round.post(1).status == 202)
        #expect(try round.post(2).status == 202) // the round closes
        try round.expectPublished(by: h.service)
    }

    /// States before schema 12 kept the open round's sum in the round's row: opening one moves the sum to its
    /// own table, and the round goes on from exactly the updates committed before.
    @Test func anOpenRoundOfAnOlderStateKeepsItsSumThroughTheMigration() throws {
        let round = try ThreeUpdates(), h = round.h
        #expect(try round.post(0).status == 202)
        #expect(try round.post(1).status == 202)
        try h.service.database.execute("""
            ALTER TABLE rounds ADD COLUMN sum BLOB;
            UPDATE rounds SET sum = (SELECT sum FROM round_sums WHERE round_id = rounds.id);
            DROP TABLE round_sums;
            PRAGMA user_version = 11;
            """)
        let migrated = try CoordinatorService(directory: h.directory, secretsKey: Harness.secretsKey)
        let routes = CoordinatorRoutes(service: migrated, clock: { h.now })
        let replay = try round.post(1, to: routes) // already in the sum: counted once
        #expect(replay.status == 202 && Harness.json(replay)["duplicate"] as? Bool == true)
        #expect(try round.post(2, to: routes).status == 202)
        try round.expectPublished(by: migrated)
        var columns: [String] = []
        try migrated.database.run("SELECT name FROM pragma_table_info('rounds')") { columns.append($0.text(0)) }
        #expect(!columns.contains("sum"))
        try migrated.database.run("SELECT COUNT(*) FROM round_sums") { #expect($0.integer(0) == 0) } // the closed round's sum is gone
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

/// Secure placement through the routes, each tenant played with the same
/// protocol functions the tenant CLI calls: stages, dropouts, restarts and
/// refusals, on a clock the test moves.
@Suite struct SecureRoundTests {
    typealias Stage = RoundMachine.SecureStages.Stage

    static func plan(survivorFraction: Double = 0.6) -> Plan {
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 50, placement: .secure, minimumTenants: 2, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        plan.minimumSurvivorFraction = survivorFraction
        return plan
    }

    /// A coordinator (restartable on its state) and the tenants of its secure rounds.
    final class World {
        let h: Harness
        var service: CoordinatorService
        var routes: CoordinatorRoutes
        let tenants: [(id: String, key: Ed25519.KeyPair)]
        var secrets: [String: SecureAggregation.RoundSecrets] = [:]
        var releases: [String: [Int64]] = [:]

        init(size: Int, plan: Plan = SecureRoundTests.plan()) throws {
            let harness = try Harness(plan: plan)
            h = harness
            service = harness.service
            routes = harness.routes
            tenants = try (0..<size).map { try harness.enrollTenant("loja\($0)") }
            try service.maintain(now: harness.now)
        }

        /// A new process on the same state.
        func restart() throws {
            service = try CoordinatorService(directory: h.directory, secretsKey: Harness.secretsKey)
            let clock = h.now
            routes = CoordinatorRoutes(service: service, clock: { clock })
        }

        func send(_ t: Int, _ method: String, _ target: String, body: [UInt8] = []) throws -> HTTPResponse {
            let headers = try h.signed(method, target, body: body, tenant: tenants[t].id, key: tenants[t].key)
            let clock = h.now
            return CoordinatorRoutes(service: service, clock: { clock }).handle(h.request(method, target, body: body, headers: headers), peer: "10.0.0.1:5000")
        }

        /// What tenant t is told of the open round.
        func view(_ t: Int) throws -> (awaited: Bool, view: SecureAggregation.RoundView)? {
            let answer = try send(t, "GET", "/v1/rounds/current")
            guard answer.status == 200 else { return nil }
            let o = Harness.json(answer)
            var view = try SecureRoundWire.view(o["secure"] as! [String: Any], round: UInt64(o["round"] as! Int), modelVersion: UInt64(o["model_version"] as! Int))
            for i in view.shares.indices { view.shares[i].to = tenants[t].id }
            return (o["awaited"] as! Bool, view)
        }

        /// Tenant t's answer to the stage it is asked for now, through the routes.
        @discardableResult
        func answer(_ t: Int) throws -> HTTPResponse {
            let id = tenants[t].id
            guard let (awaited, v) = try view(t), awaited else { return HTTPResponse(status: 0, headers: [], body: []) }
            let round = v.parameters.round
            switch v.stage {
            case .advertise:
                secrets[id] = try .generate()
                let ad = try SecureAggregation.Advertisement.signed(round: round, tenant: id, identity: tenants[t].key, secrets: secrets[id]!)
                return try send(t, "POST", "/v1/rounds/\(round)/keys", body: Array(SecureRoundWire.advertisement(ad).utf8))
            case .share:
                let rng = SecureRandom()
                let shares = try SecureAggregation.shares(of: id, secrets: secrets[id]!, parameters: v.parameters, neighbours: v.neighbours, random: { rng.next() })
                return try send(t, "POST", "/v1/rounds/\(round)/shares", body: Array(SecureRoundWire.shares(shares).utf8))
            case .mask:
                let release = (0..<h.plan.dimension).map { Int64(($0 * 31 + t * 7) % 2001 - 1000) * 1000 }
                releases[id] = release
                let masked = try SecureAggregation.maskedInput(release, tenant: id, secrets: secrets[id]!, parameters: v.parameters, sharedNeighbours: v.maskedWith)
                return try send(t, "POST", "/v1/rounds/\(round)/updates", body: UpdateEnvelope(round: round, modelVersion: v.parameters.modelVersion,
                                                                                               weight: 1, masked: masked).encoded())
            case .unmask:
                let reveals = try SecureAggregation.reveal(tenant: id, secrets: secrets[id]!, parameters: v.parameters, maskedWith: v.maskedWith,
                                                           received: v.shares, survivors: Set(v.survivors), answered: nil)
                return try send(t, "POST", "/v1/rounds/\(round)/unmask", body: Array(SecureRoundWire.reveals(reveals).utf8))
            }
        }

        func stage() -> Stage? {
            guard case .open(let r) = service.machine.state else { return nil }
            return r.secure?.stage
        }

        /// Moves the clock to the end of the current stage and lets the coordinator notice.
        func endStage() throws {
            guard case .open(let r) = service.machine.state, let s = r.secure else { return }
            h.now = s.stageDeadline
            try service.maintain(now: h.now)
        }

        func roundState(_ id: Int = 1) throws -> String {
            var state = ""
            try service.database.run("SELECT state FROM rounds WHERE id = ?", [.integer(Int64(id))]) { state = $0.text(0) }
            return state
        }

        /// The published model of round 1 is the mean of the survivors' releases, on the grid.
        func expectModelOfSurvivors(_ survivors: [Int]) throws {
            let model = try ModelFile.decode(try #require(try service.model(version: 2)).file)
            let step = try SecureAggregation.mechanism(h.plan).step
            for i in model.weights.indices {
                let expected = Double(survivors.reduce(Int64(0)) { $0 + releases[tenants[$1].id]![i] }) * step / Double(survivors.count)
                #expect(abs(Double(model.weights[i]) - expected) <= 1e-6 * max(1, abs(expected)), "value \(i)")
            }
        }
    }

    @Test func theRoundCompletesWithATenantVanishingAtEveryStage() throws {
        let w = try World(size: 10) // t = 6: four of ten may vanish
        for (stage, vanished) in [(Stage.advertise, 9), (.share, 8), (.mask, 7)] {
            #expect(w.stage() == stage)
            for t in 0..<10 where t < vanished { let r = try w.answer(t); #expect([202, 0].contains(r.status), "\(String(decoding: r.body, as: UTF8.self))") }
            #expect(w.stage() == stage, "\(vanished) has not answered: the stage waits for it")
            try w.endStage()
        }
        // Unmask: complete graph, r = 5 of each secret's 9 shares. Five reveals leave each revealer's own
        // seed one share short; the sixth recovers every secret and the round closes without waiting for tenant 6.
        for t in 0..<5 { #expect(try w.answer(t).status == 202) }
        #expect(w.stage() == .unmask)
        #expect(try w.answer(5).status == 202)
        #expect(try w.roundState() == "closed")
        let late = try w.send(6, "POST", "/v1/rounds/1/unmask", body: Array("{\"shares\":[]}".utf8))
        #expect(late.status == 409 && Harness.json(late)["error"] as? String == "wrong_round")
        try w.expectModelOfSurvivors(Array(0..<7))
        // What was relayed for the round is gone with it.
        var rows = 0
        for table in ["secure_keys", "secure_shares", "secure_reveals"] { try w.service.database.run("SELECT COUNT(*) FROM \(table)") { rows += Int($0.integer(0)) } }
        #expect(rows == 0)
        let closed = try w.h.service.auditEntries(after: 0, limit: 1000).map(\.entry).first { $0.action == "round.close" }
        #expect(closed?.detail.contains("7 of 10 masked inputs") == true && closed?.detail.contains("1.17x the accounted") == true, "\(closed?.detail ?? "")")
    }

    @Test func aRestartAtEveryStageKeepsTheRound() throws {
        let w = try World(size: 5, plan: SecureRoundTests.plan(survivorFraction: 0.8)) // t = 4
        for stage in Stage.allCases {
            for t in 0..<5 where !(stage >= .mask && t == 4) {
                #expect(try w.answer(t).status == 202, "\(stage.name) \(t)")
                if t == 1 { try w.restart() } // mid-stage
            }
            if stage == .mask { try w.endStage() } // tenant 4 never sends its input
            if stage != .unmask { try w.restart(); #expect(w.stage() == Stage(rawValue: stage.rawValue + 1)) }
        }
        #expect(try w.roundState() == "closed")
        try w.expectModelOfSurvivors([0, 1, 2, 3])
    }

    @Test func tooFewSurvivorsAbandonTheRoundAndReleaseNothing() throws {
        let w = try World(size: 5, plan: SecureRoundTests.plan(survivorFraction: 0.8)) // t = 4
        for _ in [Stage.advertise, .share] { for t in 0..<5 { try w.answer(t) } }
        for t in 0..<3 { #expect(try w.answer(t).status == 202) }
        try w.endStage()
        #expect(try w.roundState() == "abandoned")
        #expect(try w.service.model(version: 2) == nil)
        let abandoned = try w.h.service.auditEntries(after: 0, limit: 1000).map(\.entry).first { $0.action == "round.abandon" }
        #expect(abandoned?.detail.contains("mask stage ended with 3 of the 5 tenants asked, below the threshold of 4") == true, "\(abandoned?.detail ?? "")")
        // The outcome a tenant withdraws its charge on, signed by the coordinator's key: abandoned before any unmasking.
        let outcome = Harness.json(try w.send(0, "GET", "/v1/rounds/1/outcome"))
        #expect(outcome["state"] as? String == "abandoned" && outcome["secure_stage"] as? String == "mask")
        let key = try #require(Hex.decode(w.service.publicKeyHex))
        try RoundOutcome.verify(round: 1, state: "abandoned", stage: "mask", signature: outcome["signature"] as? String, coordinatorKey: key)
        #expect(throws: ProtocolError.self) {
            try RoundOutcome.verify(round: 1, state: "abandoned", stage: "unmask", signature: outcome["signature"] as? String, coordinatorKey: key)
        }
        #expect(try w.send(0, "GET", "/v1/rounds/7/outcome").status == 404)
        #expect(try w.send(0, "GET", "/v1/rounds/x/outcome").status == 404)
    }

    @Test func malformedForgedAndMistimedAnswersAreRefusedAndChangeNothing() throws {
        let w = try World(size: 4, plan: SecureRoundTests.plan(survivorFraction: 0.8)) // t = 4: everyone
        let id = w.tenants[0].id
        _ = try w.view(0)
        let before = try w.h.snapshot()
        // Keys signed by someone else than the tenant's identity.
        let stranger = try SecureAggregation.Advertisement.signed(round: 1, tenant: id, identity: try .generate(), secrets: try .generate())
        var refused = try w.send(0, "POST", "/v1/rounds/1/keys", body: Array(SecureRoundWire.advertisement(stranger).utf8))
        #expect(refused.status == 400 && Harness.json(refused)["error"] as? String == "bad_round_keys")
        refused = try w.send(0, "POST", "/v1/rounds/1/keys", body: Array(#"{"encryption_key":"00"}"#.utf8))
        #expect(refused.status == 400 && (Harness.json(refused)["message"] as? String)?.contains("encryption_key") == true)
        // Answers for a later stage.
        refused = try w.send(0, "POST", "/v1/rounds/1/shares", body: Array(#"{"shares":[]}"#.utf8))
        #expect(refused.status == 409 && Harness.json(refused)["error"] as? String == "wrong_stage")
        #expect(try w.h.snapshot() == before)
        for t in 0..<4 { try w.answer(t) }
        refused = try w.send(0, "POST", "/v1/rounds/1/shares", body: Array(#"{"shares":[]}"#.utf8))
        #expect(refused.status == 400 && Harness.json(refused)["error"] as? String == "bad_shares")
        for t in 0..<4 { try w.answer(t) }
        for t in 0..<4 { try w.answer(t) }
        // The unmask stage: a seed share asked for as a key share is refused.
        let v = try #require(try w.view(0)).view
        var reveals = try SecureAggregation.reveal(tenant: id, secrets: w.secrets[id]!, parameters: v.parameters, maskedWith: v.maskedWith,
                                                   received: v.shares, survivors: Set(v.survivors), answered: nil)
        reveals[0].kind = .key
        refused = try w.send(0, "POST", "/v1/rounds/1/unmask", body: Array(SecureRoundWire.reveals(reveals).utf8))
        #expect(refused.status == 400 && Harness.json(refused)["error"] as? String == "bad_unmask")
        // Three reveals hold two shares (r = 2) of every secret: the round closes without the fourth.
        for t in 0..<3 { #expect(try w.answer(t).status == 202) }
        #expect(try w.roundState() == "closed")
    }
}
