import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloProtocol
import SigiloSQLite

@Suite struct AuditTamperTests {
    /// A state directory with a realistic log: enrolment, requests, refusals.
    func populated() throws -> Harness {
        let h = try Harness()
        let tenant = try h.enrollTenant("loja")
        _ = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: tenant.key))
        _ = h.send("GET", "/v1/audit/ledger", headers: h.adminHeaders())
        _ = h.send("GET", "/v1/audit/ledger", headers: [("Authorization", "Bearer admin.00")])
        _ = h.send("GET", "/healthz")
        return h
    }

    func copyState(_ h: Harness) throws -> URL {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("sigilo-tamper-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: h.directory, to: copy)
        return copy
    }

    /// Opens the copy, applies `sql` directly to its database, and returns what verification says.
    func verdict(after sql: String, on h: Harness) throws -> String? {
        let copy = try copyState(h)
        defer { try? FileManager.default.removeItem(at: copy) }
        let database = try Database(path: copy.appendingPathComponent(CoordinatorService.databaseName).path)
        try database.execute(sql)
        return try CoordinatorService(directory: copy).verifyAudit()
    }

    @Test func anIntactLogVerifies() throws {
        let h = try populated()
        #expect(try h.service.verifyAudit() == nil)
        #expect(try h.service.auditEntries().count >= 8)
    }

    @Test func editingDeletingOrSwappingAnySingleEntryIsDetected() throws {
        let h = try populated()
        let count = try h.service.auditEntries().count
        for k in 1...count {
            let edited = try verdict(after: "UPDATE audit_log SET detail = detail || ' ' WHERE sequence = \(k)", on: h)
            #expect(edited?.contains("entry \(k)") == true, "edit of \(k): \(edited ?? "undetected")")
            let outcome = try verdict(after: "UPDATE audit_log SET outcome = '200' WHERE sequence = \(k) AND outcome != '200'; UPDATE audit_log SET time = time + 1 WHERE sequence = \(k)", on: h)
            #expect(outcome?.contains("entry \(k)") == true, "edit of \(k): \(outcome ?? "undetected")")
            let deleted = try verdict(after: "DELETE FROM audit_log WHERE sequence = \(k)", on: h)
            #expect(deleted?.contains("\(k)") == true, "deletion of \(k): \(deleted ?? "undetected")")
            if k < count {
                // Swap the contents (and hashes) of k and k+1, keeping the sequence numbers.
                let swapped = try verdict(after: """
                    CREATE TEMP TABLE a AS SELECT * FROM audit_log WHERE sequence = \(k);
                    CREATE TEMP TABLE b AS SELECT * FROM audit_log WHERE sequence = \(k + 1);
                    UPDATE audit_log SET (time, actor, role, action, object, outcome, address, detail, hash) =
                        (SELECT time, actor, role, action, object, outcome, address, detail, hash FROM b) WHERE sequence = \(k);
                    UPDATE audit_log SET (time, actor, role, action, object, outcome, address, detail, hash) =
                        (SELECT time, actor, role, action, object, outcome, address, detail, hash FROM a) WHERE sequence = \(k + 1);
                    """, on: h)
                #expect(swapped?.contains("entry \(k)") == true, "swap of \(k) and \(k + 1): \(swapped ?? "undetected")")
            }
        }
    }

    @Test func rewritingTheWholeChainWithoutTheKeyIsCaughtByTheSignedHead() throws {
        let h = try populated()
        let copy = try copyState(h)
        defer { try? FileManager.default.removeItem(at: copy) }
        // Drop the last entry and recompute every hash: a consistent chain, but not the signed one.
        let database = try Database(path: copy.appendingPathComponent(CoordinatorService.databaseName).path)
        let count = try h.service.auditEntries().count
        try database.execute("DELETE FROM audit_log WHERE sequence = \(count)")
        var previous = AuditChain.genesis
        var rows = [(Int64, [UInt8])]()
        try database.run("SELECT sequence, time, actor, role, action, object, outcome, address, detail FROM audit_log ORDER BY sequence") {
            let entry = AuditEntry(sequence: $0.integer(0), time: $0.real(1), actor: $0.text(2), role: $0.text(3), action: $0.text(4),
                                   object: $0.text(5), outcome: $0.text(6), address: $0.text(7), detail: $0.text(8))
            previous = entry.chainHash(previous: previous)
            rows.append((entry.sequence, previous))
        }
        for (sequence, hash) in rows { try database.run("UPDATE audit_log SET hash = ? WHERE sequence = ?", [.blob(hash), .integer(sequence)]) }
        let verdict = try CoordinatorService(directory: copy).verifyAudit()
        #expect(verdict?.contains("deleted") == true, "\(verdict ?? "undetected")")
        // A forged head is refused too.
        try database.run("UPDATE audit_head SET sequence = ?, hash = ?, signature = ?",
                         [.integer(Int64(count - 1)), .blob(previous), .blob([UInt8](repeating: 0, count: 64))])
        #expect(try CoordinatorService(directory: copy).verifyAudit()?.contains("not signed") == true)
    }

    @Test func entriesNeverHoldSecrets() throws {
        let h = try populated()
        let auditor = try h.service.createAuditor(name: "dpo", by: .localOperator, now: h.now)
        let token = try h.service.invite(name: "nova", now: h.now)
        let session = Harness.json(h.send("POST", "/v1/admin/session", headers: h.adminHeaders()))["session"] as? String
        let text = try h.service.auditEntries().map { "\($0.entry)" }.joined(separator: "\n")
        let secrets = [h.admin.credential, String(h.admin.credential.split(separator: ".")[1]), Base32.encode(h.admin.totp.secret),
                       Hex.encode(h.admin.totp.secret), auditor.credential, String(auditor.credential.split(separator: ".")[1]), token,
                       try #require(session), Hex.encode(h.service.signingKey.privateKey)]
        for secret in secrets { #expect(!text.contains(secret), "audit log holds a secret") }
    }
}

@Suite struct LockoutTests {
    @Test func repeatedFailuresLockTheIdentityThenTheAddress() throws {
        let h = try Harness()
        // Five wrong TOTP codes lock the admin identity: even the right code is refused, from anywhere.
        for _ in 0..<5 {
            let response = h.send("GET", "/v1/audit/ledger", headers: [("Authorization", "Bearer \(h.admin.credential)"), ("Sigilo-TOTP", "000000")])
            #expect(response.status == 401)
        }
        let locked = h.send("GET", "/v1/audit/ledger", headers: h.adminHeaders(), from: "10.0.0.9:1")
        #expect(locked.status == 429)
        #expect(locked.headers.contains { $0.0 == "Retry-After" })
        #expect(Harness.json(locked)["error"] as? String == "locked_out")
        // An auditor is unaffected, and sees the lock-out in the metrics and the audit log.
        let auditor = try h.service.createAuditor(name: "dpo", by: .localOperator, now: h.now)
        let metrics = String(decoding: h.send("GET", "/metrics", headers: [("Authorization", "Bearer \(auditor.credential)")], from: "10.0.0.9:2").body, as: UTF8.self)
        #expect(metrics.contains("sigilo_auth_lockouts_total{scope=\"identity\"} 1"))
        #expect(metrics.contains("sigilo_auth_locked_out 1"))
        #expect(try h.service.auditEntries().contains { $0.entry.action == "auth.lockout" && $0.entry.object == "identity admin" })
        // The lock lifts after its time.
        h.now += 901
        #expect(h.send("GET", "/v1/audit/ledger", headers: h.adminHeaders()).status == 200)

        // Twenty failures from one address, under ever-new identities, lock the address for everyone.
        let tenant = try h.enrollTenant("loja")
        for i in 0..<20 {
            _ = h.send("GET", "/v1/plan", headers: [("Authorization", "Bearer guess\(i).00")], from: "203.0.113.7:4000")
        }
        let fromThere = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: tenant.key), from: "203.0.113.7:4001")
        #expect(fromThere.status == 429)
        let elsewhere = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: tenant.key), from: "198.51.100.1:4001")
        #expect(elsewhere.status == 200)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "auth.lockout" && $0.entry.object == "address 203.0.113.7" })
    }

    /// Issue 19's weapon: ten requests from a stranger's address claiming
    /// tenant-3 (garbage signatures) and admin (a wrong secret) lock that
    /// stranger out, not them: the real tenant and the real admin, with their
    /// key, credential and a fresh TOTP code, are served from their addresses.
    @Test func strangersCannotLockOutAnIdentityTheyCannotProve() throws {
        let h = try Harness()
        let tenant = try h.enrollTenant("loja")
        let stranger = try Ed25519.KeyPair.generate()
        for _ in 0..<5 {
            _ = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: stranger), from: "203.0.113.66:1")
            _ = h.send("GET", "/v1/audit/ledger", headers: [("Authorization", "Bearer admin.x")], from: "203.0.113.66:2")
        }
        #expect(h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: tenant.key), from: "10.0.0.1:1").status == 200)
        #expect(h.send("GET", "/v1/audit/ledger", headers: h.adminHeaders(), from: "10.0.0.2:1").status == 200)
        // The stranger's own further attempts, even with the right key from that address, wait out the lock.
        let again = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: tenant.key), from: "203.0.113.66:3")
        #expect(again.status == 429)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "auth.lockout" && $0.entry.object == "identity \(tenant.id) from 203.0.113.66" })
    }

    @Test func limiterWindowSlides() {
        var limiter = FailureLimiter(policy: .init(limit: 3, window: 10, lockout: 100))
        let results = [0.0, 5, 11, 12].map { limiter.recordFailure("k", now: $0) } // at 11 the first has left the window
        #expect(results == [false, false, false, true])
        #expect(limiter.lockedFor("k", now: 50) == 62)
        #expect(limiter.lockedFor("k", now: 112) == nil)
        #expect(limiter.lockedFor("other", now: 50) == nil)
    }
}

