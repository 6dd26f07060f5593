import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// `sigilo-eval centralized`: non-private training on one labelled data set,
/// evaluated on another. The reference every federated figure is compared to.
enum CentralizedCommand {
    static let spec = CommandSpec(
        name: "centralized",
        summary: "Train the intent model on all data in one place and evaluate it.",
        usage: "sigilo-eval centralized --train FILE --test FILE [--val FILE] [options]",
        options: [
            .value("train", "FILE", "Training data, JSON Lines {\"text\",\"intent\"}."),
            .value("test", "FILE", "Test data, same format."),
            .value("val", "FILE", "Validation data for calibration (default: 10% of --train held out)."),
            .value("buckets", "N", "Hash buckets, a power of two in 2^8...2^24 (default 65536)."),
            .value("word-ngrams", "A-B", "Word n-gram orders (default 1-2)."),
            .value("char-ngrams", "A-B", "Character n-gram orders within words (default 3-5)."),
            .value("word-weight", "N", "Times each word n-gram is counted, 1...8 (default \(defaultWordWeight))."),
            .value("loss", "blend|hinge|softmax", "Training objective (default blend: a squared-hinge and a cross-entropy model, scores averaged; softmax = cross-entropy)."),
            .value("epochs", "N", "Training epochs (default \(TrainingOptions().epochs))."),
            .value("learning-rate", "R", "Initial SGD learning rate (default 0.25 hinge, 2 softmax; a blend's hinge half)."),
            .value("l2", "L", "L2 penalty (default 1e-5 hinge, 0 softmax; a blend's hinge half)."),
            .value("dropout", "P", "Feature dropout probability in [0, 1) (default 0.5 hinge, 0.7 softmax; a blend's hinge half)."),
            .value("seed", "S", "Seed of the example order (default 1)."),
            .value("handoff-intent", "NAME", "An intent that always means hand-off (repeatable; default: oos, falar_com_humano).", repeatable: true),
            .value("save-model", "PATH", "Write the trained model here (models/FORMAT.md)."),
            .flag("json", "Print one JSON object instead of text."),
        ] + FeatureOptions.specs,
        discussion: "Exit codes: 0 success, 64 bad arguments, 65 invalid data (every bad line is listed), 66 missing input, 74 write error."
    )

    /// Counting word n-grams twice gained 0.1-0.2 points over the plain count
    /// on 5-fold cross-validation of the CLINC150 and Banking77 training data
    /// (3 measured the same; tools/bench-model reports the test sets).
    static let defaultWordWeight = 2

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let trainPath = try args.required("train")
        let testPath = try args.required("test")
        let buckets = try args.int("buckets") ?? 65536
        guard buckets > 0, buckets & (buckets - 1) == 0,
              FeatureConfiguration.supportedBucketBits.contains(buckets.trailingZeroBitCount) else {
            throw CLIError.usage("centralized: --buckets must be a power of two in 256...16777216, got \(buckets)")
        }
        let options = try trainingOptions(args)
        let handoff = args.strings("handoff-intent").isEmpty ? IntentTraining.defaultHandoffIntents : Set(args.strings("handoff-intent"))
        let json = args.flag("json")
        let featureOptions = try FeatureOptions(args)

        let train = try LabeledExample.load(trainPath)
        let test = try LabeledExample.load(testPath)
        let val = try args.string("val").map(LabeledExample.load)

        var features = FeatureConfiguration(bucketBits: buckets.trailingZeroBitCount)
        features.wordNGrams = try orders(args, "word-ngrams", default: features.wordNGrams, limit: 4)
        features.charNGrams = try orders(args, "char-ngrams", default: features.charNGrams, limit: 8)
        features.wordWeight = try args.int("word-weight", range: FeatureConfiguration.supportedWordWeights) ?? Self.defaultWordWeight
        features = featureOptions.configuration(features)
        let extractor = try featureOptions.extractor(features)
        let labels = Array(Set(train.map(\.intent))).sorted()
        // Progress goes to a person at a terminal, never into logs or pipes.
        let interactive = !json && isatty(2) != 0
        let log: (String) -> Void = { if interactive { printError("  \($0)") } }

        func examples(_ set: [LabeledExample], _ name: String) -> EncodedExamples {
            featureOptions.examples(set.map(\.text), set.map(\.intent), labels: labels, extractor: extractor, name: name, log: log)
        }
        // Encoder embeddings are computed (or read from the cache) before the clock starts: they are a property of the data set.
        let (trainSet, valSet, testSet) = (examples(train, "train"), val.map { examples($0, "validation") }, examples(test, "test"))
        let start = DispatchTime.now().uptimeNanoseconds
        let model = IntentTraining.fit(train: trainSet, validation: valSet, labels: labels, features: features,
                                       options: options, handoffIntents: handoff, progress: log)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9

