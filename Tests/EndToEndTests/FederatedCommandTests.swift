import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import SigiloEncoder
import Testing

/// `sigilo-eval federated` on synthetic data, small enough for the test suite.
@Suite(.serialized) struct FederatedCommandTests {
    func run(_ extra: [String], data: URL) throws -> [String: Any] {
        let r = try Binary.run("sigilo-eval", ["federated", "--train", data.appendingPathComponent("train.jsonl").path,
                                              "--test", data.appendingPathComponent("holdout.jsonl").path, "--json"] + Self.small + extra)
        #expect(r.status == 0, "\(r.stderr)")
        return try #require(jsonObject(Substring(r.stdout)))
    }

    @Test func learnsReportsEpsilonAndIsDeterministicWithSeededNoise() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = try String(contentsOfFile: try synthetic(dir).train, encoding: .utf8)

        let plain = try run(["--no-dp", "--seed", "3"], data: dir)
        #expect((plain["accuracy"] as! Double) > 0.5)
        #expect(plain["epsilon"] is NSNull)
        #expect(plain["temperature"] as? Double == 1 && plain["handoff_threshold"] as? Double == 0) // uncalibrated without --val
        // --val calibrates the final model: same weights and accuracy, fitted temperature and threshold.
        let calibrated = try run(["--no-dp", "--seed", "3", "--val", dir.appendingPathComponent("holdout.jsonl").path], data: dir)
        #expect(calibrated["accuracy"] as? Double == plain["accuracy"] as? Double)
        #expect(calibrated["temperature"] as? Double != 1)
        #expect(calibrated["handoff_rate"] is Double)
        let missing = try Binary.run("sigilo-eval", ["federated", "--train", dir.appendingPathComponent("train.jsonl").path, "--test",
                                                     dir.appendingPathComponent("holdout.jsonl").path, "--val", dir.appendingPathComponent("nope.jsonl").path])
        #expect(missing.status == 66 && missing.stderr.contains("nope.jsonl"), "\(missing.stderr)")
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

