import Foundation
import Testing
@testable import SigiloModel
import SigiloText

@Suite struct TrainingTests {
    static let texts = [
        "oi tudo bem", "bom dia", "boa tarde pessoal", "ola", "oi oi",
        "quero cancelar meu plano", "cancela por favor", "como cancelo", "desejo cancelar", "cancelar assinatura",
        "cade meu pedido", "meu pedido nao chegou", "status do pedido", "pedido atrasado", "onde esta o pedido",
    ]
    static let intents = Array(repeating: "saudacao", count: 5) + Array(repeating: "cancelar", count: 5)
        + Array(repeating: "status_pedido", count: 5)
    static let labels = ["cancelar", "saudacao", "status_pedido"]
    static let features = FeatureConfiguration(bucketBits: 10)

    static func data() -> EncodedExamples {
        EncodedExamples(texts: texts, intents: intents, labels: labels, featurizer: Featurizer(features))
    }

    @Test(arguments: TrainingLoss.allCases)
    func learnsAndGeneralisesOnATinyTask(_ loss: TrainingLoss) {
        let data = Self.data()
        let model = SoftmaxTrainer.train(data.features, labels: data.labels,
                                         model: SoftmaxModel(features: Self.features, labels: Self.labels),
                                         options: TrainingOptions(loss: loss, epochs: 30))
        #expect(Metrics.evaluate(model, on: data).accuracy == 1)
        let unseen = EncodedExamples(texts: ["oi bom dia", "quero cancelar", "meu pedido"],
                                     intents: ["saudacao", "cancelar", "status_pedido"],
                                     labels: Self.labels, featurizer: Featurizer(Self.features))
        #expect(Metrics.evaluate(model, on: unseen).accuracy == 1)
    }

    /// A plan's rename keeps every answer; a merge (the mean of the merged classes) answers the merged
    /// intent for what either source meant, before any round has trained it.
    @Test func renamedAndMergedModelsAnswerAsTheOldOneDid() {
        let data = Self.data()
        let model = SoftmaxTrainer.train(data.features, labels: data.labels, model: SoftmaxModel(features: Self.features, labels: Self.labels),
                                         options: TrainingOptions(epochs: 30))
        let renamed = model.relabelled(["cancelamento", "saudacao", "status_pedido"], sources: [[0], [1], [2]], handoffIntents: [])
        let merged = model.relabelled(["saudacao", "pedido_ou_cancelamento"], sources: [[1], [0, 2]], handoffIntents: [])
        for row in 0..<data.labels.count {
            let x = data.features.row(row)
            #expect(renamed.predict(x).label == model.predict(x).label)
            #expect(merged.labels[merged.predict(x).label] == (Self.intents[row] == "saudacao" ? "saudacao" : "pedido_ou_cancelamento"), "\(Self.texts[row])")
        }
    }

    @Test func sameSeedSameModelDifferentSeedDifferentModel() {
        let data = Self.data()
        let blank = SoftmaxModel(features: Self.features, labels: Self.labels)
        let a = SoftmaxTrainer.train(data.features, labels: data.labels, model: blank, options: TrainingOptions(seed: 7))
        let b = SoftmaxTrainer.train(data.features, labels: data.labels, model: blank, options: TrainingOptions(seed: 7))
        let c = SoftmaxTrainer.train(data.features, labels: data.labels, model: blank, options: TrainingOptions(seed: 8))
        #expect(a.weights == b.weights)
        #expect(a.bias == b.bias)
        #expect(a.weights != c.weights)
    }

    @Test func predictionsAreProbabilitiesSortedByConfidence() {
        let data = Self.data()
        let model = SoftmaxTrainer.train(data.features, labels: data.labels,
                                         model: SoftmaxModel(features: Self.features, labels: Self.labels),
                                         options: TrainingOptions(epochs: 10))
        let prediction = model.predict(Featurizer(Self.features).features(of: "cancelar"), top: 3)
        #expect(prediction.top.count == 3)
        #expect(prediction.top.map(\.probability) == prediction.top.map(\.probability).sorted(by: >))
        #expect(abs(prediction.top.map(\.probability).reduce(0, +) - 1) < 1e-5)
        #expect(model.labels[prediction.label] == "cancelar")
    }

    @Test func handoffByThresholdAndByLabel() {
        var model = SoftmaxModel(features: Self.features, labels: Self.labels)
        model.bias = [0, 0, 0] // uniform: confidence 1/3
        let x = SparseVector()
        #expect(model.predict(x).decision == .answer)
        model.handoffThreshold = 0.5
        #expect(model.predict(x).decision == .handoff)
        model.handoffThreshold = 0
        model.bias = [5, 0, 0]
        model.handoffLabels = [0]
        #expect(model.predict(x).decision == .handoff)
    }
}

