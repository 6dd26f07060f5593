/// Classification quality of a model on labelled examples.
public struct Metrics: Sendable, Equatable {
    public var examples: Int
    public var accuracy: Double
    /// Accuracy over examples whose true intent is not `oos`.
    public var accuracyInScope: Double
    /// Mean F1 over the true intents present in the data.
    public var macroF1: Double
    /// Share of `oos` examples predicted as `oos` (nil without `oos` examples).
    public var oosRecall: Double?
    /// Share of `oos` examples predicted `oos` or handed off for low confidence.
    public var oosRecallWithHandoff: Double?
    /// Share of all messages handed off to a human.
    public var handoffRate: Double

    /// Evaluates `model` on `data`, whose labels index `model.labels` (-1: unknown intent).
    public static func evaluate(_ model: SoftmaxModel, on data: EncodedExamples, outOfScope: String = "oos") -> Metrics {
        let oos = model.labels.firstIndex(of: outOfScope)
        var predicted = [Int](repeating: -1, count: data.count)
        var handedOff = [Bool](repeating: false, count: data.count)
        var scratch = [Float](repeating: 0, count: model.labelCount)
        for r in 0..<data.count {
            let prediction = model.predict(data.features.row(r), top: 1, scratch: &scratch)
            predicted[r] = prediction.label
            handedOff[r] = prediction.decision == .handoff
        }
        return score(predicted: predicted, gold: data.labels.map(Int.init), handedOff: handedOff,
                     labelCount: model.labelCount, outOfScope: oos)
    }

    /// Metrics of given predictions (label indices; gold -1 is an unknown intent).
    public static func score(predicted: [Int], gold: [Int], handedOff: [Bool], labelCount: Int, outOfScope: Int?) -> Metrics {
        var correct = 0, inScope = 0, inScopeCorrect = 0, oosCount = 0, oosHit = 0, oosHitHandoff = 0
        var truePositive = [Int](repeating: 0, count: labelCount)
        var predictedCount = [Int](repeating: 0, count: labelCount)
        var goldCount = [Int](repeating: 0, count: labelCount)
        for i in gold.indices {
            let p = predicted[i], g = gold[i]
            let hit = p == g && g >= 0
            if hit { correct += 1; truePositive[g] += 1 }
            if p >= 0 { predictedCount[p] += 1 }
            if g >= 0 { goldCount[g] += 1 }
            if let oos = outOfScope, g == oos {
                oosCount += 1
                if p == oos { oosHit += 1 }
                if p == oos || handedOff[i] { oosHitHandoff += 1 }
            } else if g >= 0 {
                // In scope: an intent the model knows. A test intent the model
                // was never given (gold -1, e.g. "oos" for a model trained on
                // in-scope intents only) cannot be right and is not in scope.
                inScope += 1
                if hit { inScopeCorrect += 1 }
            }
        }
        var f1Sum = 0.0, f1Count = 0
        for l in 0..<labelCount where goldCount[l] > 0 {
            let precision = predictedCount[l] > 0 ? Double(truePositive[l]) / Double(predictedCount[l]) : 0
            let recall = Double(truePositive[l]) / Double(goldCount[l])
            f1Sum += precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            f1Count += 1
        }
        let n = max(1, gold.count)
        return Metrics(
            examples: gold.count,
            accuracy: Double(correct) / Double(n),
            accuracyInScope: Double(inScopeCorrect) / Double(max(1, inScope)),
            macroF1: f1Count > 0 ? f1Sum / Double(f1Count) : 0,
            oosRecall: oosCount > 0 ? Double(oosHit) / Double(oosCount) : nil,
            oosRecallWithHandoff: oosCount > 0 ? Double(oosHitHandoff) / Double(oosCount) : nil,
            handoffRate: Double(handedOff.filter { $0 }.count) / Double(n)
        )
    }
}
