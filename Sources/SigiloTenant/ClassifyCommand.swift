import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// `sigilo-tenant classify`: one message per stdin line in, one JSON object per line out.
enum ClassifyCommand {
    static let spec = CommandSpec(
        name: "classify",
        summary: "Classify messages (one per stdin line) into intents; writes one JSON object per line.",
        usage: "sigilo-tenant classify --model PATH [--top K] < messages.txt",
        options: [
            .value("model", "PATH", "Model file (models/FORMAT.md)."),
            .value("top", "K", "How many intents to list in \"top\" (default 3)."),
        ],
        discussion: """
        Output: {"intent": ..., "confidence": ..., "top": [{"intent": ..., "probability": ...}], "decision": "answer"|"handoff"}.
        Messages are redacted before they are featurised. Exit codes: 0 success, 64 bad arguments, 65 invalid model file.
        """
    )

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("model")
        let k = try args.int("top", range: 1...100) ?? 3
        let model: SoftmaxModel
        do { model = try ModelFile.read(from: URL(fileURLWithPath: path)) } catch let error as ModelFileError {
            throw CLIError(.dataError, "\(path): \(error.description)")
        }
        let featurizer = Featurizer(model.features)
        let out = OutputStream.standardOutput
        var scratch = [Float](repeating: 0, count: model.labelCount)
        let k2 = min(k, model.labelCount)
        // Label strings are escaped once, not per message.
        let escaped = model.labels.map { label -> String in var s = ""; JSON.escape(label, into: &s); return s }
        var line = ""
        forEachStandardInputLine { text in
            let prediction = model.predict(featurizer.features(of: text), top: k2, scratch: &scratch)
            line.removeAll(keepingCapacity: true)
            line += "{\"intent\":" + escaped[prediction.label]
            line += ",\"confidence\":" + format(prediction.confidence)
            line += ",\"top\":["
            for (i, entry) in prediction.top.enumerated() {
                if i > 0 { line += "," }
                line += "{\"intent\":" + escaped[entry.label] + ",\"probability\":" + format(entry.probability) + "}"
            }
            line += "],\"decision\":\"" + prediction.decision.rawValue + "\"}\n"
            out.write(line)
        }
    }

    /// Probabilities with four decimals: enough for a decision, stable in diffs.
    static func format(_ p: Float) -> String {
        let scaled = Int((Double(p) * 10000).rounded())
        if scaled >= 10000 { return "1" }
        let digits = String(scaled)
        return "0." + String(repeating: "0", count: 4 - digits.count) + digits
    }
}
