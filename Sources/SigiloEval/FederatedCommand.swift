import Foundation
import SigiloCLI
import SigiloFederation
import SigiloModel
import SigiloPrivacy
import SigiloProtocol
import SigiloText

/// `sigilo-eval federated`: federated training with customer-level DP,
/// simulated in one process through the code the real programs run
/// (`FederatedSimulation`), then each tenant's local-only, global and
/// personalised accuracy and the centralised non-private reference.
enum FederatedCommand {
    static let spec = CommandSpec(
        name: "federated",
        summary: "Simulate federated training with customer-level DP on a labelled data set split into tenants and customers.",
        usage: "sigilo-eval federated --train FILE --test FILE [options]",
        options: FederatedData.options + SimulationSettings.options + [
            .value("val", "FILE", "Labelled validation data to fit the final global model's temperature and hand-off threshold on (default: none, so it hands off only hand-off intents)."),
            .flag("no-tenants", "Skip the per-tenant comparison (local-only, global, personalised) and the centralised reference."),
            .value("report", "DIR", "Write a Markdown report with SVG charts (and result.json) into DIR."),
            .value("save-model", "PATH", "Write the final global model here (models/FORMAT.md)."),
            .flag("json", "Print one JSON object."),
        ],
        discussion: """
        Defaults are the configuration we recommend: --epsilon 8 alone runs it. Sampling, the split and local training are
        deterministic for a seed; noise comes from the secure generator unless --insecure-seeded-noise.
        """ + "\n\n" + SimulationSettings.scheduleHelp)

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let json = args.flag("json")
        let started = Date()
        // Progress on standard error for people (not with --json): each phase says what it starts and how long it has run.
        let log: (String) -> Void = { if !json { printError(String(format: "  [%5.1f s] ", Date().timeIntervalSince(started)) + $0) } }
        let parsed = try SimulationSettings.parse(args)
        log("loading and featurising the data")
        let data = try FederatedData.load(args)
        let settings = try parsed.resolved(tenants: data.tenants.count)
        log("\(data.train.count) training messages in \(data.tenants.count) tenants, \(data.test.count) test messages; "
            + "training \(settings.rounds) rounds (\(settings.dp ? "\(settings.placement.rawValue) noise" : "no DP"))")
        // The shared model never sees a labelled message in training; an operator's own
        // validation set is what can calibrate it (tenants calibrate when they personalise).
        let val = try args.string("val").map(LabeledExample.load).map {
            EncodedExamples(texts: $0.map(\.text), intents: $0.map(\.intent), labels: data.labels, extractor: data.extractor)
        }
        var run = try FederatedSimulation.run(data, settings, log: log)
        if let val {
            IntentTraining.calibrate(&run.model, on: val)
            run.final = Metrics.evaluate(run.model, on: data.test)
        }
        if let path = args.string("save-model") {
            do { try ModelFile.write(run.model, to: URL(fileURLWithPath: path)) } catch {
                throw CLIError(.ioError, "cannot write model to \(path): \(error.localizedDescription)")
            }
        }
        var tenants: [TenantOutcome]?, central: Double?
        if !args.flag("no-tenants") {
            log("comparing each tenant's local-only, global and personalised models (\(data.tenants.count) tenants)")
            tenants = TenantComparison.evaluate(data, global: run.model, seed: settings.seed)
            log("training the centralised non-private reference")
            central = centralisedReference(data, seed: settings.seed)
        }
        let wall = Date().timeIntervalSince(started)
        let result = resultJSON(data: data, settings: settings, run: run, tenants: tenants, central: central,
                                partition: args.string("partition-file") ?? args.string("partition") ?? "dirichlet:0.5", wallSeconds: wall)
        if let dir = args.string("report") {
            try FederatedReport.write(to: dir, data: data, settings: settings, run: run, tenants: tenants, central: central, json: result)
            if !json { printError("  report: \(dir)/report.md") }
        }
        if json { OutputStream.standardOutput.write(result.rendered() + "\n"); return }
        var line = String(format: "federated: accuracy %.4f, in-scope %.4f after %d rounds", run.final.accuracy, run.final.accuracyInScope, settings.rounds)
        line += run.epsilon.map { String(format: " at epsilon %.3f (delta %g)", $0, settings.delta) } ?? " without DP"
        if val != nil {
            line += String(format: "; hand-off below confidence %.3f (temperature %.3f): %.1f%% of test messages", run.model.handoffThreshold,
                           run.model.temperature, 100 * run.final.handoffRate)
            line += run.final.oosRecallWithHandoff.map { String(format: ", out-of-scope recall %.4f with hand-offs", $0) } ?? ""
        }
        if settings.placement == .secure {
            line += String(format: "; dropout %.2f: %d rounds abandoned (re-run: one abandoned before unmasking is not charged)", settings.dropout, run.abandonedRounds)
            line += run.meanSurvivors.map { String(format: ", %.1f survivors per released round", $0) } ?? ""
        }
        line += String(format: "; %.0f bytes per tenant per round; %.1f s of training, %.1f s wall", run.bytesPerTenantPerRound, run.seconds, wall)
        if let central { line += String(format: "; centralised non-private %.4f", central) }
        if let tenants {
            let gains = TenantComparison.gains(tenants)
            line += String(format: "; personalised - local-only: median %+.1f points, least-data quarter %+.1f", 100 * gains.median, 100 * gains.leastDataQuarter)
        }
        OutputStream.standardOutput.write(line + "\n")
    }

    /// In-scope accuracy of the centralised, non-private model trained on every tenant's data together.
    static func centralisedReference(_ data: FederatedData, seed: UInt64) -> Double {
        let rows = data.tenants.indices.flatMap { data.rows(ofTenant: $0) }.sorted()
        let model = IntentTraining.fit(train: data.train.subset(rows), validation: nil, labels: data.labels, features: data.features,
                                       options: TrainingOptions(seed: seed))
        return Metrics.evaluate(model, on: data.test).accuracyInScope
    }

    static func resultJSON(data: FederatedData, settings: SimulationSettings, run: SimulationResult, tenants: [TenantOutcome]?,
                           central: Double?, partition: String, wallSeconds: Double) -> JSON {
        var fields: [(String, JSON)] = [
            ("features", .string(data.features.kind.rawValue)),
            ("tenants", .integer(data.tenants.count)), ("customers", .integer(data.customerCount)), ("partition", .string(partition)),
            ("rounds", .integer(settings.rounds)), ("sample_rate", .number(settings.sampleRate)), ("delta", .number(settings.delta)),
            ("clip", .number(settings.clip)), ("placement", .string(settings.placement.rawValue)),
            ("noise_multiplier", run.noiseMultiplier.map { .number($0) } ?? .null), ("target_epsilon", settings.epsilon.map { .number($0) } ?? .null),
            ("epsilon", run.epsilon.map { .number($0) } ?? .null), ("server_optimizer", .string(settings.optimizer.rawValue)),
            ("server_learning_rate", .number(settings.serverLearningRate)), ("server_momentum", .number(settings.serverMomentum)),
            ("accuracy", .number(run.final.accuracy)), ("accuracy_in_scope", .number(run.final.accuracyInScope)), ("macro_f1", .number(run.final.macroF1)),
            ("temperature", .number(Double(run.model.temperature))), ("handoff_threshold", .number(Double(run.model.handoffThreshold))),
            ("handoff_rate", .number(run.final.handoffRate)), ("oos_recall", run.final.oosRecall.map { .number($0) } ?? .null),
            ("oos_recall_with_handoff", run.final.oosRecallWithHandoff.map { .number($0) } ?? .null),
            ("bytes_per_tenant_per_round", .number(run.bytesPerTenantPerRound)), ("seconds", .number(run.seconds)), ("wall_seconds", .number(wallSeconds)),
            ("insecure_seeded_noise", .bool(settings.insecureSeededNoise)),
            ("history", .array(run.history.map {
                JSON.object([("round", .integer($0.round)), ("accuracy", .number($0.accuracy)), ("accuracy_in_scope", .number($0.accuracyInScope)),
                             ("epsilon", $0.epsilon.map { .number($0) } ?? .null)])
            })),
        ]
        if settings.placement == .secure {
            fields.append(("dropout", .number(settings.dropout)))
            fields.append(("abandoned_rounds", .integer(run.abandonedRounds)))
            fields.append(("mean_survivors", run.meanSurvivors.map { .number($0) } ?? .null))
        }
        if let central { fields.append(("centralised_accuracy_in_scope", .number(central))) }
        if let tenants {
            let gains = TenantComparison.gains(tenants)
            fields.append(("personalised_gain_median", .number(gains.median)))
            fields.append(("personalised_gain_least_data_quarter", .number(gains.leastDataQuarter)))
            fields.append(("per_tenant", .array(tenants.map {
                JSON.object([("tenant", .integer($0.tenant)), ("train_examples", .integer($0.trainExamples)), ("test_examples", .integer($0.testExamples)),
                             ("local_only", .number($0.localOnly)), ("global", .number($0.global)), ("personalised", .number($0.personalised))])
            })))
        }
        return JSON.object(fields)
    }
}