    @Test func readsAFixedSplitAndRefusesABadOne() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = try String(contentsOfFile: try synthetic(dir, tenants: 2, customers: 40, seed: 4, holdout: 100).train, encoding: .utf8)
        let intents = Array(Set(all.split(separator: "\n").compactMap(jsonObject).map { $0["intent"] as! String })).sorted()
        let count = all.split(separator: "\n").count
        // Customers of 3 consecutive rows, alternating between two tenants.
        let users = stride(from: 0, to: count - 2, by: 3).enumerated().map { i, start in ["tenant": i % 2, "rows": [start, start + 1, start + 2]] as [String: Any] }
        let split = dir.appendingPathComponent("split.json")
        try JSONSerialization.data(withJSONObject: ["intents": intents, "users": users]).write(to: split)
        let r = try run(["--partition-file", split.path, "--no-dp", "--seed", "1"], data: dir)
        #expect(r["tenants"] as? Int == 2)
        #expect(r["customers"] as? Int == users.count)
        let bad = dir.appendingPathComponent("bad.json")
        try JSONSerialization.data(withJSONObject: ["intents": intents, "users": [["tenant": 0, "rows": [0, count + 5]]]]).write(to: bad)
        let refused = try Binary.run("sigilo-eval", ["federated", "--train", dir.appendingPathComponent("train.jsonl").path,
                                                    "--test", dir.appendingPathComponent("holdout.jsonl").path, "--partition-file", bad.path, "--no-dp"])
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("users[0] row \(count + 5) is outside"))
    }

    /// Synthetic tenants' files concatenated into train.jsonl, and the hold-out set: their paths.
    func synthetic(_ dir: URL, tenants: Int = 4, customers: Int = 150, seed: Int = 2, holdout: Int = 300) throws -> (train: String, test: String) {
        _ = try Binary.run("sigilo-eval", ["synth", "--tenants", "\(tenants)", "--customers", "\(customers)", "--seed", "\(seed)", "--out", dir.path,
                                           "--holdout", "\(holdout)"])
        let all = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("tenant-") }.sorted()
            .map { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8) }.joined()
        try all.write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
        return (dir.appendingPathComponent("train.jsonl").path, dir.appendingPathComponent("holdout.jsonl").path)
    }

    static let small = ["--tenants", "4", "--buckets", "1024", "--rounds", "6", "--eval-every", "3", "--sample-rate", "0.5", "--server-learning-rate", "30"]

    /// Encoder features (a small random encoder made here) through the DP simulation and the canary audit: both say which features they used.
    @Test func encoderFeaturesTrainPrivatelyAndAreReported() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try synthetic(dir, customers: 60, holdout: 100)
        let encoder = dir.appendingPathComponent("tiny.sgle")
        try Data(TinyEncoder().bytes()).write(to: encoder)
        let options = ["--features", "both", "--encoder", encoder.path, "--embedding-cache", dir.appendingPathComponent("cache").path]
        let federated = try run(["--epsilon", "8"] + options, data: dir)
        #expect(federated["features"] as? String == "both")
        #expect((federated["epsilon"] as? Double).map { $0 <= 8 } == true)
        let canary = try Binary.run("sigilo-eval", ["canary", "--train", dir.appendingPathComponent("train.jsonl").path, "--test",
                                                    dir.appendingPathComponent("holdout.jsonl").path, "--json", "--candidates", "50"]
                                                   + Self.small + options)
        #expect(canary.status == 0, "\(canary.stderr)")
        #expect(try #require(jsonObject(Substring(canary.stdout)))["features"] as? String == "both")
    }

    @Test func perTenantComparisonAndReport() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, test) = try synthetic(dir)
        let report = dir.appendingPathComponent("report")
        let r = try Binary.run("sigilo-eval", ["federated", "--train", train, "--test", test, "--report", report.path, "--json", "--seed", "3"] + Self.small)
        #expect(r.status == 0, "\(r.stderr)")
        let result = try #require(jsonObject(Substring(r.stdout)))
        let tenants = try #require(result["per_tenant"] as? [[String: Any]])
        #expect(tenants.count == 4)
        for t in tenants {
            for key in ["local_only", "global", "personalised"] { #expect(((t[key] as? Double) ?? -1) >= 0 && ((t[key] as? Double) ?? 2) <= 1) }
            #expect((t["test_examples"] as? Int ?? 0) > 0)
        }
        #expect((result["centralised_accuracy_in_scope"] as? Double ?? 0) > 0.8)
        #expect(result["personalised_gain_median"] is Double)
        let markdown = try String(contentsOf: report.appendingPathComponent("report.md"), encoding: .utf8)
        #expect(markdown.contains("## Per tenant") && markdown.contains("![accuracy](accuracy.svg)"))
        for chart in ["accuracy.svg", "epsilon.svg", "tenants.svg"] {
            let svg = try String(contentsOf: report.appendingPathComponent(chart), encoding: .utf8)
            #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"), "\(chart)")
            #expect(try XMLDocument(xmlString: svg).rootElement()?.name == "svg", "\(chart) is not well-formed XML")
        }
        // Honest axes (issue 23): epsilon from 0 with the budget as a dashed reference, whole-number round ticks,
        // the centralised model as a labelled reference rather than a data line, each tenant's count shown.
        let epsilon = try String(contentsOf: report.appendingPathComponent("epsilon.svg"), encoding: .utf8)
        let yLabels = epsilon.matches(of: /text-anchor="end">([-0-9.]+)</).map { String($0.1) }
        #expect(yLabels.first == "0" && !yLabels.contains("-0"), "\(yLabels)")
        #expect(epsilon.contains("stroke-dasharray") && epsilon.contains(">budget 8</text>"), "\(epsilon)")
        let xLabels = epsilon.matches(of: /text-anchor="middle">([0-9.]+)</).map { String($0.1) }
        #expect(xLabels.first == "0" && xLabels.allSatisfy { Int($0) != nil }, "\(xLabels)")
        let accuracy = try String(contentsOf: report.appendingPathComponent("accuracy.svg"), encoding: .utf8)
        #expect(accuracy.components(separatedBy: "<polyline").count == 2 && accuracy.contains("centralised, no DP"), "one data line")
        let perTenant = try String(contentsOf: report.appendingPathComponent("tenants.svg"), encoding: .utf8)
        for t in tenants { #expect(perTenant.contains("n=\(t["train_examples"] as? Int ?? -1)"), "\(t)") }
        let saved = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: report.appendingPathComponent("result.json"))) as? [String: Any])
        #expect(saved["accuracy_in_scope"] as? Double == result["accuracy_in_scope"] as? Double)
        // Wall time is reported as such, beside the training's own.
        #expect(((result["wall_seconds"] as? Double) ?? 0) >= ((result["seconds"] as? Double) ?? 1))
    }

    @Test func progressLinesSayWhatALongRunIsDoing() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, test) = try synthetic(dir)
        let r = try Binary.run("sigilo-eval", ["federated", "--train", train, "--test", test, "--seed", "3"] + Self.small)
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.first?.contains("] loading and featurising the data") == true, "\(r.stderr)")
        for phase in ["round 3: ", "comparing each tenant's", "centralised non-private reference"] {
            #expect(lines.contains { $0.range(of: #"^  \[ *\d+\.\d s\] "#, options: .regularExpression) != nil && $0.contains(phase) }, "\(phase): \(r.stderr)")
        }
        #expect(r.stdout.contains(" s of training, ") && r.stdout.contains(" s wall"), "\(r.stdout)")
    }

    /// Unset schedule flags follow the noise: every customer in 60 rounds
    /// when the aggregate's noise is heavy (central epsilon < 4, or noise at
    /// each of enough tenants), a fifth in 300 rounds otherwise.
    @Test func securePlacementMasksEveryUpdateAndRepeatsWithSeededNoise() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let all = try String(contentsOfFile: try synthetic(dir).train, encoding: .utf8)
        let a = try run(["--placement", "secure", "--epsilon", "8", "--insecure-seeded-noise", "--seed", "3"], data: dir)
        let b = try run(["--placement", "secure", "--epsilon", "8", "--insecure-seeded-noise", "--seed", "3"], data: dir)
        #expect(a["accuracy"] as? Double == b["accuracy"] as? Double) // the masks cancel exactly: only the seeded noise varies runs
        #expect((a["accuracy"] as! Double) > 0.5)
        let epsilon = try #require(a["epsilon"] as? Double)
        #expect(epsilon <= 8 && epsilon > 7.9)
        let labels = Set(all.split(separator: "\n").compactMap(jsonObject).map { $0["intent"] as! String }).count
        // Header and d masked words, plus the round's keys, encrypted shares and revealed shares (a few hundred bytes each).
        let bytes = a["bytes_per_tenant_per_round"] as! Double, masked = Double(80 + 8 * (1024 * labels + labels))
        #expect(bytes > masked && bytes < masked + 4096, "\(bytes)")
        #expect(a["abandoned_rounds"] as? Int == 0 && a["mean_survivors"] as? Double == 4)
        // With tenants vanishing, rounds with fewer than t = 4 survivors release nothing and are re-run
        // uncharged, as the coordinator does: the same rounds are charged, and the same epsilon spent.
        let dropping = try run(["--placement", "secure", "--epsilon", "8", "--insecure-seeded-noise", "--seed", "3", "--dropout", "0.3"], data: dir)
        #expect((dropping["abandoned_rounds"] as! Int) > 0, "\(dropping)")
        #expect(dropping["epsilon"] as? Double == epsilon && (dropping["accuracy"] as! Double) > 0.5, "\(dropping)")
        let refused = try Binary.run("sigilo-eval", ["federated", "--train", dir.appendingPathComponent("train.jsonl").path, "--test",
                                                     dir.appendingPathComponent("holdout.jsonl").path, "--placement", "secure", "--no-dp"])
        #expect(refused.status == 64 && refused.stderr.contains("--no-dp has no noise to place"), "\(refused.stderr)")
    }

    @Test func theScheduleDefaultsFollowTheNoise() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, test) = try synthetic(dir)
        // The sampling rate and learning rate tell which schedule was picked; only the
        // second case runs its default number of rounds (60), the others stop after 2.
        let cases: [([String], rounds: Int, q: Double, lr: Double)] = [
            (["--epsilon", "8", "--rounds", "2"], 2, 0.2, 3),
            (["--epsilon", "2"], 60, 1, 6),
            (["--placement", "tenant", "--epsilon", "8", "--tenants", "4", "--rounds", "2"], 2, 1, 6), // like central noise at epsilon 3.4
            (["--placement", "tenant", "--epsilon", "8", "--tenants", "2", "--rounds", "2"], 2, 0.2, 3), // like epsilon 5.1
            (["--placement", "secure", "--epsilon", "8", "--tenants", "4", "--rounds", "2"], 2, 0.2, 3), // central noise on the total
            (["--no-dp", "--rounds", "2"], 2, 0.2, 10),
            (["--epsilon", "2", "--sample-rate", "0.3", "--rounds", "2"], 2, 0.3, 6), // what the user sets stays
            (["--epsilon", "2", "--server-optimizer", "fedadam", "--rounds", "2"], 2, 1, 0.03),
        ]
        for (extra, rounds, q, lr) in cases {
            let r = try Binary.run("sigilo-eval", ["federated", "--train", train, "--test", test, "--json", "--no-tenants", "--buckets", "1024",
                                                   "--insecure-seeded-noise", "--eval-every", "1000"] + extra)
            #expect(r.status == 0, "\(extra): \(r.stderr)")
            let result = try #require(jsonObject(Substring(r.stdout)))
            #expect(result["rounds"] as? Int == rounds, "\(extra)")
            #expect(result["sample_rate"] as? Double == q, "\(extra)")
            #expect(result["server_learning_rate"] as? Double == lr, "\(extra)")
        }
    }

    @Test func sweepReportsEveryEpsilonAndTheNonPrivateRun() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, test) = try synthetic(dir)
        let r = try Binary.run("sigilo-eval", ["sweep", "--train", train, "--test", test, "--epsilons", "1,8,none", "--json",
                                               "--report", dir.appendingPathComponent("sweep").path] + Self.small)
        #expect(r.status == 0, "\(r.stderr)")
        let runs = try #require(jsonObject(Substring(r.stdout))?["runs"] as? [[String: Any]])
        #expect(runs.count == 3)
        #expect(runs[2]["epsilon"] is NSNull)
        let e1 = try #require(runs[0]["epsilon"] as? Double), e8 = try #require(runs[1]["epsilon"] as? Double)
        #expect(e1 <= 1 && e1 > 0.95 && e8 <= 8 && e8 > 7.9)
        #expect((runs[0]["noise_multiplier"] as! Double) > (runs[1]["noise_multiplier"] as! Double))
        let md = try String(contentsOf: dir.appendingPathComponent("sweep/sweep.md"), encoding: .utf8)
        #expect(md.contains("| none |"))
        #expect(try Binary.run("sigilo-eval", ["sweep", "--train", train, "--test", test, "--epsilons", "8,-1"]).status == 64)
    }

    @Test func aSecureSweepsNonPrivateRunCarriesNoNoise() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, test) = try synthetic(dir)
        // Without DP a secure run is the plain clipped sum: the same model as central placement's.
        let accuracies = try ["secure", "central"].map { placement in
            let r = try Binary.run("sigilo-eval", ["sweep", "--train", train, "--test", test, "--epsilons", "none", "--json",
                                                   "--placement", placement, "--tenants", "4", "--buckets", "1024", "--rounds", "2"])
            #expect(r.status == 0, "\(r.stderr)")
            let runs = try #require(jsonObject(Substring(r.stdout))?["runs"] as? [[String: Any]])
            return try #require(runs.first?["accuracy_in_scope"] as? Double)
        }
        #expect(accuracies[0] == accuracies[1])
    }

    @Test func canaryExposureDropsWithDP() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (train, test) = try synthetic(dir)
        let r = try Binary.run("sigilo-eval", ["canary", "--train", train, "--test", test, "--candidates", "500", "--json", "--epsilon", "2", "--canaries", "3",
                                               "--tenants", "4", "--buckets", "1024", "--rounds", "20", "--eval-every", "20",
                                               "--sample-rate", "0.5", "--server-learning-rate", "30", "--insecure-seeded-noise"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try #require(jsonObject(Substring(r.stdout)))
        let runs = try #require(object["runs"] as? [[String: Any]])
        let plain = try #require(runs[0]["exposure"] as? Double), private_ = try #require(runs[1]["exposure"] as? Double)
        for run in runs { // the reported exposure is the median of the three canaries'
            let each = try #require(run["exposures"] as? [Double])
            #expect(each.count == 3 && (run["ranks"] as? [Double])?.count == 3)
            #expect(run["exposure"] as? Double == each.sorted()[1])
        }
        #expect(runs[0]["epsilon"] is NSNull)
        #expect(plain > 3, "without DP the planted secret should stand out (exposure \(plain))")
        #expect(private_ < plain - 2, "with DP exposure should drop (\(private_) vs \(plain))")
        #expect(object["insecure_seeded_noise"] as? Bool == true)
        let unknown = try Binary.run("sigilo-eval", ["canary", "--train", train, "--test", test, "--intent", "no_such_intent"] + Self.small)
        #expect(unknown.status == 65)
    }
}
