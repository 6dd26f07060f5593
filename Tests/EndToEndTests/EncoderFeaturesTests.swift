import Foundation
import SigiloCrypto
import SigiloEncoder
import SigiloFederation
import SigiloHTTP
import SigiloSQLite
import SigiloText
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
        let (world, encoder) = try worldWithTinyEncoder(.both)
        defer { world.close() }
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

    /// Each message goes through the encoder once: a round embeds the messages it samples, `import` the messages it
    /// stores, the live service the messages it answers; the embeddings are sealed, bound to their message, and go
    /// with it on erasure.
    @Test func embeddingsAreKeptSealedUsedByTheServiceAndErasedWithTheirMessages() throws {
        let (world, encoder) = try worldWithTinyEncoder(.encoder)
        defer { world.close() }
        let environment = ["SIGILO_ENCODER": encoder.path]
        let args = try world.tenant("loja")
        let files = try FileManager.default.contentsOfDirectory(atPath: world.data.path).filter { $0.hasPrefix("tenant-") }.sorted()
        #expect(try Binary.run("sigilo-tenant", ["import", world.data.appendingPathComponent(files[0]).path] + args, environment: environment).status == 0)
        let database = try Database(path: world.dir.appendingPathComponent("loja/tenant.sqlite").path)
        func count(_ sql: String) throws -> Int {
            var n = 0
            try database.run(sql) { n = Int($0.integer(0)) }
            return n
        }
        let messages = try count("SELECT COUNT(*) FROM messages")
        let before = try count("SELECT COUNT(*) FROM embeddings")
        #expect(messages > 0 && before == 0, "no model or plan yet: no encoder to embed with")
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)

        // The round (sample rate 1) embeds every consented customer's labelled messages.
        var round = try Binary.run("sigilo-tenant", ["round"] + args, environment: environment)
        for _ in 0..<50 where round.status == 75 { usleep(200_000); round = try Binary.run("sigilo-tenant", ["round"] + args, environment: environment) }
        #expect(round.status == 0, "\(round.stdout) \(round.stderr)")
        let sampled = try count("SELECT COUNT(*) FROM messages m JOIN customers c ON c.handle = m.customer WHERE c.consent = 1 AND m.intent IS NOT NULL")
        #expect(try count("SELECT COUNT(*) FROM embeddings") == sampled)
        #expect(try count("SELECT COUNT(*) FROM embeddings WHERE length(sealed) = 32 * 4 + 28") == sampled, "sealed float32s: nonce, ciphertext, tag")

        // An import now embeds what it stored; `embed` finds nothing left; without the encoder it says so and keeps the messages.
        let imported = try Binary.run("sigilo-tenant", ["import", world.data.appendingPathComponent(files[1]).path] + args, environment: environment)
        #expect(imported.status == 0 && imported.stderr.contains("embedded"), "\(imported.stderr)")
        let all = try count("SELECT COUNT(*) FROM messages")
        let embedded = try count("SELECT COUNT(*) FROM embeddings")
        #expect(all > messages && embedded == all)
        let embed = try Binary.run("sigilo-tenant", ["embed"] + args, environment: environment)
        #expect(embed.status == 0 && embed.stdout.hasPrefix("embedded 0 messages; \(all) of \(all)"), "\(embed.stdout) \(embed.stderr)")
        let wrongEncoder = try Binary.run("sigilo-tenant", ["embed"] + args)
        #expect(wrongEncoder.status == 66 && wrongEncoder.stderr.contains("SHA-256"), "\(wrongEncoder.stderr)")

        // The live service answers with the model's encoder and keeps the embedding with the message it stores.
        let token = try Binary.run("sigilo-tenant", ["agent-token", "create", "agent"] + args).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try RunningCoordinator(program: "sigilo-tenant", arguments: ["serve", "--listen", "127.0.0.1:0", "--encoder", encoder.path] + args,
                                            log: world.dir.appendingPathComponent("serve.log"))
        defer { _ = server.stop() }
        let client = HTTPClient(host: "127.0.0.1", port: server.port, timeout: 10)
        func call(_ target: String, _ body: String) throws -> [String: Any] {
            let response = try client.send(method: "POST", target: target, headers: [("Authorization", "Bearer \(token)")], body: Array(body.utf8))
            #expect(response.status == 200, "\(String(decoding: response.body, as: UTF8.self))")
            return (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        }
        #expect(try call("/v1/consent", #"{"customer":"5511900000009","consent":true}"#)["customer_was_known"] as? Bool == false)
        let answer = try call("/v1/classify", #"{"text":"quando chega meu pedido","customer":"5511900000009","message_id":"wamid.E1"}"#)
        #expect(answer["intent"] is String && answer["message_id"] as? String == "wamid.E1", "\(answer)")
        let batch = try call("/v1/classify", #"{"messages":[{"text":"oi"},{"text":"quero cancelar"},{"text":"qual o horário"}]}"#)
        #expect((batch["results"] as? [Any])?.count == 3, "\(batch)")
        #expect(try call("/v1/feedback", #"{"message_id":"wamid.E1","intent":"prazo_entrega"}"#)["kept"] as? Bool == true)
        #expect(try count("SELECT COUNT(*) FROM embeddings") == all + 1)

        // Erasure takes the embeddings with the messages; none is left without its message.
        let customer = "5511900000009"
        #expect(try Binary.run("sigilo-tenant", ["forget", customer] + args).status == 0)
        #expect(try count("SELECT COUNT(*) FROM embeddings") == all)
        #expect(try count("SELECT COUNT(*) FROM embeddings WHERE message NOT IN (SELECT handle FROM messages)") == 0)

        // A sealed embedding moved to another message fails authentication instead of training on the wrong vector.
        try database.execute("UPDATE embeddings SET sealed = (SELECT sealed FROM embeddings ORDER BY message DESC LIMIT 1) WHERE rowid = (SELECT MIN(rowid) FROM embeddings)")
        let tampered = try Binary.run("sigilo-tenant", ["personalise"] + args, environment: environment)
        #expect(tampered.status == 65 && tampered.stderr.contains("embedding failed authentication"), "\(tampered.stderr)")
    }

    /// A coordinator whose plan reads `kind` features of a tiny random encoder, and that encoder's file.
    func worldWithTinyEncoder(_ kind: FeatureKind) throws -> (TenantWorld, URL) {
        let tiny = TinyEncoder().bytes()
        let world = try TenantWorld(features: { plan in
            (plan.features, plan.encoderSHA256, plan.encoderDimension) = (kind, Hex.encode(SHA256.hash(tiny)), 32)
        })
        let encoder = world.dir.appendingPathComponent("tiny.sgle")
        try Data(tiny).write(to: encoder)
        return (world, encoder)
    }

    @Test func anUnknownFeatureKindIsABadCommandLine() throws {
        let bad = try Binary.run("sigilo-eval", ["centralized", "--train", "a", "--test", "b", "--features", "bert"])
        #expect(bad.status == 64)
        #expect(bad.stderr.contains("--features expects hashed, encoder or both"), "\(bad.stderr)")
    }
}
