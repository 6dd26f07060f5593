import Foundation
import SigiloText

/// Labelled texts turned into features once, ready for training and evaluation.
public struct EncodedExamples: Sendable {
    public var features: FeatureMatrix
    /// Index into the model's labels, or -1 for an intent the model does not know.
    public var labels: [Int32]

    public init(texts: [String], intents: [String], labels: [String], featurizer: Featurizer) {
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, Int32($0)) })
        var workspace = Featurizer.Workspace()
        features = FeatureMatrix(texts.lazy.map { featurizer.features(of: $0, workspace: &workspace) })
        self.labels = intents.map { index[$0] ?? -1 }
    }

    /// Examples with the features `extractor` makes (`centredEmbeddings`:
    /// the encoder's part, computed elsewhere, say a cache).
    public init(texts: [String], intents: [String], labels: [String], extractor: FeatureExtractor, centredEmbeddings: [[Float]]? = nil) {
        self.init(vectors: extractor.features(texts, centredEmbeddings: centredEmbeddings), intents: intents, labels: labels)
    }

    /// Examples of feature vectors made elsewhere (say from embeddings kept in a store).
    public init(vectors: [SparseVector], intents: [String], labels: [String]) {
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, Int32($0)) })
        features = FeatureMatrix(vectors)
        self.labels = intents.map { index[$0] ?? -1 }
    }

    init(features: FeatureMatrix, labels: [Int32]) {
        self.features = features
        self.labels = labels
    }

    public var count: Int { labels.count }

    public func subset(_ rows: [Int]) -> EncodedExamples {
        EncodedExamples(features: features.subset(rows), labels: rows.map { labels[$0] })
    }
}

/// Centralised training of an intent classifier, calibration included.
public enum IntentTraining {
    /// Labels that mean "a human should take this" when present in the data.
    public static let defaultHandoffIntents: Set<String> = ["oos", "falar_com_humano"]

    /// Trains on `train`, then fits the temperature and the hand-off threshold on
    /// `validation`. Without validation data, 10% of `train` (chosen by `seed`)
    /// is held out to calibrate a first model, and the final model is retrained
    /// on all of `train` with the fitted calibration.
    public static func fit(train: EncodedExamples, validation: EncodedExamples?, labels: [String],
                           features: FeatureConfiguration, options: TrainingOptions,
                           handoffIntents: Set<String> = defaultHandoffIntents,
                           progress: ((String) -> Void)? = nil) -> SoftmaxModel {
        let handoff = labels.indices.filter { handoffIntents.contains(labels[$0]) }
        let blank = SoftmaxModel(features: features, labels: labels, handoffLabels: handoff)
        let known = train.labels.indices.filter { train.labels[$0] >= 0 }
        let usable = known.count == train.count ? train : train.subset(known)

        if let validation {
            var model = SoftmaxTrainer.train(usable.features, labels: usable.labels, model: blank, options: options) {
                progress?("epoch \($0)/\(options.passes)")
            }
            calibrate(&model, on: validation)
            return model
        }
        var rng = SplitMix64(seed: options.seed ^ 0x5eed_ca1b)
        var rows = Array(0..<usable.count)
        rows.shuffle(using: &rng)
        let held = max(1, usable.count / 10)
        let calibrationSet = usable.subset(Array(rows[0..<held]).sorted())
        let fitSet = usable.subset(Array(rows[held...]).sorted())
        progress?("calibration model on \(fitSet.count) examples, \(held) held out")
        var first = SoftmaxTrainer.train(fitSet.features, labels: fitSet.labels, model: blank, options: options)
        calibrate(&first, on: calibrationSet)
        progress?("final model on all \(usable.count) examples")
        var model = SoftmaxTrainer.train(usable.features, labels: usable.labels, model: blank, options: options) {
            progress?("epoch \($0)/\(options.passes)")
        }
        model.temperature = first.temperature
        model.handoffThreshold = first.handoffThreshold
        return model
    }

    /// Fits the temperature, then the hand-off threshold, on held-out examples.
    public static func calibrate(_ model: inout SoftmaxModel, on heldOut: EncodedExamples) {
        var logits = [[Float]]()
        var gold = [Int]()
        var scratch = [Float](repeating: 0, count: model.labelCount)
        for r in 0..<heldOut.count where heldOut.labels[r] >= 0 {
            model.logits(heldOut.features.row(r), into: &scratch)
            logits.append(scratch)
            gold.append(Int(heldOut.labels[r]))
        }
        guard !logits.isEmpty else { return }
        model.temperature = Calibration.fitTemperature(logits: logits, labels: gold)
        let handoff = Set(model.handoffLabels)
        let outcomes = zip(logits, gold).map { z, y -> Calibration.Outcome in
            var p = z
            SoftmaxModel.softmax(&p, temperature: model.temperature)
            let best = p.indices.max { p[$0] < p[$1] }!
            return Calibration.Outcome(confidence: p[best], correct: best == y,
                                       predictedHandoff: handoff.contains(best), goldHandoff: handoff.contains(y))
        }
        model.handoffThreshold = Calibration.handoffThreshold(outcomes)
    }
}
