import Foundation
import Testing
import SigiloFederation

/// A secure cohort losing 30% of its tenants at random stages, over real
/// HTTP: the real coordinator and `sigilo-eval bench-secure-clients` (the
/// real client library and protocol steps, one connection per tenant). Every
/// round still releases, on the survivors' inputs only.
@Suite struct SecureDropoutEndToEndTests {
    @Test func roundsCompleteWithThirtyPercentVanishingAtEveryStage() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let tenants = 12
        let state = dir.appendingPathComponent("state")
        _ = try Binary.run("sigilo-coordinator", ["init", "--state", state.path])
        // f = 0.6: t = 8 of 12 (complete graph, a secret needs 6 of its 11 shares); short stages for a test.
        var plan = Plan(labels: ["a", "b", "c"], bucketBits: 8, sampleRate: 1, delta: 1e-5, maximumEpsilon: 1e6, placement: .secure,
                        minimumTenants: tenants, roundSeconds: 20, serverOptimizer: .init(kind: .fedavg, learningRate: 1))
        plan.minimumSurvivorFraction = 0.6
        try JSONEncoder().encode(plan).write(to: dir.appendingPathComponent("plan.json"))
        #expect(try Binary.run("sigilo-coordinator", ["plan", "set", dir.appendingPathComponent("plan.json").path, "--state", state.path]).status == 0)
        let tokens = try (0..<tenants).map {
            try Binary.run("sigilo-coordinator", ["tenant", "invite", "t\($0)", "--state", state.path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        try (tokens.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("tokens"), atomically: true, encoding: .utf8)
        let server = try RunningCoordinator(state: state)
        let clients = try Binary.run("sigilo-eval", ["bench-secure-clients", "--coordinator", server.url.absoluteString, "--tokens",
                                                     dir.appendingPathComponent("tokens").path, "--rounds", "3", "--dropout", "0.3", "--seed", "4"])
        _ = server.stop()
        #expect(clients.status == 0, "\(clients.stderr)")
        let records = clients.stdout.split(separator: "\n").compactMap(jsonObject)
        #expect(records.count == 3 * tenants)
        // The seed makes tenants vanish before advertising, sharing, masking and unmasking alike.
        let stages = Set(records.compactMap { $0["dropped_at"] as? String })
        #expect(stages == ["advertise", "share", "mask", "unmask"], "\(stages)")
        let dropped = records.filter { $0["dropped_at"] as? String != nil }.count
        #expect(dropped >= 8, "\(dropped) of \(3 * tenants) tenant-rounds dropped")

        // Each round released a model; none was abandoned.
        let log = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state.path]).stdout
        let events = log.split(separator: "\n").compactMap(jsonObject)
        let closed = events.filter { $0["action"] as? String == "round.close" }.compactMap { $0["object"] as? String }
        #expect(Set(["round 1", "round 2", "round 3"]).isSubset(of: Set(closed)), "\(closed)")
        #expect(!events.contains { $0["action"] as? String == "round.abandon" })
        for object in ["round 1", "round 2", "round 3"] {
            let survivors = records.filter { "round \($0["round"] as! Int)" == object && ($0["dropped_at"] as? String).map { $0 == "unmask" } ?? true }.count
            let detail = events.first { $0["action"] as? String == "round.close" && $0["object"] as? String == object }?["detail"] as? String ?? ""
            #expect(detail.contains("\(survivors) of \(tenants) masked inputs"), "\(object): \(detail)")
        }
    }
}
