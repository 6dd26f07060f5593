import Foundation
import SigiloCLI

/// The Markdown report of a federated run, with its SVG charts.
enum FederatedReport {
    static func write(to path: String, data: FederatedData, settings: SimulationSettings, run: SimulationResult,
                      tenants: [TenantOutcome]?, central: Double?, json: JSON) throws {
        let dir = URL(fileURLWithPath: path)
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw CLIError(.ioError, "cannot create \(path): \(error.localizedDescription)")
        }
        var files: [(String, String)] = []
        // Rounds on whole-number ticks from 0; references as labelled dashed lines, not data.
        files.append(("accuracy.svg", SVGChart.lines(title: "Global model accuracy per round", xLabel: "round", yLabel: "in-scope accuracy",
                                                     series: [SVGChart.Series(name: "global, in-scope", points: run.history.map { (Double($0.round), $0.accuracyInScope) })],
                                                     yRange: 0...1, references: central.map { [SVGChart.Reference(name: "centralised, no DP", y: $0)] } ?? [],
                                                     integerX: true, xFrom: 0)))
        if run.epsilon != nil {
            // From nothing spent at round 0, up to the budget the noise was calibrated for.
            let spent = [(0.0, 0.0)] + run.history.compactMap { p in p.epsilon.map { (Double(p.round), $0) } }
            let budget = settings.epsilon.map { [SVGChart.Reference(name: "budget", y: $0)] } ?? []
            let top = 1.1 * max(spent.map(\.1).max() ?? 1, settings.epsilon ?? 0)
            files.append(("epsilon.svg", SVGChart.lines(title: "Privacy spent (PLD accountant, delta \(settings.delta))", xLabel: "round", yLabel: "epsilon",
                                                        series: [SVGChart.Series(name: "epsilon spent", points: spent)], yRange: 0...top,
                                                        references: budget, integerX: true, xFrom: 0)))
        }
        if let tenants {
            let ordered = tenants.sorted { $0.trainExamples < $1.trainExamples }
            files.append(("tenants.svg", SVGChart.bars(title: "Per tenant, on its own test slice (fewest training examples first)", yLabel: "in-scope accuracy",
                                                       categories: ordered.map { "t\($0.tenant)" }, notes: ordered.map { "n=\($0.trainExamples)" },
                                                       series: [SVGChart.Series(name: "local-only", points: ordered.map { (0, $0.localOnly) }),
                                                                SVGChart.Series(name: "global", points: ordered.map { (0, $0.global) }),
                                                                SVGChart.Series(name: "personalised", points: ordered.map { (0, $0.personalised) })])))
        }
        var md = "# Sigilo federated evaluation\n\n"
        if settings.insecureSeededNoise { md += "**WARNING: insecure seeded noise (simulation only): this run is not private.**\n\n" }
        md += "| setting | value |\n|---|---|\n"
        md += "| data | \(data.train.count) training messages, \(data.tenants.count) tenants, \(data.customerCount) customers, \(data.labels.count) intents, \(data.test.count) test messages |\n"
        let features = [data.features.kind.usesHashes ? "hashed features, 2^\(data.features.bucketBits) buckets" : nil,
                        data.features.kind.usesEncoder ? "encoder features, \(data.features.encoderDimension) wide" : nil].compactMap { $0 }
        md += "| model | \(features.joined(separator: " and ")), \(run.model.weights.count + run.model.bias.count) parameters |\n"
        md += "| rounds, sampling rate q, clip C | \(settings.rounds), \(settings.sampleRate), \(settings.clip) |\n"
        md += "| noise | " + (run.noiseMultiplier.map { String(format: "z = %.4f, ", $0) + "\(settings.placement.rawValue) placement" } ?? "none (non-private reference)") + " |\n"
        md += "| server optimiser | \(settings.optimizer.rawValue), learning rate \(settings.serverLearningRate) |\n"
        md += "| privacy spent | " + (run.epsilon.map { String(format: "epsilon %.3f at delta %g (PLD accountant)", $0, settings.delta) } ?? "no guarantee") + " |\n"
        md += "| bytes sent per tenant per round | \(Int(run.bytesPerTenantPerRound)) |\n"
        md += String(format: "| time | %.1f s |\n\n", run.seconds)
        md += "## Global model\n\n"
        md += String(format: "Final in-scope accuracy **%.2f%%** (all test lines %.2f%%, macro-F1 %.4f)", 100 * run.final.accuracyInScope, 100 * run.final.accuracy, run.final.macroF1)
        md += central.map { String(format: "; the centralised non-private model on the same data reaches %.2f%%.\n\n", 100 * $0) } ?? ".\n\n"
        md += run.model.handoffThreshold > 0 || run.model.temperature != 1
            ? String(format: "Calibrated on the validation data: temperature %.3f, hand-off below confidence %.3f, %.1f%% of test messages handed off.\n\n",
                     run.model.temperature, run.model.handoffThreshold, 100 * run.final.handoffRate)
            : "Not calibrated (no --val): only hand-off intents go to a human.\n\n"
        md += "![accuracy](accuracy.svg)\n\n"
        if run.epsilon != nil { md += "![epsilon](epsilon.svg)\n\n" }
        md += "| round | in-scope accuracy | epsilon |\n|---|---|---|\n"
        for p in run.history { md += String(format: "| %d | %.4f | ", p.round, p.accuracyInScope) + (p.epsilon.map { String(format: "%.3f", $0) } ?? "-") + " |\n" }
        if let tenants {
            let gains = TenantComparison.gains(tenants)
            md += "\n## Per tenant\n\nEach tenant's own test slice follows its own intent mix. Local-only trains on the tenant's data alone; "
            md += "personalised fine-tunes the global model on it (both stay at the tenant).\n\n"
            md += String(format: "Personalised minus local-only: median **%+.1f points**; median over the quarter of tenants with the least data **%+.1f points**.\n\n",
                         100 * gains.median, 100 * gains.leastDataQuarter)
            md += "![tenants](tenants.svg)\n\n| tenant | training messages | test messages | local-only | global | personalised |\n|---|---|---|---|---|---|\n"
            for o in tenants.sorted(by: { $0.trainExamples < $1.trainExamples }) {
                md += String(format: "| t%d | %d | %d | %.4f | %.4f | %.4f |\n", o.tenant, o.trainExamples, o.testExamples, o.localOnly, o.global, o.personalised)
            }
        }
        files.append(("report.md", md))
        files.append(("result.json", json.rendered() + "\n"))
        for (name, text) in files {
            do { try Data(text.utf8).write(to: dir.appendingPathComponent(name), options: .atomic) } catch {
                throw CLIError(.ioError, "cannot write \(dir.appendingPathComponent(name).path): \(error.localizedDescription)")
            }
        }
    }
}