        let metrics = Metrics.evaluate(model, on: testSet)
        let fileBytes = ModelFile.encode(model)
        if let path = args.string("save-model") {
            do { try ModelFile.write(model, to: URL(fileURLWithPath: path)) } catch {
                throw CLIError(.ioError, "cannot write model to \(path): \(error.localizedDescription)")
            }
        }
        let unknown = testSet.labels.filter { $0 < 0 }.count
        var fields: [(String, JSON)] = [
            ("train_examples", .integer(train.count)),
            ("test_examples", .integer(test.count)),
            ("labels", .integer(labels.count)),
            ("features", .string(features.kind.rawValue)),
            ("buckets", .integer(buckets)),
            ("accuracy", .number(metrics.accuracy)),
            ("accuracy_in_scope", .number(metrics.accuracyInScope)),
            ("macro_f1", .number(metrics.macroF1)),
        ]
        if let oos = metrics.oosRecall { fields.append(("oos_recall", .number(oos))) }
        if let oos = metrics.oosRecallWithHandoff { fields.append(("oos_recall_with_handoff", .number(oos))) }
        fields += [
            ("handoff_threshold", .number(Double(model.handoffThreshold))),
            ("handoff_rate", .number(metrics.handoffRate)),
            ("temperature", .number(Double(model.temperature))),
            ("test_examples_with_unknown_intent", .integer(unknown)),
            ("train_seconds", .number(seconds)),
            ("train_examples_per_second", .number(Double(train.count * options.passes) / seconds)),
            ("epochs", .integer(options.epochs)),
            ("loss", .string(options.loss.rawValue)),
            ("parameters", .integer(model.parameterCount)),
            ("model_bytes", .integer(fileBytes.count)),
        ]
        if json {
            OutputStream.standardOutput.write(JSON.object(fields).rendered() + "\n")
            return
        }
        let described = features.kind == .encoder ? "encoder features" : features.kind == .both ? "\(buckets) buckets and encoder features" : "\(buckets) buckets"
        var text = "centralized: \(train.count) train / \(test.count) test examples, \(labels.count) intents, \(described)\n"
        text += String(format: "  accuracy %.4f, in-scope %.4f, macro-F1 %.4f\n", metrics.accuracy, metrics.accuracyInScope, metrics.macroF1)
        if let oos = metrics.oosRecall, let withHandoff = metrics.oosRecallWithHandoff {
            text += String(format: "  out-of-scope recall %.4f (%.4f counting low-confidence hand-offs)\n", oos, withHandoff)
        }
        text += String(format: "  hand-off below confidence %.3f (temperature %.3f): %.1f%% of test messages\n",
                       model.handoffThreshold, model.temperature, metrics.handoffRate * 100)
        text += String(format: "  trained in %.2f s (%.0f examples/s), %d parameters, model file %d bytes\n",
                       seconds, Double(train.count * options.passes) / seconds, model.parameterCount, fileBytes.count)
        if unknown > 0 { text += "  note: \(unknown) test examples have intents absent from training (counted wrong)\n" }
        if let path = args.string("save-model") { text += "  model written to \(path)\n" }
        OutputStream.standardOutput.write(text)
    }

    /// Parses "A-B" (or "A") into an n-gram order range within 1...limit.
    static func orders(_ args: ParsedArguments, _ name: String, default value: ClosedRange<Int>, limit: Int) throws -> ClosedRange<Int> {
        guard let raw = args.string(name) else { return value }
        let parts = raw.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
        guard (1...2).contains(parts.count), let lo = parts.first!, let hi = parts.last!, 1 <= lo, lo <= hi, hi <= limit else {
            throw CLIError.usage("centralized: --\(name) expects A-B with 1 <= A <= B <= \(limit), got \"\(raw)\"")
        }
        return lo...hi
    }

    /// Training options from the command line, defaults per loss.
    static func trainingOptions(_ args: ParsedArguments) throws -> TrainingOptions {
        let lossName = args.string("loss") ?? TrainingLoss.blend.rawValue
        guard let loss = TrainingLoss(rawValue: lossName) else {
            throw CLIError.usage("\(args.command): --loss must be blend, hinge or softmax, got \"\(lossName)\"")
        }
        return TrainingOptions(
            loss: loss,
            epochs: try args.int("epochs", range: 1...1000) ?? 12,
            learningRate: try args.double("learning-rate", where: { $0 > 0 }, expectation: "a positive number").map(Float.init),
            l2: try args.double("l2", where: { $0 >= 0 && $0 < 1 }, expectation: "a number in [0, 1)").map(Float.init),
            dropout: try args.double("dropout", where: { $0 >= 0 && $0 < 1 }, expectation: "a number in [0, 1)").map(Float.init),
            seed: UInt64(try args.int("seed", range: 0...Int.max) ?? 1)
        )
    }
}