@Suite struct CalibrationTests {
    @Test func temperatureShrinksOverconfidentLogits() {
        // Logits 10x too sharp for labels that are right 70% of the time.
        var logits = [[Float]]()
        var labels = [Int]()
        for i in 0..<1000 {
            logits.append([10, 0])
            labels.append(i % 10 < 7 ? 0 : 1)
        }
        let t = Calibration.fitTemperature(logits: logits, labels: labels)
        // Best: softmax(10/T) = 0.7  =>  T = 10 / ln(0.7/0.3).
        #expect(abs(t - 10 / Float(log(0.7 / 0.3))) < 0.05)
    }

    @Test func noErrorsLeaveTheTemperatureAlone() {
        // Every label on top: the likelihood has no minimum, so no evidence to recalibrate.
        let logits: [[Float]] = (0..<50).map { i in i % 2 == 0 ? [3, 1] : [0, 2] }
        let labels = (0..<50).map { $0 % 2 == 0 ? 0 : 1 }
        #expect(Calibration.fitTemperature(logits: logits, labels: labels) == 1)
        // One mistake gives the fit a minimum: right 50 times in 51 with margin 2, T = 2 / ln 50.
        let t = Calibration.fitTemperature(logits: logits + [[3, 1]], labels: labels + [1])
        #expect(abs(t - 2 / Float(log(50.0))) < 0.01)
    }

    @Test func thresholdSeparatesConfidentRightFromUnsureWrong() {
        let outcomes = (0..<100).map { i in
            Calibration.Outcome(confidence: i < 50 ? 0.9 : 0.3, correct: i < 50, predictedHandoff: false, goldHandoff: false)
        }
        let threshold = Calibration.handoffThreshold(outcomes)
        #expect(threshold > 0.3 && threshold <= 0.9)
    }

    @Test func withoutAMistakeTheThresholdKeepsAlmostEveryRightAnswer() {
        // 200 right answers with confidences 0.300, 0.3035, ...: the one at the 1% quantile (index 1) and above are answered.
        let outcomes = (0..<200).map { Calibration.Outcome(confidence: 0.3 + Float($0) * 0.0035, correct: true, predictedHandoff: false, goldHandoff: false) }
        let threshold = Calibration.handoffThreshold(outcomes.shuffled())
        #expect(threshold == outcomes[1].confidence)
        #expect(outcomes.filter { $0.confidence < threshold }.count == 1)
        // One mistake is something to learn from: the error-optimal rule applies again (here: answer everything).
        let withMistake = outcomes + [Calibration.Outcome(confidence: 0.9, correct: false, predictedHandoff: false, goldHandoff: false)]
        #expect(Calibration.handoffThreshold(withMistake) == 0)
    }
}

@Suite struct MetricsTests {
    @Test func scoresInScopeOutOfScopeAndMacroF1() {
        // Labels: 0 = a, 1 = b, 2 = oos.
        let m = Metrics.score(predicted: [0, 0, 1, 2, 0, 2], gold: [0, 1, 1, 2, 2, -1],
                              handedOff: [false, false, false, false, true, false], labelCount: 3, outOfScope: 2)
        #expect(m.accuracy == 3.0 / 6)
        #expect(m.accuracyInScope == 2.0 / 3) // gold a, b, b; the unknown intent is not in scope
        #expect(m.oosRecall == 0.5)
        #expect(m.oosRecallWithHandoff == 1)
        // F1: a: p 1/3 r 1 -> 0.5; b: p 1 r 1/2 -> 2/3; oos: p 1/2 r 1/2 -> 1/2.
        #expect(abs(m.macroF1 - (0.5 + 2.0 / 3 + 0.5) / 3) < 1e-12)
    }

    /// A model trained on in-scope intents only (pfl's anchor setting): test
    /// lines with "oos" are unknown to it and must not count as in-scope misses.
    @Test func unknownIntentsAreNotInScopeWithoutAnOutOfScopeLabel() {
        let m = Metrics.score(predicted: [0, 1, 1, 0], gold: [0, 1, -1, -1], handedOff: [false, false, false, false],
                              labelCount: 2, outOfScope: nil)
        #expect(m.accuracyInScope == 1)
        #expect(m.accuracy == 0.5)
    }
}
