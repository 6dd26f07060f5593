import Foundation
import SigiloCLI

/// `sigilo-eval sweep`: the privacy-utility trade-off, one federated run per
/// epsilon (and one without noise), with each tenant's gains.
enum SweepCommand {
    static let spec = CommandSpec(
        name: "sweep",
        summary: "Privacy-utility sweep: federated runs over several epsilons, global accuracy and per-tenant gains against epsilon.",
        usage: "sigilo-eval sweep --train FILE --test FILE [--epsilons 1,2,4,8,16,none] [options]",
        options: FederatedData.options + SimulationSettings.options.filter { !["epsilon", "noise-multiplier", "no-dp"].contains($0.name) } + [
            .value("epsilons", "LIST", "Comma-separated epsilons; \"none\" is the non-private run (default 1,2,4,8,16,none)."),
            .value("report", "DIR", "Write sweep.md, sweep.svg and sweep.json into DIR."),
            .flag("json", "Print one JSON object."),
        ],
        discussion: """
        Every run uses the same split, seed and settings; only the noise changes, and with it the recommended schedule
        unless --rounds, --sample-rate and --server-learning-rate are given.
        """ + "\n\n" + SimulationSettings.scheduleHelp)

    struct Row {
        var epsilon: Double?
        var settings: SimulationSettings
        var run: SimulationResult
        var tenants: [TenantOutcome]
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let json = args.flag("json")
        let base = try SimulationSettings.parse(args)
        var epsilons = [Double?]()
        for item in (args.string("epsilons") ?? "1,2,4,8,16,none").split(separator: ",") {
            if item == "none" { epsilons.append(nil); continue }
            guard let e = Double(item), e > 0, e.isFinite else { throw CLIError.usage("sweep: --epsilons takes positive numbers or none, got \"\(item)\"") }
            epsilons.append(e)
        }
        guard !epsilons.isEmpty else { throw CLIError.usage("sweep: --epsilons is empty") }
        let data = try FederatedData.load(args)
        let central = FederatedCommand.centralisedReference(data, seed: base.seed)
        var rows = [Row]()
        for (i, epsilon) in epsilons.enumerated() {
            var settings = base
            settings.epsilon = epsilon
            settings = try settings.resolved(tenants: data.tenants.count)
            if !json { printError("sweep \(i + 1)/\(epsilons.count): " + (epsilon.map { "epsilon \($0)" } ?? "no DP")) }
            let run = try FederatedSimulation.run(data, settings) { if !json { printError("    " + $0) } }
            rows.append(Row(epsilon: epsilon, settings: settings, run: run, tenants: TenantComparison.evaluate(data, global: run.model, seed: settings.seed)))
        }
        let result = JSON.object([
            ("features", .string(data.features.kind.rawValue)),
            ("centralised_accuracy_in_scope", .number(central)), ("placement", .string(base.placement.rawValue)), ("insecure_seeded_noise", .bool(base.insecureSeededNoise)),
            ("runs", .array(rows.map { row in
                let gains = TenantComparison.gains(row.tenants)
                return JSON.object([
                    ("target_epsilon", row.epsilon.map { .number($0) } ?? .null), ("epsilon", row.run.epsilon.map { .number($0) } ?? .null),
                    ("noise_multiplier", row.run.noiseMultiplier.map { .number($0) } ?? .null), ("rounds", .integer(row.settings.rounds)),
                    ("sample_rate", .number(row.settings.sampleRate)), ("server_learning_rate", .number(row.settings.serverLearningRate)),
                    ("accuracy_in_scope", .number(row.run.final.accuracyInScope)), ("accuracy", .number(row.run.final.accuracy)),
                    ("median_local_only", .number(median(row.tenants.map(\.localOnly)))), ("median_global", .number(median(row.tenants.map(\.global)))),
                    ("median_personalised", .number(median(row.tenants.map(\.personalised)))),
                    ("personalised_gain_median", .number(gains.median)), ("personalised_gain_least_data_quarter", .number(gains.leastDataQuarter)),
                    ("seconds", .number(row.run.seconds)),
                ])
            })),
        ])
        if let dir = args.string("report") { try writeReport(dir, rows: rows, central: central, settings: base, json: result) }
        if json { OutputStream.standardOutput.write(result.rendered() + "\n"); return }
        OutputStream.standardOutput.write(table(rows, central: central))
    }

    static func table(_ rows: [Row], central: Double) -> String {
        var out = "| epsilon | z | rounds, q, server lr | global in-scope | median tenant: local-only | global | personalised | personalised gain (median / least-data quarter) |\n"
        out += "|---|---|---|---|---|---|---|---|\n"
        for row in rows {
            let gains = TenantComparison.gains(row.tenants)
            out += "| " + (row.run.epsilon.map { String(format: "%.2f", $0) } ?? "none") + " | "
            out += (row.run.noiseMultiplier.map { String(format: "%.3f", $0) } ?? "-") + " | "
            out += "\(row.settings.rounds), \(row.settings.sampleRate), \(row.settings.serverLearningRate) | "
            out += String(format: "%.4f | %.4f | %.4f | %.4f | %+.1f / %+.1f points |\n", row.run.final.accuracyInScope,
                          median(row.tenants.map(\.localOnly)), median(row.tenants.map(\.global)), median(row.tenants.map(\.personalised)),
                          100 * gains.median, 100 * gains.leastDataQuarter)
        }
        return out + String(format: "\nCentralised non-private reference: %.4f in-scope.\n", central)
    }

    static func writeReport(_ path: String, rows: [Row], central: Double, settings: SimulationSettings, json: JSON) throws {
        let dir = URL(fileURLWithPath: path)
        let private_ = rows.filter { $0.epsilon != nil }.sorted { $0.epsilon! < $1.epsilon! }
        func series(_ name: String, _ value: (Row) -> Double) -> SVGChart.Series {
            SVGChart.Series(name: name, points: private_.map { (log2($0.epsilon!), value($0)) })
        }
        var lines = [series("global", { $0.run.final.accuracyInScope }),
                     series("median personalised", { median($0.tenants.map(\.personalised)) }),
                     series("median local-only", { median($0.tenants.map(\.localOnly)) })]
        if let plain = rows.first(where: { $0.epsilon == nil }), let lo = private_.first, let hi = private_.last {
            lines.append(SVGChart.Series(name: "global, no DP", points: [(log2(lo.epsilon!), plain.run.final.accuracyInScope), (log2(hi.epsilon!), plain.run.final.accuracyInScope)]))
        }
        let svg = SVGChart.lines(title: "Accuracy against epsilon (delta \(settings.delta))", xLabel: "log2(epsilon)", yLabel: "in-scope accuracy",
                                 series: lines, yRange: 0...1)
        var md = "# Sigilo privacy-utility sweep\n\n"
        if settings.insecureSeededNoise { md += "**WARNING: insecure seeded noise (simulation only): these runs are not private.**\n\n" }
        md += "C = \(settings.clip), \(settings.placement.rawValue) noise, \(settings.optimizer.rawValue); each run's schedule is in the table; "
        md += "z calibrated per epsilon with the PLD accountant.\n\n"
        md += "![sweep](sweep.svg)\n\n" + table(rows, central: central)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for (name, text) in [("sweep.md", md), ("sweep.svg", svg), ("sweep.json", json.rendered() + "\n")] {
                try Data(text.utf8).write(to: dir.appendingPathComponent(name), options: .atomic)
            }
        } catch { throw CLIError(.ioError, "cannot write the report into \(path): \(error.localizedDescription)") }
    }
}
