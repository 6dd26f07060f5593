import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// `sigilo-eval evaluate`: scores a saved model on labelled data.
enum EvaluateCommand {
    static let spec = CommandSpec(
        name: "evaluate",
        summary: "Evaluate a model file on labelled JSON Lines data.",
        usage: "sigilo-eval evaluate --model PATH --test FILE [--json]",
        options: [.value("model", "PATH", "Model file (models/FORMAT.md)."), .value("test", "FILE", "Labelled data {\"text\",\"intent\"}."),
                  .flag("json", "Print one JSON object.")])

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("model")
        let model: SoftmaxModel
        do { model = try ModelFile.read(from: URL(fileURLWithPath: path)) } catch let e as ModelFileError {
            throw CLIError(.dataError, "\(path): \(e.description)")
        }
        let test = try LabeledExample.load(try args.required("test"))
        let data = EncodedExamples(texts: test.map(\.text), intents: test.map(\.intent), labels: model.labels, featurizer: Featurizer(model.features))
        let m = Metrics.evaluate(model, on: data)
        if args.flag("json") {
            var fields: [(String, JSON)] = [("accuracy", .number(m.accuracy)), ("accuracy_in_scope", .number(m.accuracyInScope)),
                                            ("macro_f1", .number(m.macroF1)), ("examples", .integer(m.examples)), ("handoff_rate", .number(m.handoffRate))]
            if let oos = m.oosRecall { fields.append(("oos_recall", .number(oos))) }
            OutputStream.standardOutput.write(JSON.object(fields).rendered() + "\n")
        } else {
            OutputStream.standardOutput.write(String(format: "accuracy %.4f, in-scope %.4f, macro-F1 %.4f on %d examples\n", m.accuracy, m.accuracyInScope, m.macroF1, m.examples))
        }
    }
}