/// A fixed split of a training file into tenants and customers:
/// `{"intents": [...], "users": [{"tenant": T, "rows": [i, ...]}, ...]}` where
/// rows index the training file's lines whose intent is in `intents`, in file order.
struct SplitFile {
    var intents: [String]
    /// Per tenant, per customer: row indices into the training examples.
    var tenants: [[[Int]]]

    static func read(_ path: String, train: [LabeledExample]) throws -> SplitFile {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw CLIError(.noInput, "cannot read \(path)") }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else { throw CLIError(.dataError, "\(path): not a JSON object") }
        guard let intents = object["intents"] as? [String], !intents.isEmpty, Set(intents).count == intents.count else {
            throw CLIError(.dataError, "\(path): \"intents\" must be a non-empty list of distinct strings")
        }
        guard let users = object["users"] as? [[String: Any]], !users.isEmpty else { throw CLIError(.dataError, "\(path): \"users\" must be a non-empty list") }
        let known = Set(intents)
        let rows = train.indices.filter { known.contains(train[$0].intent) }
        var tenants = [Int: [[Int]]]()
        for (i, user) in users.enumerated() {
            guard let tenant = user["tenant"] as? Int, tenant >= 0, let indices = user["rows"] as? [Int], !indices.isEmpty else {
                throw CLIError(.dataError, "\(path): users[\(i)] needs an integer \"tenant\" >= 0 and a non-empty \"rows\" list")
            }
            if let bad = indices.first(where: { $0 < 0 || $0 >= rows.count }) {
                throw CLIError(.dataError, "\(path): users[\(i)] row \(bad) is outside the \(rows.count) training lines with a listed intent")
            }
            tenants[tenant, default: []].append(indices.map { rows[$0] })
        }
        return SplitFile(intents: intents.sorted(), tenants: tenants.keys.sorted().map { tenants[$0]! })
    }
}
