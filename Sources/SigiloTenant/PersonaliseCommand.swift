import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// `sigilo-tenant personalise`: the latest global model adapted to this
/// tenant's consented messages (`Personalisation`), calibrated on a held-out
/// fifth of them, kept sealed in the store for `classify`. Nothing leaves the tenant.
enum PersonaliseCommand {
    static let spec = CommandSpec(
        name: "personalise",
        summary: "Fine-tune the latest global model on this tenant's own consented messages; classify then uses it.",
        usage: "sigilo-tenant personalise --state DIR --key-file FILE [--folds K] [--seed S] [--json]",
        options: TenantTool.storeOptions + [
            .value("folds", "K", "Fifths held out in turn to choose how to use the global model, 1-5 (default 5; K folds train 4K+1 times, on all cores)."),
            .value("seed", "S", "Seed of the held-out split and the training order (default 1)."),
            .flag("json", "Print one JSON object."),
        ],
        discussion: """
        Fifths of the messages are held out in turn to choose how to use the global model (fine-tune from all, half or
        a quarter of it; or train on your messages alone and add 10% to 100% of its scores; or leave it out); the first
        fifth also fits the temperature and the hand-off threshold; the final model is then trained on every message.
        It is trained without noise, so it stays sealed in the store, is never sent, and is deleted when a customer is
        erased or withdraws consent (run personalise again). It starts from the newest cached global model:
        'sigilo-tenant pull' fetches the coordinator's newest.
        Exit codes: 0 success, 64 bad arguments, 65 invalid cached model, 66 no global model yet or too few messages.
        """)

    /// Fewer messages than this leave nothing meaningful to hold out.
    static let minimumMessages = 10

    static let deletedNote = "the personalised model learnt from this customer's messages and was deleted: run 'sigilo-tenant personalise' again\n"

    /// One line on the personalised model for `status`, saying when a newer global model has arrived since.
    static func describe(_ store: TenantStore) throws -> String {
        guard let origin = try store.personalModelOrigin() else { return "no personalised model" }
        let latest = try store.latestModelVersion() ?? origin.globalVersion
        return "personalised model from global version \(origin.globalVersion)"
            + (latest > origin.globalVersion ? " (global version \(latest) is newer: run 'sigilo-tenant personalise' again)" : "")
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let json = args.flag("json")
        let seed = UInt64(try args.int("seed", range: 0...Int.max) ?? 1)
        let folds = try args.int("folds", range: 1...5) ?? 5
        let store = try TenantTool.openStore(args)
        guard let cached = try store.latestModel() else {
            throw CLIError(.noInput, "no global model cached yet: run 'sigilo-tenant pull' or take part in a round first")
        }
        let global: SoftmaxModel
        do { global = try ModelFile.decode(cached.file) } catch let error as ModelFileError {
            throw CLIError(.dataError, "cached model \(cached.version): \(error.description)")
        }
        let customers = try store.consentedCustomers()
        let messages = try customers.flatMap { try store.messages(of: $0) }
        let extractor: FeatureExtractor
        do { extractor = try FeatureExtractor.loading(global.features) } catch {
            throw CLIError(.noInput, "personalise: the global model reads \(global.features.kind.rawValue) features: \(error)")
        }
        let vectors = try StoredFeatures(extractor: extractor, store: store).features(messages)
        let former = try TenantTool.cachedPlan(store)?.formerLabels ?? [:] // a message under an intent's former name trains its successor
        let all = EncodedExamples(vectors: vectors, intents: messages.map { former[$0.intent] ?? $0.intent }, labels: global.labels)
        let known = all.labels.indices.filter { all.labels[$0] >= 0 }
        guard known.count >= minimumMessages else {
            throw CLIError(.noInput, "personalise: \(known.count) messages of consented customers have an intent the global model knows; at least \(minimumMessages) are needed")
        }
        let interactive = !json && isatty(2) != 0
        var options = TrainingOptions()
        options.seed = seed
        let outcome = Personalisation.fit(global, on: all.subset(known), options: options, folds: folds) { if interactive { printError("  \($0)") } }
        try store.savePersonalModel(file: ModelFile.encode(outcome.model), globalVersion: cached.version, now: Date().timeIntervalSince1970)

        let skipped = all.count - known.count
        if json {
            // The share as written (0.2), not as the nearest Double to its Float (0.2000000029...).
            let fields: [(String, JSON)] = [
                ("global_version", .integer(Int(cached.version))), ("messages", .integer(known.count)), ("customers", .integer(customers.count)),
                ("skipped_unknown_intent", .integer(skipped)), ("held_out", .integer(outcome.heldOut)), ("folds", .integer(outcome.folds)),
                ("held_out_accuracy", .number(outcome.heldOutAccuracy)), ("global_held_out_accuracy", .number(outcome.globalHeldOutAccuracy)),
                ("shared_model_use", .string(outcome.use.kind)), ("shared_model_share", .number(Double(String(outcome.use.share))!)),
                ("temperature", .number(Double(outcome.model.temperature))), ("handoff_threshold", .number(Double(outcome.model.handoffThreshold))),
            ]
            OutputStream.standardOutput.write(JSON.object(fields).rendered() + "\n")
            return
        }
        var text = "personalised global model version \(cached.version) on \(known.count) messages of \(customers.count) consented customers"
        text += skipped > 0 ? " (\(skipped) with an intent the model does not know skipped)\n" : "\n"
        text += String(format: "  %d held out in each of %d folds: %.1f%% classified right (the global model as it is: %.1f%%)\n",
                       outcome.heldOut, outcome.folds, 100 * outcome.heldOutAccuracy, 100 * outcome.globalHeldOutAccuracy)
        text += "  \(outcome.use)\n"
        text += String(format: "  hand-off below confidence %.3f (temperature %.3f)\n", outcome.model.handoffThreshold, outcome.model.temperature)
        text += "  kept sealed in the store; 'sigilo-tenant classify --state' uses it\n"
        OutputStream.standardOutput.write(text)
    }
}
