import Foundation
import SigiloCLI
import Testing
@testable import SigiloCoordinator
import SigiloFederation
import SigiloHTTP
import SigiloCrypto
import SigiloProtocol

/// Issue 20 (at every placement): a tenant that misses rounds in a row stops
/// holding every round to its deadline; it is named, counted in `status`, and
/// expected again once it polls.
@Suite struct DormantTenantTests {
    /// Dormant after the plan's `dormantAfterMissedRounds` (absent: 3).
    @Test(arguments: [nil, 1] as [Int?])
    func aVanishedTenantIsNotWaitedForAfterMissedRoundsAndComesBackByPolling(dormantAfter: Int?) throws {
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 1000, placement: .tenant, minimumTenants: 1, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        plan.dormantAfterMissedRounds = dormantAfter
        let missed = UInt64(dormantAfter ?? 3)
        let h = try Harness(plan: plan)
        let live = try h.enrollTenant("viva"), gone = try h.enrollTenant("sumida")
        func submit(round: UInt64) throws -> Int {
            let body = UpdateEnvelope(round: round, modelVersion: round, flags: [.tenantNoised], weight: 1,
                                      values: [Float](repeating: 0.001, count: plan.dimension)).encoded()
            return h.send("POST", "/v1/rounds/\(round)/updates", body: body,
                          headers: try h.signed("POST", "/v1/rounds/\(round)/updates", body: body, tenant: live.id, key: live.key)).status
        }
        func openRound() throws -> UInt64? {
            try h.service.maintain(now: h.now)
            return try h.service.status().openRound
        }
        // The live tenant answers, the vanished one does not; each round waits for its deadline.
        for round in UInt64(1)...missed {
            #expect(try openRound() == round)
            #expect(try submit(round: round) == 202)
            #expect(try h.service.status().openRound == round, "round \(round) closed before its deadline with a tenant missing")
            h.now += 601
            try h.service.maintain(now: h.now)
        }
        #expect(try h.service.status().tenantsDormant == [gone.id])
        #expect(try h.service.auditEntries().contains { $0.entry.action == "tenant.dormant" && $0.entry.object == gone.id })
        // The next round does not count on it: the live tenant's answer closes it at once.
        #expect(try openRound() == missed + 1)
        #expect(try submit(round: missed + 1) == 202)
        #expect(try h.service.status().openRound == nil)
        #expect(try h.service.status().roundsClosed == Int(missed) + 1)

        // It polls again: expected from the next round on.
        let poll = h.send("GET", "/v1/rounds/current", headers: try h.signed("GET", "/v1/rounds/current", tenant: gone.id, key: gone.key))
        #expect(poll.status == 204)
        #expect(try h.service.status().tenantsDormant.isEmpty)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "tenant.back" && $0.entry.object == gone.id })
        #expect(try openRound() == missed + 2)
        #expect(try h.service.currentRound(for: gone.id, now: h.now) != nil)
    }

    /// Issue 23: a tenant is told why there is no round, not only that there is none.
    @Test func aTenantHearsWhyNoRoundIsOpen() throws {
        let plan = Plan(labels: ["a", "b"], bucketBits: 8, sampleRate: 0.5, delta: 1e-5, maximumEpsilon: 50, placement: .tenant,
                        minimumTenants: 2, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        let h = try Harness(plan: plan)
        let first = try h.enrollTenant("primeira")
        func reason(_ tenant: (id: String, key: Ed25519.KeyPair)) throws -> String? {
            let response = h.send("GET", "/v1/rounds/current", headers: try h.signed("GET", "/v1/rounds/current", tenant: tenant.id, key: tenant.key))
            #expect(response.status == 204)
            return response.headers.first { $0.0 == "Sigilo-No-Round" }?.1
        }
        #expect(try reason(first) == "the coordinator has not opened a round yet")
        try h.service.maintain(now: h.now)
        #expect(try reason(first)?.contains("waiting for tenants (1 of 2)") == true)
        _ = try h.enrollTenant("segunda")
        try h.service.maintain(now: h.now)
        let late = try h.enrollTenant("atrasada")
        #expect(try reason(late)?.contains("round 1 is open without this tenant") == true)
    }

    /// Issue 23: what an operator should see as it happens reaches serve's log once committed.
    @Test func committedRoundEventsReachTheOperatorsLog() throws {
        final class Lines: @unchecked Sendable { let lock = NSLock(); var all: [String] = [] }
        let lines = Lines()
        let h = try Harness()
        h.service.eventLog = Log(format: .human, clock: { 0 }, write: { line in lines.lock.withLock { lines.all.append(line) } })
        _ = try h.enrollTenant("a")
        _ = try h.enrollTenant("b")
        try h.service.maintain(now: h.now)
        h.now += 601
        try h.service.maintain(now: h.now)
        let text = lines.lock.withLock { lines.all.joined(separator: "\n") }
        #expect(text.contains("1970-01-01T00:00:00.000Z info round.open round 1: "), "\(text)")
        #expect(text.contains("warning round.abandon round 1: ") && text.contains("missing: "), "\(text)")
    }
}
