import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// `sigilo-tenant classify`: one message per stdin line in, one JSON object per line out.
enum ClassifyCommand {
    static let spec = CommandSpec(
        name: "classify",
        summary: "Classify messages (one per stdin line) into intents; writes one JSON object per line.",
        usage: "sigilo-tenant classify (--model PATH | --state DIR --key-file FILE [--global]) [--top K] < messages.txt",
        options: [
            .value("model", "PATH", "Model file (models/FORMAT.md)."),
            .value("state", "DIR", "Tenant state directory: its personalised model, or else its latest cached global model."),
            .flag("global", "With --state: the latest global model even when a personalised one exists."),
            .value("key-file", "FILE", "The store key (or set SIGILO_TENANT_KEY)."),
            .value("top", "K", "How many intents to list in \"top\" (default 3)."),
            TenantTool.encoderOption,
        ],
        discussion: """
        Output: {"intent": ..., "confidence": ..., "top": [{"intent": ..., "probability": ...}], "decision": "answer"|"handoff"}.
        Messages are redacted before they are featurised. Exit codes: 0 success, 64 bad arguments, 65 invalid model file.
        """
    )

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let k = try args.int("top", range: 1...100) ?? 3
        let model: SoftmaxModel
        if let path = args.string("model") {
            guard !args.flag("global") else { throw CLIError.usage("classify: --global picks among the models in --state; it does not go with --model") }
            do { model = try ModelFile.read(from: URL(fileURLWithPath: path)) } catch let error as ModelFileError {
                throw CLIError(.dataError, "\(path): \(error.description)")
            }
        } else if args.string("state") != nil {
            let store = try TenantTool.openStore(args)
            let file: [UInt8]
            if !args.flag("global"), let personal = try store.personalModel() {
                file = personal
                printError("classifying with the " + (try PersonaliseCommand.describe(store)))
            } else if let cached = try store.latestModel() {
                file = cached.file
                printError("classifying with global model version \(cached.version)")
            } else {
                throw CLIError(.noInput, "no global model cached yet: take part in a round first, or give --model")
            }
            do { model = try ModelFile.decode(file) } catch let error as ModelFileError {
                throw CLIError(.dataError, "the stored model: \(error.description)")
            }
        } else {
            throw CLIError.usage("classify: give --model PATH or --state DIR")
        }
        let extractor: FeatureExtractor
        do { extractor = try FeatureExtractor.loading(model.features, encoderPath: args.string("encoder")) } catch {
            throw CLIError(.noInput, "classify: \(error)")
        }
        let featurizer = extractor.featurizer
        let out = OutputStream.standardOutput
        var scratch = [Float](repeating: 0, count: model.labelCount)
        let k2 = min(k, model.labelCount)
        let escaped = escapedLabels(model)
        var line = [UInt8]()
        var workspace = Featurizer.Workspace()
        func write(_ x: SparseVector) {
            let prediction = model.predict(x, top: k2, scratch: &scratch)
            line.removeAll(keepingCapacity: true)
            appendPrediction(prediction, decision: prediction.decision.rawValue, labels: escaped, to: &line)
            line += "}\n".utf8
            out.write(bytes: line)
        }
        guard extractor.encoder != nil else {
            forEachStandardInputLine { write(featurizer.features(of: $0, workspace: &workspace)) }
            return
        }
        // The encoder's throughput is in batches over every core; typed lines are answered one by one.
        let batch = isatty(0) != 0 ? 1 : 256
        var pending = [String]()
        forEachStandardInputLine { text in
            pending.append(text)
            if pending.count == batch { extractor.features(pending).forEach(write); pending.removeAll() }
        }
        extractor.features(pending).forEach(write)
    }

    /// Each label as a JSON string: escaped once, not per message (answers are built as bytes).
    static func escapedLabels(_ model: SoftmaxModel) -> [[UInt8]] {
        model.labels.map { label in var s = ""; JSON.escape(label, into: &s); return Array(s.utf8) }
    }

    /// `{"intent": ..., "confidence": ..., "top": [...], "decision": ...` of one prediction,
    /// left open for the caller's further fields and closing brace.
    static func appendPrediction(_ p: SoftmaxModel.Prediction, decision: String, labels escaped: [[UInt8]], to line: inout [UInt8]) {
        line += #"{"intent":"#.utf8
        line += escaped[p.label]
        line += #","confidence":"#.utf8
        appendProbability(p.confidence, to: &line)
        line += #","top":["#.utf8
        for (i, entry) in p.top.enumerated() {
            if i > 0 { line.append(UInt8(ascii: ",")) }
            line += #"{"intent":"#.utf8
            line += escaped[entry.label]
            line += #","probability":"#.utf8
            appendProbability(entry.probability, to: &line)
            line.append(UInt8(ascii: "}"))
        }
        line += #"],"decision":""#.utf8
        line += decision.utf8
        line.append(UInt8(ascii: "\""))
    }

    /// Probabilities with four decimals ("0.9978"): enough for a decision, stable in diffs.
    static func appendProbability(_ p: Float, to line: inout [UInt8]) {
        let scaled = min(10000, max(0, Int((Double(p) * 10000).rounded())))
        line.append(UInt8(ascii: scaled == 10000 ? "1" : "0"))
        line.append(UInt8(ascii: "."))
        let fraction = scaled % 10000
        for divisor in [1000, 100, 10, 1] { line.append(UInt8(ascii: "0") + UInt8(fraction / divisor % 10)) }
    }
}
