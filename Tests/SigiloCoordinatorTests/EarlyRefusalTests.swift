import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloProtocol

/// What the coordinator decides from a request's head, before the server reads
/// its body: forged, stale, replayed or oversized uploads cost the attacker a
/// head, not the coordinator a body.
@Suite struct EarlyRefusalTests {
    func head(_ h: Harness, _ method: String, _ target: String, headers: [(String, String)]) -> HTTPRequest {
        h.request(method, target, headers: headers)
    }

    func code(_ response: HTTPResponse?) -> String? { response.flatMap { Harness.json($0)["error"] as? String } }

    @Test func aSignedUploadHeadPassesAndForgedStaleReplayedOrOversizedOnesDoNot() throws {
        let h = try Harness()
        let tenant = try h.enrollTenant("loja")
        let target = "/v1/rounds/1/updates"
        let update = UpdateEnvelope(round: 1, modelVersion: 1, flags: [.tenantNoised], weight: 1, values: [Float](repeating: 0, count: h.plan.dimension))
        let body = update.encoded()
        let signed = try h.signed("POST", target, body: body, tenant: tenant.id, key: tenant.key)
        let before = try h.snapshot()

        #expect(h.routes.checkHead(head(h, "POST", target, headers: signed), bodyLength: body.count, peer: "10.0.0.1:1") == nil)

        // The same headers claiming a body larger than any update of this plan.
        let oversized = h.routes.checkHead(head(h, "POST", target, headers: signed), bodyLength: body.count + 1, peer: "10.0.0.1:1")
        #expect(oversized?.status == 413)

        // Signed by a key that is not the tenant's.
        let forged = try h.signed("POST", target, body: body, tenant: tenant.id, key: Ed25519.KeyPair.generate())
        let forgedAnswer = h.routes.checkHead(head(h, "POST", target, headers: forged), bodyLength: body.count, peer: "10.0.0.2:1")
        #expect(forgedAnswer?.status == 401 && code(forgedAnswer) == "bad_signature")

        // Signed for another path: the signature covers the path.
        let elsewhere = try h.signed("POST", "/v1/rounds/2/updates", body: body, tenant: tenant.id, key: tenant.key)
        #expect(h.routes.checkHead(head(h, "POST", target, headers: elsewhere), bodyLength: body.count, peer: "10.0.0.2:1")?.status == 401)

        // An hour old.
        h.now -= 3600
        let stale = try h.signed("POST", target, body: body, tenant: tenant.id, key: tenant.key)
        h.now += 3600
        #expect(code(h.routes.checkHead(head(h, "POST", target, headers: stale), bodyLength: body.count, peer: "10.0.0.2:1")) == "stale_timestamp")

        // No credentials at all, or an unknown tenant.
        #expect(h.routes.checkHead(head(h, "POST", target, headers: []), bodyLength: body.count, peer: "10.0.0.2:1")?.status == 401)
        let stranger = try h.signed("POST", target, body: body, tenant: "tenant-999", key: tenant.key)
        #expect(h.routes.checkHead(head(h, "POST", target, headers: stranger), bodyLength: body.count, peer: "10.0.0.2:1")?.status == 401)

        // An endpoint that does not exist, whatever the body.
        #expect(h.routes.checkHead(head(h, "POST", "/v1/nothing", headers: signed), bodyLength: 10, peer: "10.0.0.2:1")?.status == 404)

        #expect(try h.snapshot() == before) // nothing was committed, not even the good head's nonce

        // Once the whole request went through, its nonce is spent: the same head is a replay.
        #expect(h.send("POST", target, body: body, headers: signed).status != 401)
        #expect(code(h.routes.checkHead(head(h, "POST", target, headers: signed), bodyLength: body.count, peer: "10.0.0.1:1")) == "replayed_nonce")
    }

