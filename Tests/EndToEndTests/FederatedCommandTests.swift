import Foundation
import Testing

/// `sigilo-eval federated` on synthetic data, small enough for the test suite.
@Suite(.serialized) struct FederatedCommandTests {
    func run(_ extra: [String], data: URL) throws -> [String: Any] {
        let r = try Binary.run("sigilo-eval", ["federated", "--train", data.appendingPathComponent("train.jsonl").path,
                                              "--test", data.appendingPathComponent("holdout.jsonl").path, "--tenants", "4",
                                              "--buckets", "1024", "--rounds", "6", "--eval-every", "3", "--sample-rate", "0.5", "--server-learning-rate", "30", "--json"] + extra)
        #expect(r.status == 0, "\(r.stderr)")
        return try #require(jsonObject(Substring(r.stdout)))
    }

    @Test func learnsReportsEpsilonAndIsDeterministicWithSeededNoise() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try Binary.run("sigilo-eval", ["synth", "--tenants", "4", "--customers", "150", "--seed", "2", "--out", dir.path, "--holdout", "300"])
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("tenant-") }.sorted()
            .map { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8) }.joined()
        try all.write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)

        let plain = try run(["--no-dp", "--seed", "3"], data: dir)
        #expect((plain["accuracy"] as! Double) > 0.5)
        #expect(plain["epsilon"] is NSNull)
        let a = try run(["--epsilon", "8", "--insecure-seeded-noise", "--seed", "3"], data: dir)
        let b = try run(["--epsilon", "8", "--insecure-seeded-noise", "--seed", "3"], data: dir)
        #expect(a["accuracy"] as? Double == b["accuracy"] as? Double) // same seed, same run
        #expect(a["insecure_seeded_noise"] as? Bool == true)
        let epsilon = try #require(a["epsilon"] as? Double)
        #expect(epsilon <= 8 && epsilon > 7.9) // calibrated to the target, never above it
        #expect((a["history"] as? [[String: Any]])?.count == 2)
        let labels = Set(all.split(separator: "\n").compactMap(jsonObject).map { $0["intent"] as! String }).count
        #expect((a["bytes_per_tenant_per_round"] as! Double) == Double(80 + 4 * (1024 * labels + labels))) // header + d floats, nothing else
    }
}
