import Foundation
import SigiloCLI
import SigiloModel
import SigiloText

/// A model ready to answer messages, and what it was made from.
final class ServingModel: Sendable {
    /// What the store held when this model was loaded: a different identity means a new model.
    struct Identity: Equatable, Sendable {
        var globalVersion: UInt64?
        var personalCreatedAt: Double?
    }

    let identity: Identity
    let model: SoftmaxModel
    /// Hashed n-grams, or the model's encoder (loaded once and shared by the models that read it).
    let extractor: FeatureExtractor
    var featurizer: Featurizer { extractor.featurizer }
    /// "global 3" or "personalised from global 3".
    let name: String
    /// Each label as a JSON string (`ClassifyCommand.escapedLabels`).
    let escapedLabels: [[UInt8]]

    init(model: SoftmaxModel, extractor: FeatureExtractor, identity: Identity, name: String) {
        self.model = model
        self.extractor = extractor
        self.identity = identity
        self.name = name
        escapedLabels = ClassifyCommand.escapedLabels(model)
    }

    /// What the store holds now, without unsealing or decoding anything.
    static func identity(in store: TenantStore) throws -> Identity {
        Identity(globalVersion: try store.latestModelVersion(), personalCreatedAt: try store.personalModelOrigin()?.createdAt)
    }

    /// The personalised model's file when there is one, else the newest global one's; nil when there is neither.
    static func storedFile(in store: TenantStore) throws -> (file: [UInt8], name: String)? {
        if let personal = try store.personalModel(), let origin = try store.personalModelOrigin() {
            return (personal, "personalised from global \(origin.globalVersion)")
        }
        return try store.latestModel().map { ($0.file, "global \($0.version)") }
    }

    /// Decodes a stored model file. `identity` is what the caller read of the store (a model newer than it
    /// is found at the next change). A model that reads encoder features takes `previous`'s encoder when it
    /// is the same one (by digest), else loads its own (`encoderPath`, default the shipped one), digest checked.
    convenience init(file: [UInt8], name: String, identity: Identity, previous: ServingModel?, encoderPath: String?) throws {
        let model: SoftmaxModel
        do { model = try ModelFile.decode(file) } catch let error as ModelFileError {
            throw CLIError(.dataError, "the stored model (\(name)): \(error.description)")
        }
        let extractor: FeatureExtractor
        do {
            let shared = previous?.extractor.encoder.flatMap { try? FeatureExtractor(model.features, encoder: $0) }
            extractor = try shared ?? FeatureExtractor.loading(model.features, encoderPath: encoderPath)
        } catch {
            throw CLIError(.noInput, "the stored model (\(name)) reads \(model.features.kind.rawValue) features: \(error)")
        }
        self.init(model: model, extractor: extractor, identity: identity, name: name)
    }

    /// Why a message goes to a human, strongest first.
    enum HandoffReason: String, Sendable {
        case askedForHuman = "customer_asked_for_human"
        case sensitiveData = "sensitive_data"
        case lowConfidence = "low_confidence"
    }

    /// Personal data that an attendant, not the agent, should handle. A URL alone is not.
    static let sensitiveKinds: Set<PersonalDataKind> = [.cpf, .cnpj, .phone, .email, .card, .cep]

    struct Answer {
        var prediction: SoftmaxModel.Prediction
        var reason: HandoffReason?
        /// The text as stored: redacted.
        var redacted: String
        /// The encoder's centred embedding of `redacted`, kept with the message (encoder features only).
        var embedding: [Float]?
    }

    /// Per-thread scratch space, so answering allocates only what it returns.
    struct Scratch {
        var workspace = Featurizer.Workspace()
        var scores = [Float]()
        /// Time spent in the encoder's forward pass (encoder features only), added up across calls.
        var encoderNanoseconds: UInt64 = 0
    }

    /// Classifies raw messages, in order: each is redacted first, then featurised.
    /// The encoder, when the model reads it, embeds them in one call (several
    /// messages spread over every core; one stays on the caller's thread).
    func answers(_ texts: [String], top k: Int, scratch: inout Scratch) -> [Answer] {
        let redactions = texts.map { featurizer.redactor.redactWithCounts($0) }
        let started = DispatchTime.now().uptimeNanoseconds
        let embeddings = extractor.encoder?.features(redactions.map(\.0), parallel: texts.count > 1)
        if embeddings != nil { scratch.encoderNanoseconds += DispatchTime.now().uptimeNanoseconds - started }
        if scratch.scores.count != model.labelCount { scratch.scores = [Float](repeating: 0, count: model.labelCount) }
        return redactions.indices.map { i in
            let (redacted, found) = redactions[i]
            var x = model.features.kind.usesHashes
                ? featurizer.featuresOfNormalized(featurizer.normalizer.normalizedUTF8(redacted), workspace: &scratch.workspace) : SparseVector()
            if let embedding = embeddings?[i] { extractor.append(embedding, to: &x) }
            let prediction = model.predict(x, top: min(k, model.labelCount), scratch: &scratch.scores)
            let reason: HandoffReason? =
                model.handoffLabels.contains(prediction.label) ? .askedForHuman
                : found.keys.contains(where: Self.sensitiveKinds.contains) ? .sensitiveData
                : prediction.confidence < model.handoffThreshold ? .lowConfidence
                : nil
            return Answer(prediction: prediction, reason: reason, redacted: redacted, embedding: embeddings?[i])
        }
    }

    /// One answer as a JSON object, in the fields `classify` writes plus `reason` and `message_id`.
    func render(_ answer: Answer, messageID: String, into line: inout [UInt8]) {
        ClassifyCommand.appendPrediction(answer.prediction, decision: answer.reason == nil ? "answer" : "handoff", labels: escapedLabels, to: &line)
        line += #","reason":"#.utf8
        if let reason = answer.reason { line += "\"\(reason.rawValue)\"".utf8 } else { line += "null".utf8 }
        line += #","message_id":"#.utf8
        var id = ""
        JSON.escape(messageID, into: &id)
        line += id.utf8
        line.append(UInt8(ascii: "}"))
    }
}

/// The model in use. Requests take a reference under a lock held for a
/// pointer copy; a new model is decoded beside it and swapped in the same
/// way, so no request waits for a load or sees half a model.
final class ModelSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var model: ServingModel?
    private var swapped = 0

    var current: ServingModel? { lock.withLock { model } }
    /// Models taken up since the service started (the first load included).
    var swaps: Int { lock.withLock { swapped } }

    func swap(to new: ServingModel?) {
        lock.withLock {
            model = new
            swapped += 1
        }
    }
}