    @Test func adminAndEnrolmentBodiesAreBoundedBeforeTheyAreRead() throws {
        let h = try Harness()
        #expect(h.routes.checkHead(head(h, "POST", "/v1/enroll", headers: []), bodyLength: 64 << 10, peer: "10.0.0.1:1") == nil)
        #expect(h.routes.checkHead(head(h, "POST", "/v1/enroll", headers: []), bodyLength: (64 << 10) + 1, peer: "10.0.0.1:1")?.status == 413)
        let admin = h.adminHeaders()
        #expect(h.routes.checkHead(head(h, "PUT", "/v1/admin/plan", headers: admin), bodyLength: 1 << 20, peer: "10.0.0.1:1") == nil)
        #expect(h.routes.checkHead(head(h, "PUT", "/v1/admin/plan", headers: [("Authorization", "Bearer admin.00")]),
                                   bodyLength: 100, peer: "10.0.0.1:1")?.status == 401)
    }

    /// Anonymous health probes are counted in /metrics, not appended one by one to the audit log.
    @Test func healthProbesAreCountedNotAudited() throws {
        let h = try Harness()
        let before = try h.service.auditEntryCount()
        for _ in 0..<50 { #expect(h.send("GET", "/healthz").status == 200) }
        #expect(h.send("GET", "/no/such/thing").status == 404)
        #expect(try h.service.auditEntryCount() == before)
        let metrics = String(decoding: h.send("GET", "/metrics", headers: h.adminHeaders()).body, as: UTF8.self)
        #expect(metrics.contains("sigilo_unaudited_requests_total 51"))
        // An authenticated request is still recorded.
        #expect(try h.service.auditEntryCount() > before)
    }

    /// Many tenants waiting for a round hold no thread each: they are parked
    /// and all answered when the round opens.
    @Test func parkedLongPollsAreAnsweredWhenARoundOpens() throws {
        let h = try Harness()
        let tenants = try (0..<40).map { try h.enrollTenant("loja\($0)") }
        final class Answers: @unchecked Sendable {
            let lock = NSLock()
            var statuses: [Int] = []
        }
        let answers = Answers()
        let target = "/v1/rounds/current?wait=20"
        for tenant in tenants {
            let request = h.request("GET", target, headers: try h.signed("GET", target, tenant: tenant.id, key: tenant.key))
            h.routes.handle(request, peer: "10.0.0.1:1") { response in answers.lock.withLock { answers.statuses.append(response.status) } }
        }
        #expect(h.routes.parkedLongPolls == 40)
        #expect(answers.lock.withLock { answers.statuses.isEmpty })
        try h.service.maintain(now: h.now) // two tenants or more: the round opens
        let deadline = Date().addingTimeInterval(10)
        while answers.lock.withLock({ answers.statuses.count }) < 40, Date() < deadline { usleep(10_000) }
        #expect(answers.lock.withLock { answers.statuses } == [Int](repeating: 200, count: 40))
        #expect(h.routes.parkedLongPolls == 0)
    }

    @Test func aLongPollWithNothingToReportEndsWith204AtItsDeadline() throws {
        let h = try Harness()
        let tenant = try h.enrollTenant("sozinha") // one tenant: no round can open
        let target = "/v1/rounds/current?wait=1"
        let start = Date()
        let response = h.send("GET", target, headers: try h.signed("GET", target, tenant: tenant.id, key: tenant.key))
        #expect(response.status == 204)
        #expect(Date().timeIntervalSince(start) >= 0.9)
    }

    @Test func stoppingAnswersParkedPollsAtOnce() throws {
        let h = try Harness()
        let tenant = try h.enrollTenant("loja")
        let target = "/v1/rounds/current?wait=30"
        final class Box: @unchecked Sendable { var status: Int? }
        let box = Box(), answered = DispatchSemaphore(value: 0)
        h.routes.handle(h.request("GET", target, headers: try h.signed("GET", target, tenant: tenant.id, key: tenant.key)), peer: "10.0.0.1:1") {
            box.status = $0.status
            answered.signal()
        }
        #expect(h.routes.parkedLongPolls == 1)
        let start = Date()
        h.routes.stopWaiting()
        #expect(answered.wait(timeout: .now() + 10) == .success)
        #expect(Date().timeIntervalSince(start) < 5) // not at the end of its 30 s wait
        #expect(box.status == 204)
        #expect(h.routes.parkedLongPolls == 0)
    }

    /// Without the key, an active, a revoked and an unknown tenant id get the
    /// same answer, before and after the body: no one learns who is enrolled or
    /// revoked by asking. The revoked tenant itself, signing with its key, is told.
    @Test func unauthenticatedCallersCannotTellWhichTenantsExist() throws {
        let h = try Harness()
        let active = try h.enrollTenant("ativa"), revoked = try h.enrollTenant("revogada")
        try h.service.revoke(tenant: revoked.id, now: h.now)
        let stranger = try Ed25519.KeyPair.generate()
        var answers = [String]()
        for id in [active.id, revoked.id, "tenant-99"] {
            let headers = try h.signed("GET", "/v1/plan", tenant: id, key: stranger)
            let response = h.send("GET", "/v1/plan", headers: headers, from: "10.0.9.\(answers.count + 1):1")
            let head = h.routes.checkHead(h.request("POST", "/v1/rounds/1/updates", headers: try h.signed("POST", "/v1/rounds/1/updates", body: [1],
                                                                                                     tenant: id, key: stranger)),
                                          bodyLength: 1, peer: "10.0.9.\(answers.count + 1):1")
            answers.append("\(response.status) \(code(response) ?? "") | \(head?.status ?? 0) \(code(head) ?? "")")
        }
        #expect(Set(answers).count == 1, "\(answers)")
        #expect(answers[0] == "401 bad_signature | 401 bad_signature")
        let own = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: revoked.id, key: revoked.key))
        #expect(own.status == 403 && code(own) == "revoked")
    }

    /// A declared weight scales a tenant's share of the average: above its cap
    /// (its own, else the plan's) an update is refused with 422 and an alert,
    /// and the round is as before; the cap is set at invite or later, over the
    /// admin API too.
    @Test func declaredWeightsAboveTheCapAreRefusedAndFlagged() throws {
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 50, placement: .tenant, minimumTenants: 3, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        plan.maximumTenantWeight = 10
        let h = try Harness(plan: plan)
        let capped = try h.enrollTenant("padrao")
        let trusted = try h.enrollTenant("grande")
        let invitedToken = try h.service.invite(name: "convidada", weightCap: 50, now: h.now)
        let key = try Ed25519.KeyPair.generate()
        let invited = try h.service.enroll(token: invitedToken, publicKey: key.publicKey, now: h.now)
        try h.service.maintain(now: h.now)
        func post(_ tenant: String, _ key: Ed25519.KeyPair, weight: Double) throws -> HTTPResponse {
            let body = UpdateEnvelope(round: 1, modelVersion: 1, flags: [.tenantNoised], weight: weight,
                                      values: [Float](repeating: 0.001, count: plan.dimension)).encoded()
            return h.send("POST", "/v1/rounds/1/updates", body: body, headers: try h.signed("POST", "/v1/rounds/1/updates", body: body, tenant: tenant, key: key))
        }
        _ = h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: capped.id, key: capped.key)) // its address is noted once
        let before = try h.snapshot()
        let heavy = try post(capped.id, capped.key, weight: 1e12)
        #expect(heavy.status == 422 && code(heavy) == "weight_above_cap")
        #expect(try h.snapshot() == before)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "alert.weight_above_cap" && $0.entry.object == capped.id })
        #expect(try post(capped.id, capped.key, weight: 10).status == 202)

        // The admin raises one tenant's cap over HTTP; a bad value is refused.
        #expect(h.send("PUT", "/v1/admin/tenants/\(trusted.id)/weight-cap", body: Array(#"{"weight_cap": -1}"#.utf8), headers: h.adminHeaders()).status == 400)
        #expect(h.send("PUT", "/v1/admin/tenants/\(trusted.id)/weight-cap", body: Array(#"{"weight_cap": true}"#.utf8), headers: h.adminHeaders()).status == 400)
        // 1 decodes to the same NSNumber as true on Linux: still a number.
        #expect(h.send("PUT", "/v1/admin/tenants/\(trusted.id)/weight-cap", body: Array(#"{"weight_cap": 1}"#.utf8), headers: h.adminHeaders()).status == 200)
        #expect(h.send("PUT", "/v1/admin/tenants/\(trusted.id)/weight-cap", body: Array(#"{"weight_cap": 100}"#.utf8), headers: h.adminHeaders()).status == 200)
        #expect(try post(trusted.id, trusted.key, weight: 80).status == 202)
        // The cap given at invite applies from enrolment.
        #expect(try post(invited, key, weight: 60).status == 422)
        #expect(try post(invited, key, weight: 50).status == 202)
        // Back to the plan's.
        try h.service.setWeightCap(tenant: trusted.id, to: nil, now: h.now)
        #expect(throws: CoordinatorError.self) { try h.service.setWeightCap(tenant: "tenant-99", to: 5, now: h.now) }
    }
}
