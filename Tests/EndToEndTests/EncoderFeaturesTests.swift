import Foundation
import SigiloCrypto
import SigiloEncoder
import SigiloFederation
import Testing

/// Encoder features through the programs: `sigilo-eval centralized
/// --features both` trains with a small random encoder made here, and
/// `sigilo-tenant classify` uses the saved model only with that encoder.
@Suite struct EncoderFeaturesTests {
    @Test func centralizedTrainsWithEncoderFeaturesAndClassifyNeedsTheSameEncoder() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let synth = try Binary.run("sigilo-eval", ["synth", "--tenants", "2", "--seed", "5", "--out", dir.path, "--holdout", "200"])
        #expect(synth.status == 0, "\(synth.stderr)")
        let encoder = dir.appendingPathComponent("tiny.sgle"), cache = dir.appendingPathComponent("cache")
        try Data(TinyEncoder().bytes()).write(to: encoder)
        let model = dir.appendingPathComponent("model.sgl")
        let arguments = ["centralized", "--train", dir.appendingPathComponent("tenant-01-loja.jsonl").path,
                         "--test", dir.appendingPathComponent("holdout.jsonl").path, "--buckets", "1024", "--features", "both",
                         "--encoder", encoder.path, "--embedding-cache", cache.path, "--save-model", model.path, "--json"]
        let first = try Binary.run("sigilo-eval", arguments)
        #expect(first.status == 0, "\(first.stderr)")
        let report = try #require(jsonObject(Substring(first.stdout)))
        #expect(report["features"] as? String == "both")
        let labels = report["labels"] as! Int
        #expect(report["parameters"] as? Int == (1024 + 32) * labels + labels)
        // The embeddings were cached: one file per data set (train, test), and a second run reads them and reports the same accuracy.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache.appendingPathComponent("embeddings").path).count == 2)
        let second = try Binary.run("sigilo-eval", arguments)
        #expect(try #require(jsonObject(Substring(second.stdout)))["accuracy"] as? Double == report["accuracy"] as? Double)

        let messages = "oi bom dia\nquero trocar o produto\n"
        let classify = try Binary.run("sigilo-tenant", ["classify", "--model", model.path, "--encoder", encoder.path], input: messages)
        #expect(classify.status == 0, "\(classify.stderr)")
        #expect(classify.stdout.split(separator: "\n").compactMap(jsonObject).count == 2)
        // Another encoder (the shipped one, found in the source tree) is not the one the model was trained on.
        let wrong = try Binary.run("sigilo-tenant", ["classify", "--model", model.path], input: messages)
        #expect(wrong.status == 66)
        #expect(wrong.stderr.contains("SHA-256"), "\(wrong.stderr)")
    }

    /// A plan whose model reads hashed and encoder features: a tenant takes part only with that encoder
    /// (found through SIGILO_ENCODER here), and its update has the plan's larger dimension.
    @Test func aRoundWithEncoderFeaturesNeedsThePlansEncoder() throws {
        let tiny = TinyEncoder().bytes()
        let world = try TenantWorld(features: { plan in
            (plan.features, plan.encoderSHA256, plan.encoderDimension) = (.both, Hex.encode(SHA256.hash(tiny)), 32)
        })
        defer { world.close() }
        let encoder = world.dir.appendingPathComponent("tiny.sgle")
        try Data(tiny).write(to: encoder)
        let args = try world.enrolledShops()[0]
        var refused = try Binary.run("sigilo-tenant", ["round"] + args)
        for _ in 0..<50 where refused.status == 75 { usleep(200_000); refused = try Binary.run("sigilo-tenant", ["round"] + args) }
        #expect(refused.status != 0 && refused.stdout.contains("SHA-256"), "\(refused.stdout) \(refused.stderr)")
        let status = try #require(jsonObject(Substring(try Binary.run("sigilo-tenant", ["status", "--json"] + args).stdout)))
        #expect(status["last_round"] is NSNull, "no round joined, nothing charged: \(status)")
        let taken = try Binary.run("sigilo-tenant", ["round"] + args, environment: ["SIGILO_ENCODER": encoder.path])
        #expect(taken.status == 0 && taken.stdout.hasPrefix("submitted"), "\(taken.stdout) \(taken.stderr)")
        // Personalising the cached global model needs the same encoder too.
        let personalised = try Binary.run("sigilo-tenant", ["personalise", "--json"] + args, environment: ["SIGILO_ENCODER": encoder.path])
        #expect(personalised.status == 0, "\(personalised.stderr)")
        let withoutEncoder = try Binary.run("sigilo-tenant", ["personalise"] + args)
        #expect(withoutEncoder.status == 66 && withoutEncoder.stderr.contains("SHA-256"), "\(withoutEncoder.stderr)")
    }

    @Test func anUnknownFeatureKindIsABadCommandLine() throws {
        let bad = try Binary.run("sigilo-eval", ["centralized", "--train", "a", "--test", "b", "--features", "bert"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--features expects hashed, encoder or both"), "\(bad.stderr)")
    }
}
