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
        usage: "sigilo-eval centralized --train FILE (--test FILE | --cross-validate K) [--val FILE] [options]",
        options: [
            .value("train", "FILE", "Training data, JSON Lines {\"text\",\"intent\"}."),
            .value("test", "FILE", "Test data, same format."),
            .value("cross-validate", "K", "Instead of a test set, measure the settings by K-fold cross-validation of --train (2...20 folds): "
                   + "choosing settings this way leaves the test set untouched."),
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

    /// Counting each word n-gram 8 times (weight 1 + ln 8 ≈ 3.1 against a
    /// character n-gram's 1) measured best on `--cross-validate 5` of the
    /// CLINC150 and Banking77 training data, hashed and `both` features alike:
    /// over 2 (the earlier default) +0.1 and +0.2 points with `both`, +0.05 and
    /// +0.1 hashed; 4 fell between, 16 and 32 measured the same as 8. A message
    /// has several times more character n-grams than word n-grams, so at 2 the
    /// characters still held most of the vector's length.
    static let defaultWordWeight = 8

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let trainPath = try args.required("train")
        let folds = try args.int("cross-validate", range: 2...20)
        if folds != nil, args.string("test") != nil || args.string("val") != nil || args.string("save-model") != nil {
            throw CLIError.usage("centralized: --cross-validate measures on folds of --train; drop --test, --val and --save-model")
        }
        let testPath = folds == nil ? try args.required("test") : nil
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
        let test = try testPath.map(LabeledExample.load)
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
        let trainSet = examples(train, "train")
        guard let test else {
            return try crossValidate(trainSet, folds: folds!, labels: labels, features: features, options: options, json: json, log: log)
        }
        let (valSet, testSet) = (val.map { examples($0, "validation") }, examples(test, "test"))
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

    /// K-fold cross-validation of `options` on `examples`: each fold (a random
    /// K-th, by `options.seed`) is classified by a model trained on the others,
    /// folds on all cores. Reports each fold's in-scope accuracy and their mean.
    static func crossValidate(_ examples: EncodedExamples, folds: Int, labels: [String], features: FeatureConfiguration,
                              options: TrainingOptions, json: Bool, log: (String) -> Void) throws {
        // `labels` are the training data's own intents, so every example is known.
        guard examples.count >= folds else {
            throw CLIError(.dataError, "centralized: --cross-validate \(folds) needs at least \(folds) training examples, got \(examples.count)")
        }
        var rng = SplitMix64(seed: options.seed ^ 0x666f_6c64)
        var shuffled = Array(0..<examples.count)
        shuffled.shuffle(using: &rng)
        let order = shuffled
        let blank = SoftmaxModel(features: features, labels: labels, handoffLabels: [])
        log("\(folds) folds of about \(examples.count / folds) examples, trained \(min(folds, ProcessInfo.processInfo.activeProcessorCount)) at a time")
        let start = DispatchTime.now().uptimeNanoseconds
        let accuracies = Array(0..<folds).concurrentMap { fold -> Double in
            let held = order.indices.filter { $0 % folds == fold }.map { order[$0] }.sorted()
            let fit = order.indices.filter { $0 % folds != fold }.map { order[$0] }.sorted()
            let subset = examples.subset(fit)
            let model = SoftmaxTrainer.train(subset.features, labels: subset.labels, model: blank, options: options)
            return Metrics.evaluate(model, on: examples.subset(held)).accuracyInScope
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let mean = accuracies.reduce(0, +) / Double(folds)
        // The standard error of the mean over folds: how far apart two settings must be to mean anything.
        let spread = (accuracies.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(1, folds - 1))).squareRoot() / Double(folds).squareRoot()
        if json {
            let fields: [(String, JSON)] = [
                ("train_examples", .integer(examples.count)), ("labels", .integer(labels.count)), ("features", .string(features.kind.rawValue)),
                ("folds", .integer(folds)), ("fold_accuracy_in_scope", .array(accuracies.map { .number($0) })),
                ("accuracy_in_scope", .number(mean)), ("standard_error", .number(spread)),
                ("epochs", .integer(options.epochs)), ("loss", .string(options.loss.rawValue)), ("seconds", .number(seconds)),
            ]
            OutputStream.standardOutput.write(JSON.object(fields).rendered() + "\n")
            return
        }
        var text = "centralized: \(folds)-fold cross-validation of \(examples.count) examples, \(labels.count) intents, \(features.kind.rawValue) features\n"
        text += "  in-scope accuracy per fold: " + accuracies.map { String(format: "%.4f", $0) }.joined(separator: " ") + "\n"
        text += String(format: "  mean %.4f (standard error %.4f), %.1f s\n", mean, spread, seconds)
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
