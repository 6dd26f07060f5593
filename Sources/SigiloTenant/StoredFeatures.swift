import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// Feature vectors of stored messages for one model's extractor. With
/// encoder features, a message's embedding is read from the store when kept
/// and otherwise computed (batched over every core) and kept, so each message
/// goes through the encoder once whatever reads it: rounds, personalise, the
/// live service's feedback.
struct StoredFeatures {
    let extractor: FeatureExtractor
    let store: TenantStore

    func features(_ messages: [TenantStore.StoredMessage]) throws -> [SparseVector] {
        let texts = messages.map(\.text)
        guard let digest = extractor.encoderDigest else { return extractor.features(texts) }
        var embeddings = try store.embeddings(of: messages.map(\.handle), encoder: digest)
        let missing = embeddings.indices.filter { embeddings[$0] == nil }
        let computed = try embedAndKeep(missing.map { (messages[$0].handle, texts[$0]) }, encoder: digest)
        for (i, embedding) in zip(missing, computed) { embeddings[i] = embedding }
        return extractor.features(texts, centredEmbeddings: embeddings.map { $0! })
    }

    /// Embeds stored messages (handle, redacted text), batched over every core, and keeps the
    /// embeddings in one transaction; returns them in order.
    @discardableResult
    private func embedAndKeep(_ messages: [(handle: [UInt8], text: String)], encoder digest: [UInt8]) throws -> [[Float]] {
        guard !messages.isEmpty, let encoder = extractor.encoder else { return [] }
        let computed = encoder.features(messages.map { extractor.encoderInput($0.text) })
        try store.database.transaction {
            try store.saveEmbeddings(zip(messages, computed).map { ($0.handle, $1) }, encoder: digest)
        }
        return computed
    }

    /// Embeds every stored message that has no embedding of this encoder yet,
    /// in batches each committed on its own: an interrupted run loses at most
    /// one batch, and the next picks up where it stopped. Embeddings of any
    /// other encoder are deleted first. Returns how many were embedded.
    @discardableResult
    func embedMissing(batch: Int = 512, progress: (_ done: Int, _ total: Int) -> Void = { _, _ in }) throws -> Int {
        guard let digest = extractor.encoderDigest else { return 0 }
        try store.deleteEmbeddings(notOf: digest)
        let coverage = try store.embeddingCoverage(encoder: digest)
        let total = coverage.messages - coverage.embedded
        var done = 0
        while true {
            let pending = try store.messagesWithoutEmbedding(encoder: digest, limit: batch)
            if pending.isEmpty { break }
            try embedAndKeep(pending.map { ($0.message, $0.text) }, encoder: digest)
            done += pending.count
            progress(done, max(total, done))
        }
        return done
    }

    /// The extractor of the model this tenant works with (its newest cached
    /// global model, else the cached plan's), when that model reads encoder
    /// features; nil when it reads hashed features or there is none yet.
    static func forTenantModel(_ store: TenantStore, encoderPath: String? = nil) throws -> StoredFeatures? {
        var configuration: FeatureConfiguration?
        if let cached = try store.latestModel() {
            do { configuration = try ModelFile.decode(cached.file).features } catch let error as ModelFileError {
                throw CLIError(.dataError, "cached model \(cached.version): \(error.description)")
            }
        } else if let plan = try TenantTool.cachedPlan(store) {
            configuration = plan.featureConfiguration
        }
        guard let configuration, configuration.kind.usesEncoder else { return nil }
        do { return StoredFeatures(extractor: try FeatureExtractor.loading(configuration, encoderPath: encoderPath), store: store) } catch {
            throw CLIError(.noInput, "the tenant's model reads \(configuration.kind.rawValue) features: \(error)")
        }
    }
}
