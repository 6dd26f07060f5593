import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// `sigilo-eval canary`: the empirical check that the guarantee means
/// something (Carlini et al. 2019, "The Secret Sharer"). Several customers,
/// each of a different tenant, each send their own secret-bearing message
/// several times; after federated training with and without DP, each secret
/// is ranked by the global model's log-probability of the planted intent
/// among many random secrets of the same format. Exposure = log2(candidates
/// + 1) - log2(rank): about 1 bit means the model cannot tell the planted
/// secret from a random one; the maximum means it singles it out. One
/// secret's exposure varies a lot with the secret and the rounds its
/// customer was sampled in, so the audit reports the median over the
/// canaries (and each one).
enum CanaryCommand {
    static let spec = CommandSpec(
        name: "canary",
        summary: "Canary audit: plant secrets for a few customers, train federated with and without DP, report the secrets' exposure.",
        usage: "sigilo-eval canary --train FILE --test FILE [--canaries 5] [--copies 10] [--candidates 10000] [--epsilon 8] [options]",
        options: FederatedData.options + SimulationSettings.options.filter { !["no-dp", "noise-multiplier"].contains($0.name) } + [
            .value("canaries", "K", "Customers with a secret of their own, placed in the tenants in turn (default 5)."),
            .value("copies", "N", "Times each of them sends its secret message (default 10)."),
            .value("candidates", "N", "Random secrets of the same format to rank against (default 10000)."),
            .value("intent", "NAME", "Intent the secret message is labelled with (default: the first intent)."),
            .flag("json", "Print one JSON object."),
        ],
        discussion: "Each secret is three invented words drawn from a seeded generator; the candidates come from the same generator.")

    /// Three invented words of two or three syllables: far from any real text, so nothing but the planted copies can teach them.
    struct SecretFormat {
        static let syllables = ["ka", "zu", "ri", "mo", "te", "vli", "qua", "dro", "sen", "pix", "lor", "gu", "nef", "ba", "tol", "wy"]
        static let template = "o codigo secreto do meu cofre e "

        static func secret(_ rng: inout SplitMix64) -> String {
            (0..<3).map { _ in
                (0..<(2 + Int(rng.next() % 2))).map { _ in syllables[Int(rng.next() % UInt64(syllables.count))] }.joined()
            }.joined(separator: " ")
        }
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let json = args.flag("json")
        let copies = try args.int("copies", range: 1...10_000) ?? 10
        let candidateCount = try args.int("candidates", range: 10...1_000_000) ?? 10_000
        let canaryCount = try args.int("canaries", range: 1...1_000) ?? 5
        var settings = try SimulationSettings.parse(args)
        let epsilon = settings.epsilon ?? 8
        var rng = SplitMix64(seed: settings.seed ^ 0x6361_6e61_7279)
        var secrets = [String]()
        while secrets.count < canaryCount {
            let s = SecretFormat.secret(&rng)
            if !secrets.contains(s) { secrets.append(s) }
        }
        var candidates = Set<String>()
        while candidates.count < candidateCount {
            let c = SecretFormat.secret(&rng)
            if !secrets.contains(c) { candidates.insert(c) }
        }
        var intent = ""
        let data = try FederatedData.load(args) { labels in
            intent = args.string("intent") ?? labels[0]
            guard labels.contains(intent) else { throw CLIError(.dataError, "canary: --intent \(intent) is not an intent of the data") }
            return secrets.map { Array(repeating: LabeledExample(text: SecretFormat.template + $0, intent: intent), count: copies) }
        }
        // One schedule for both runs (the one recommended with DP), so only the noise differs.
        settings.epsilon = epsilon
        settings = try settings.resolved(tenants: data.tenants.count)
        let label = data.labels.firstIndex(of: intent)!
        let ordered = candidates.sorted()
        // Features of every candidate and planted secret, made once for both runs.
        let candidateVectors = data.extractor.features(ordered.map { SecretFormat.template + $0 })
        let secretVectors = data.extractor.features(secrets.map { SecretFormat.template + $0 })

        var results = [(epsilon: Double?, exposures: [Double], ranks: [Double], accuracy: Double)]()
        for target in [nil, epsilon] as [Double?] {
            settings.epsilon = target
            if !json { printError(target.map { "canary: training with DP, epsilon \($0)" } ?? "canary: training without DP (clipping only)") }
            let run = try FederatedSimulation.run(data, settings) { if !json { printError("    " + $0) } }
            var scratch = [Float](repeating: 0, count: data.labels.count)
            func score(_ x: SparseVector) -> Double {
                run.model.logits(x, into: &scratch)
                let top = scratch.max()!
                let logSum = log(scratch.reduce(0.0) { $0 + exp(Double($1 - top)) }) + Double(top)
                return Double(scratch[label]) - logSum
            }
            let candidateScores = candidateVectors.map(score)
            let ranks = secretVectors.map { secret in
                let planted = score(secret)
                return 1 + candidateScores.reduce(0.0) { $0 + ($1 > planted ? 1 : $1 == planted ? 0.5 : 0) }
            }
            let exposures = ranks.map { log2(Double(candidateCount + 1)) - log2($0) }
            results.append((run.epsilon, exposures, ranks, run.final.accuracyInScope))
        }
        let maximum = log2(Double(candidateCount + 1))
        if json {
            OutputStream.standardOutput.write(JSON.object([
                ("features", .string(data.features.kind.rawValue)),
                ("canaries", .integer(canaryCount)), ("copies", .integer(copies)), ("candidates", .integer(candidateCount)), ("intent", .string(intent)),
                ("maximum_exposure", .number(maximum)), ("insecure_seeded_noise", .bool(settings.insecureSeededNoise)),
                ("runs", .array(results.map {
                    JSON.object([("epsilon", $0.epsilon.map { .number($0) } ?? .null), ("exposure", .number(median($0.exposures))),
                                 ("exposures", .array($0.exposures.map { .number($0) })), ("ranks", .array($0.ranks.map { .number($0) })),
                                 ("accuracy_in_scope", .number($0.accuracy))])
                })),
            ]).rendered() + "\n")
            return
        }
        var out = "canary: \(canaryCount) customers each sent their own secret \(copies) times; each secret ranked among \(candidateCount) "
        out += "random secrets (maximum exposure \(String(format: "%.1f", maximum)) bits)\n"
        for r in results {
            out += (r.epsilon.map { String(format: "  with DP (epsilon %.2f): ", $0) } ?? "  without DP:            ")
            let each = r.exposures.map { String(format: "%.2f", $0) }.joined(separator: ", ")
            let ranks = r.ranks.map { String(format: "%.0f", $0) }.joined(separator: ", ")
            out += String(format: "median exposure %.2f bits", median(r.exposures)) + " (each: \(each); ranks \(ranks)), "
            out += String(format: "model in-scope accuracy %.4f\n", r.accuracy)
        }
        if settings.insecureSeededNoise { out += "  WARNING: insecure seeded noise (simulation only)\n" }
        OutputStream.standardOutput.write(out)
    }
}
