import Foundation
import SigiloCLI

/// `sigilo-eval synth`: writes the synthetic multi-tenant demo data set.
enum SynthCommand {
    static let spec = CommandSpec(
        name: "synth",
        summary: "Write a clearly synthetic multi-tenant Portuguese conversation set (one JSONL file per tenant).",
        usage: "sigilo-eval synth --out DIR [--tenants N] [--seed S] [--holdout N]",
        options: [
            .value("out", "DIR", "Directory to write into (created if missing)."),
            .value("tenants", "N", "Number of tenants, businesses assigned in turn (default 5)."),
            .value("seed", "S", "Seed: the same seed writes the same files (default 1)."),
            .value("holdout", "N", "Labelled held-out messages written to holdout.jsonl (default 1000)."),
            .value("customers", "N", "Customers per tenant (default: 60 to 140, varying by tenant)."),
        ],
        discussion: """
        Tenant lines: {"id","customer","text","intent","consent","time"}; holdout lines: {"text","intent"}.
        Every name, number and address is invented; customer ids start with "sint-".
        """
    )

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let out = try args.required("out")
        let tenants = try args.int("tenants", range: 1...1000) ?? 5
        let seed = UInt64(try args.int("seed", range: 0...Int.max) ?? 1)
        let holdout = try args.int("holdout", range: 0...1_000_000) ?? 1000
        let customers = try args.int("customers", range: 1...1_000_000).map { $0...$0 } ?? 60...140
        let directory = URL(fileURLWithPath: out)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw CLIError(.ioError, "cannot create \(out): \(error.localizedDescription)")
        }
        var corpus = SyntheticCorpus(seed: seed)
        var summary = [String]()
        for tenant in corpus.tenants(tenants, customersPerTenant: customers) {
            var text = ""
            for m in tenant.messages {
                JSON.object([
                    ("id", .string(m.id)), ("customer", .string(m.customer)), ("text", .string(m.text)),
                    ("intent", .string(m.intent)), ("consent", .bool(m.consent)), ("time", .string(m.time)),
                ]).render(into: &text)
                text += "\n"
            }
            try write(text, to: directory.appendingPathComponent("\(tenant.name).jsonl"))
            let customers = Set(tenant.messages.map(\.customer)).count
            summary.append("  \(tenant.name).jsonl: \(tenant.messages.count) messages, \(customers) customers")
        }
        if holdout > 0 {
            var text = ""
            for record in corpus.heldOut(holdout) {
                JSON.object([("text", .string(record.text)), ("intent", .string(record.intent))]).render(into: &text)
                text += "\n"
            }
            try write(text, to: directory.appendingPathComponent("holdout.jsonl"))
            summary.append("  holdout.jsonl: \(holdout) labelled messages over \(SyntheticCorpus.allIntents.count) intents")
        }
        printError("synthetic data (invented, not real customers) written to \(out):\n" + summary.joined(separator: "\n"))
    }

    static func write(_ text: String, to url: URL) throws {
        do { try Data(text.utf8).write(to: url, options: .atomic) } catch {
            throw CLIError(.ioError, "cannot write \(url.path): \(error.localizedDescription)")
        }
    }
}
