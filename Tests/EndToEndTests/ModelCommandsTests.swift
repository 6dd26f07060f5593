import Foundation
import Testing

/// The model's commands, run as built binaries on synthetic and real data.
@Suite(.serialized) struct ModelCommandsTests {
    @Test func synthTrainSaveAndClassify() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let synth = try Binary.run("sigilo-eval", ["synth", "--tenants", "5", "--seed", "3", "--out", dir.path, "--holdout", "500"])
        #expect(synth.status == 0, "\(synth.stderr)")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(files == ["holdout.jsonl", "tenant-01-loja.jsonl", "tenant-02-clinica.jsonl", "tenant-03-banco.jsonl",
                          "tenant-04-delivery.jsonl", "tenant-05-telecom.jsonl"])

        // Tenant lines carry the full tenant format; some customers lack consent; PII appears.
        let loja = try String(contentsOf: dir.appendingPathComponent("tenant-01-loja.jsonl"), encoding: .utf8)
        let records = loja.split(separator: "\n").compactMap(jsonObject)
        #expect(records.count > 50)
        #expect(records.allSatisfy { $0["customer"] is String && $0["text"] is String && $0["intent"] is String && $0["consent"] is Bool && $0["time"] is String })
        #expect(records.contains { $0["consent"] as? Bool == false })
        #expect(Set(records.map { $0["customer"] as! String }).count < records.count) // customers with several messages

        // Train on all tenants together (the centralised reference), evaluate on the hold-out.
        let all = dir.appendingPathComponent("all.jsonl")
        var merged = ""
        for file in files where file.hasPrefix("tenant-") {
            merged += try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
        }
        try merged.write(to: all, atomically: true, encoding: .utf8)
        let model = dir.appendingPathComponent("model.sgl")
        let train = try Binary.run("sigilo-eval", ["centralized", "--train", all.path, "--test", dir.appendingPathComponent("holdout.jsonl").path,
                                                  "--buckets", "4096", "--save-model", model.path, "--json"])
        #expect(train.status == 0, "\(train.stderr)")
        let report = try #require(jsonObject(Substring(train.stdout)))
        for key in ["accuracy", "accuracy_in_scope", "macro_f1", "handoff_threshold", "train_seconds", "train_examples_per_second", "parameters", "model_bytes"] {
            #expect(report[key] != nil, "missing \(key)")
        }
        #expect((report["accuracy"] as! Double) > 0.9)
        #expect(report["oos_recall"] == nil) // no oos in the synthetic set

        let messages = ["oi bom dia", "cade meu pedido 4821??", "quero falar com um atendente", "meu cpf é 123.456.789-09, preciso da segunda via"]
        let classify = try Binary.run("sigilo-tenant", ["classify", "--model", model.path], input: messages.joined(separator: "\n") + "\n")
        #expect(classify.status == 0, "\(classify.stderr)")
        let lines = classify.stdout.split(separator: "\n").compactMap(jsonObject)
        #expect(lines.count == 4)
        #expect(lines.map { $0["intent"] as? String } == ["saudacao", "status_pedido", "falar_com_humano", "segunda_via"])
        #expect(lines[2]["decision"] as? String == "handoff") // the hand-off intent always goes to a human
        #expect(lines[0]["decision"] as? String == "answer")
        for line in lines {
            let top = try #require(line["top"] as? [[String: Any]])
            #expect(top.count == 3)
            #expect((line["confidence"] as! Double) == (top[0]["probability"] as! Double))
        }
    }

    @Test func crossValidationMeasuresSettingsOnFoldsOfTheTrainingData() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let synth = try Binary.run("sigilo-eval", ["synth", "--tenants", "2", "--seed", "5", "--out", dir.path, "--holdout", "0"])
        #expect(synth.status == 0, "\(synth.stderr)")
        let train = dir.appendingPathComponent("tenant-01-loja.jsonl").path
        let lines = try String(contentsOfFile: train, encoding: .utf8).split(separator: "\n").count
        let result = try Binary.run("sigilo-eval", ["centralized", "--train", train, "--cross-validate", "4", "--buckets", "4096", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(jsonObject(Substring(result.stdout)))
        let folds = try #require(report["fold_accuracy_in_scope"] as? [Double])
        #expect(folds.count == 4)
        #expect(report["train_examples"] as? Int == lines)
        // The mean is the folds' mean, and each fold is a model that never saw its examples.
        #expect(abs((report["accuracy_in_scope"] as! Double) - folds.reduce(0, +) / 4) < 1e-12)
        #expect(folds.allSatisfy { $0 > 0.5 && $0 <= 1 }, "\(folds)")

        // A test set, a model to save or an impossible fold count is refused by name.
        for (extra, word) in [(["--test", train], "--test"), (["--save-model", dir.appendingPathComponent("m").path], "--save-model")] {
            let refused = try Binary.run("sigilo-eval", ["centralized", "--train", train, "--cross-validate", "4"] + extra)
            #expect(refused.status == 64 && refused.stderr.contains(word), "\(refused.stderr)")
        }
        let one = try Binary.run("sigilo-eval", ["centralized", "--train", train, "--cross-validate", "1"])
        #expect(one.status == 64 && one.stderr.contains("--cross-validate"), "\(one.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("m").path))
    }

    @Test func invalidLinesAreReportedWithFileAndLineAndNoModelIsWritten() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = dir.appendingPathComponent("train.jsonl")
        try """
        {"text": "oi", "intent": "saudacao"}
        [1, 2, 3]
        {"intent": "saudacao"}
        {"text": "   ", "intent": "saudacao"}
        not json at all
        {"text": "tchau", "intent": 5}

        {"text": "cancelar", "intent": "cancelar"}
        """.write(to: train, atomically: true, encoding: .utf8)
        let model = dir.appendingPathComponent("model.sgl")
        let result = try Binary.run("sigilo-eval", ["centralized", "--train", train.path, "--test", train.path, "--save-model", model.path])
        #expect(result.status == 65)
        for expected in [":2: not a JSON object", ":3: missing \"text\"", ":4: \"text\" is empty", ":5: not valid JSON", ":6: \"intent\" must be a string"] {
            #expect(result.stderr.contains(train.path + expected), "stderr lacks \(expected): \(result.stderr)")
        }
        #expect(!result.stderr.contains(":1:") && !result.stderr.contains(":8:"))
        #expect(!FileManager.default.fileExists(atPath: model.path))
    }

    @Test func corruptedModelIsRefusedWithAPreciseError() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.sgl")
        try Data("SGLMODEL\u{1}\u{0}short".utf8).write(to: bad)
        let result = try Binary.run("sigilo-tenant", ["classify", "--model", bad.path], input: "oi\n")
        #expect(result.status == 65)
        #expect(result.stderr.contains("truncated"))
        #expect(result.stdout.isEmpty)
        let missing = try Binary.run("sigilo-tenant", ["classify", "--model", dir.appendingPathComponent("nope").path], input: "oi\n")
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("nope"))
    }

    @Test func redactCommandIsLineForLine() throws {
        let input = "meu cpf é 123.456.789-09\nsem nada aqui, pedido 4821 R$ 49,90\nmeu zap (11) 98765-4321 e email a@b.com\n"
        let result = try Binary.run("sigilo-tenant", ["redact"], input: input)
        #expect(result.status == 0)
        #expect(result.stdout == "meu cpf é <CPF>\nsem nada aqui, pedido 4821 R$ 49,90\nmeu zap <PHONE> e email <EMAIL>\n")
    }

    @Test(arguments: [
        ("sigilo-eval", ["--help"]), ("sigilo-eval", ["centralized", "--help"]), ("sigilo-eval", ["synth", "--help"]),
        ("sigilo-tenant", ["--help"]), ("sigilo-tenant", ["redact", "--help"]), ("sigilo-tenant", ["classify", "--help"]),
        ("sigilo-tenant", ["personalise", "--help"]), ("sigilo-tenant", ["pull", "--help"]), ("sigilo-tenant", ["enroll", "--help"]),
        ("sigilo-coordinator", ["tenant", "weight-cap", "--help"]), ("sigilo-coordinator", ["audit", "archive", "--help"]),
        ("sigilo-coordinator", ["serve", "--help"]),
    ])
    func everyCommandHasHelp(_ program: String, _ arguments: [String]) throws {
        let result = try Binary.run(program, arguments)
        #expect(result.status == 0)
        #expect(result.stdout.contains("Usage:"))
    }

    @Test(arguments: [
        ["centralized", "--train"], ["centralized", "--bogus", "1"], ["centralized", "--train", "a", "--test", "b", "--buckets", "1000"],
        ["nonexistent-command"], [],
    ])
    func badCommandLinesExit64(_ arguments: [String]) throws {
        let result = try Binary.run("sigilo-eval", arguments)
        #expect(result.status == 64, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains("error:"))
    }

    @Test(.enabled(if: sharedData != nil, "../shared/data is absent: skipping the CLINC150 slice"))
    func clinc150SliceTrainsToAUsefulModel() throws {
        let data = try #require(sharedData)
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Every fifth training example (3,020) and the first 1,100 test examples: a slice, not the benchmark.
        let train = try String(contentsOf: data.appendingPathComponent("clinc150/train.jsonl"), encoding: .utf8)
            .split(separator: "\n").enumerated().filter { $0.offset % 5 == 0 }.map(\.element).joined(separator: "\n")
        let test = try String(contentsOf: data.appendingPathComponent("clinc150/test.jsonl"), encoding: .utf8)
            .split(separator: "\n").enumerated().filter { $0.offset % 5 == 0 }.map(\.element).joined(separator: "\n")
        try train.write(to: dir.appendingPathComponent("train.jsonl"), atomically: true, encoding: .utf8)
        try test.write(to: dir.appendingPathComponent("test.jsonl"), atomically: true, encoding: .utf8)
        let result = try Binary.run("sigilo-eval", ["centralized", "--train", dir.appendingPathComponent("train.jsonl").path,
                                                   "--test", dir.appendingPathComponent("test.jsonl").path, "--buckets", "16384", "--epochs", "8", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(jsonObject(Substring(result.stdout)))
        // With a fifth of the data the full-data figure (~92.9%) is out of reach; 80% shows the pipeline works end to end.
        #expect((report["accuracy_in_scope"] as! Double) > 0.80)
        #expect(report["oos_recall"] is Double)
    }
}
