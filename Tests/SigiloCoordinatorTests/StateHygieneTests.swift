import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloFederation
import SigiloProtocol

/// Issue 23: a running coordinator keeps its write-ahead log small (it grew to
/// 67 MB over 19 small rounds and was only folded back when serve stopped).
@Suite struct WALCheckpointTests {
    @Test func theMaintenanceTickEmptiesTheWALWhileServing() throws {
        let plan = Plan(labels: ["a", "b", "c", "d"], bucketBits: 14, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 1000, placement: .tenant, minimumTenants: 1, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg))
        let h = try Harness(plan: plan)
        let tenant = try h.enrollTenant("loja")
        let wal = h.directory.appendingPathComponent(CoordinatorService.databaseName + "-wal").path
        func walBytes() -> Int { ((try? FileManager.default.attributesOfItem(atPath: wal))?[.size] as? Int) ?? 0 }
        try h.service.maintain(now: h.now) // the first tick checkpoints and starts the interval
        for round in UInt64(1)...4 {
            #expect(try h.service.status().openRound == round)
            let body = UpdateEnvelope(round: round, modelVersion: round, flags: [.tenantNoised], weight: 1,
                                      values: [Float](repeating: 0.001, count: plan.dimension)).encoded()
            #expect(h.send("POST", "/v1/rounds/\(round)/updates", body: body,
                           headers: try h.signed("POST", "/v1/rounds/\(round)/updates", body: body, tenant: tenant.id, key: tenant.key)).status == 202)
            h.now += 1
            try h.service.maintain(now: h.now) // within the interval: no checkpoint
        }
        let grown = walBytes()
        #expect(grown > 4 * 4 * plan.dimension, "the rounds' sums and models are in the WAL (\(grown) bytes)")
        h.now += CoordinatorService.checkpointInterval
        try h.service.maintain(now: h.now)
        #expect(walBytes() == 0, "WAL still \(walBytes()) bytes")
        #expect(try h.service.status().roundsClosed == 4) // nothing lost: the state reads back the same
    }
}
