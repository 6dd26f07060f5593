import Foundation
import SigiloCLI
import SigiloCrypto

/// `sigilo-tenant embed`: every stored message through the tenant model's
/// encoder, once. `import` does the same for what it stored, and rounds,
/// `personalise` and the live service embed what is still missing, so this
/// command is for catching up ahead of time (after a new encoder arrived with
/// the plan, say) or finishing an interrupted import.
enum EmbedCommand {
    static let spec = CommandSpec(
        name: "embed",
        summary: "Compute and keep (sealed) the encoder embedding of every stored message that has none yet.",
        usage: "sigilo-tenant embed --state DIR --key-file FILE [--encoder PATH]",
        options: TenantTool.storeOptions + [
            TenantTool.encoderOption,
        ],
        discussion: """
        Only for a tenant whose model (its newest cached global model, else its plan) reads encoder or both features; the encoder is
        the one that model names, checked by digest. Each batch is committed as it is done: an interrupted run loses at most one
        batch, and running it again continues. Embeddings of another encoder are deleted. An embedding is deleted with its message
        (erasure, withdrawn consent, expiry). Exit codes: 0 done, 66 the model reads hashed features only, or its encoder is missing.
        """)

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let store = try TenantTool.openStore(args)
        guard let stored = try StoredFeatures.forTenantModel(store, encoderPath: args.string("encoder")) else {
            throw CLIError(.noInput, "embed: the tenant's model reads hashed features (or there is no model or plan yet): nothing to embed")
        }
        let count = try embed(stored)
        let coverage = try store.embeddingCoverage(encoder: stored.extractor.configuration.encoderDigest)
        OutputStream.standardOutput.write("embedded \(count) messages; \(coverage.embedded) of \(coverage.messages) stored messages have an embedding of encoder "
                                          + "\(Hex.encode(stored.extractor.configuration.encoderDigest).prefix(16))…\n")
    }

    /// Embeds what is missing, reporting progress on standard error every few seconds.
    static func embed(_ stored: StoredFeatures) throws -> Int {
        let started = Date()
        var lastReport = started
        return try stored.embedMissing { done, total in
            let now = Date()
            guard now.timeIntervalSince(lastReport) >= 2 || done == total else { return }
            if done == total, now.timeIntervalSince(started) < 2 { return } // short work needs no progress lines
            lastReport = now
            printError(String(format: "embedding: %d of %d messages (%.0f/s)", done, total, Double(done) / max(now.timeIntervalSince(started), 1e-3)))
        }
    }

    /// After an import: the new messages embedded when the model reads encoder features.
    /// The messages are stored whatever happens here; a missing encoder is reported, not fatal.
    static func afterImport(_ store: TenantStore) {
        do {
            guard let stored = try StoredFeatures.forTenantModel(store) else { return }
            let count = try embed(stored)
            if count > 0 { printError("embedded \(count) messages for the model's encoder") }
        } catch {
            printError("warning: messages stored but not embedded (\(error)); the next round, personalise or 'sigilo-tenant embed' embeds them")
        }
    }
}