@Suite struct AnomalyTests {
    func harness(exclude: Bool) throws -> (Harness, [(id: String, key: Ed25519.KeyPair)]) {
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 50, placement: .central, minimumTenants: 5, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        plan.excludeAnomalousUpdates = exclude
        let h = try Harness(plan: plan)
        let tenants = try (0..<5).map { try h.enrollTenant("loja\($0)") }
        try h.service.maintain(now: h.now)
        return (h, tenants)
    }

    /// An update of norm `scale` x weight x C in a fixed direction (plus a per-tenant wiggle).
    func update(_ h: Harness, scale: Double, seed: Int, sign: Float = 1) -> [UInt8] {
        let d = h.plan.dimension
        var values = (0..<d).map { i in sign * (1 + 0.1 * Float(sin(Double(i * 13 + seed)))) }
        let norm = values.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let weight = 10.0
        values = values.map { Float(Double($0) / norm * scale * weight) }
        return UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: weight, values: values).encoded()
    }

    func post(_ h: Harness, _ tenant: (id: String, key: Ed25519.KeyPair), _ body: [UInt8]) throws -> HTTPResponse {
        h.send("POST", "/v1/rounds/1/updates", body: body, headers: try h.signed("POST", "/v1/rounds/1/updates", body: body, tenant: tenant.id, key: tenant.key))
    }

    @Test func aScaledUpUpdateIsFlaggedAndKept() throws {
        let (h, tenants) = try harness(exclude: false)
        for i in 0..<3 { #expect(try post(h, tenants[i], update(h, scale: 0.1, seed: i)).status == 202) }
        #expect(h.service.metrics.render(status: try h.service.status(), lockedOut: 0).contains("alerts") == false)
        // Nine times the others, yet within the norm bound a valid update may reach: flagged, not refused.
        #expect(try post(h, tenants[3], update(h, scale: 0.9, seed: 3)).status == 202)
        let metrics = h.service.metrics.render(status: try h.service.status(), lockedOut: 0)
        #expect(metrics.contains("sigilo_alerts_total{kind=\"update_norm\"} 1"))
        let alert = try #require(try h.service.auditEntries().first { $0.entry.action == "alert.update_norm" })
        #expect(alert.entry.object == tenants[3].id)
        // An update pointing against the others is flagged too.
        #expect(try post(h, tenants[4], update(h, scale: 0.1, seed: 4, sign: -1)).status == 202)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "alert.update_direction" && $0.entry.object == tenants[4].id })
    }

    @Test func thePlanCanExcludeAnomalousUpdates() throws {
        let (h, tenants) = try harness(exclude: true)
        for i in 0..<3 { #expect(try post(h, tenants[i], update(h, scale: 0.1, seed: i)).status == 202) }
        // (A first request records the tenant's address; the snapshot starts after it.)
        _ = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenants[3].id, key: tenants[3].key))
        let before = try h.snapshot()
        let refused = try post(h, tenants[3], update(h, scale: 0.9, seed: 3))
        #expect(refused.status == 422)
        #expect(Harness.json(refused)["error"] as? String == "anomalous_update")
        #expect(try h.snapshot() == before)
        // It can still send an ordinary update.
        #expect(try post(h, tenants[3], update(h, scale: 0.1, seed: 3)).status == 202)
    }

    @Test func repeatedValidationFailuresAndANewAddressRaiseAlerts() throws {
        let (h, tenants) = try harness(exclude: false)
        for _ in 0..<3 { #expect(try post(h, tenants[0], [0, 1, 2]).status == 400) }
        #expect(try h.service.auditEntries().contains { $0.entry.action == "alert.repeated_validation_failures" && $0.entry.object == tenants[0].id })
        let first = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenants[1].id, key: tenants[1].key), from: "10.0.0.1:1")
        #expect(first.status == 200)
        let moved = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenants[1].id, key: tenants[1].key), from: "192.0.2.50:1")
        #expect(moved.status == 200)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "alert.new_address" && $0.entry.detail.contains("192.0.2.50") })
    }

    @Test func scoresAreComparableAcrossWeightsAndPlacements() {
        let plan = Plan(labels: ["a", "b"], bucketBits: 8, clipNorm: 2, noiseMultiplier: 1)
        #expect(UpdateAnomaly.score(norm: 10, weight: 5, plan: plan, tenantNoised: false) == 1)
        let noise = 1 * 2 * Double(plan.dimension).squareRoot()
        #expect(abs(UpdateAnomaly.score(norm: noise, weight: 0, plan: plan, tenantNoised: true) - 1) < 1e-12)
        #expect(UpdateAnomaly.check(score: 1, peerScores: [1], cosine: nil) == nil) // too few peers to judge
        #expect(UpdateAnomaly.check(score: 3.1, peerScores: [1, 1], cosine: nil)?.kind == .norm)
        #expect(UpdateAnomaly.check(score: 2.9, peerScores: [1, 1], cosine: nil) == nil)
        #expect(UpdateAnomaly.check(score: 1, peerScores: [], cosine: -0.6)?.kind == .direction)
    }
}

@Suite struct BackupArchiveTests {
    @Test func roundTripsAndNamesEveryCorruption() throws {
        let archive = BackupArchive(signingKey: Array("ab".utf8), database: Array(repeating: 7, count: 1000))
        let bytes = archive.encoded()
        #expect(try BackupArchive.decode(bytes) == archive)
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try BackupArchive.decode(bytes); return "accepted" } catch let e as CoordinatorError { return e.message } catch { return "\(error)" }
        }
        #expect(message(Array(bytes.prefix(20))).contains("too short"))
        #expect(message(Array(bytes.dropLast(1))).contains("checksum"))
        var flipped = bytes
        flipped[500] ^= 1
        #expect(message(flipped).contains("checksum"))
        var wrongMagic = bytes
        wrongMagic[0] = 0
        #expect(message(wrongMagic).contains("magic"))
        for cut in stride(from: 0, to: bytes.count, by: 37) { #expect(message(Array(bytes[0..<cut])) != "accepted") }
    }
}
