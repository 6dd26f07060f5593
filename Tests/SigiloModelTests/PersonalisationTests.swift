import Testing
@testable import SigiloModel
import SigiloText

@Suite struct PersonalisationTests {
    typealias T = TrainingTests
    static let featurizer = Featurizer(T.features)

    /// A tenant that has only ever seen greetings and cancellations.
    static func ownData() -> EncodedExamples {
        let greetings = ["oi tudo bem", "bom dia", "boa tarde pessoal", "ola", "oi oi", "boa noite", "oi bom dia", "ola tudo certo",
                         "e ai tudo bem", "bom dia pessoal"]
        let cancellations = ["quero cancelar meu plano", "cancela por favor", "como cancelo", "desejo cancelar", "cancelar assinatura",
                             "quero cancelar a assinatura", "cancela meu plano", "preciso cancelar", "cancelamento do plano", "cancelar agora"]
        return EncodedExamples(texts: greetings + cancellations, intents: Array(repeating: "saudacao", count: 10) + Array(repeating: "cancelar", count: 10),
                               labels: T.labels, featurizer: featurizer)
    }

    static func globalModel(intents: [String]) -> SoftmaxModel {
        let all = EncodedExamples(texts: T.texts, intents: intents, labels: T.labels, featurizer: featurizer)
        return SoftmaxTrainer.train(all.features, labels: all.labels, model: SoftmaxModel(features: T.features, labels: T.labels),
                                    options: TrainingOptions(epochs: 30))
    }

    @Test func aGoodSharedModelIsKeptAndStillKnowsIntentsTheTenantNeverSaw() {
        var progress = [String]()
        let outcome = Personalisation.fit(Self.globalModel(intents: T.intents), on: Self.ownData(), options: TrainingOptions()) { progress.append($0) }
        #expect(outcome.heldOut == 4 && outcome.folds == 5)
        // Progress after each fold, then each candidate's cross-validated accuracy.
        #expect(Array(progress.prefix(5)) == (1...5).map { "fold \($0) of 5: \(Personalisation.candidates.count) ways to use the global model tried on 4 held-out messages" })
        #expect(progress.count == 5 + Personalisation.candidates.count)
        #expect(outcome.use == .fineTune(share: 1)) // local-only ties on the tenant's own intents: the shared knowledge wins the tie
        #expect(outcome.heldOutAccuracy == 1)
        let unseen = Self.featurizer.features(of: "meu pedido atrasado")
        #expect(outcome.model.labels[outcome.model.predict(unseen).label] == "status_pedido")
        // Trained from nothing on the same data, the tenant could not name that intent.
        let local = SoftmaxTrainer.train(Self.ownData().features, labels: Self.ownData().labels,
                                         model: SoftmaxModel(features: T.features, labels: T.labels), options: TrainingOptions())
        #expect(local.labels[local.predict(unseen).label] != "status_pedido")
    }

    @Test func aNoisySharedModelIsDiscounted() {
        // Each message: its intent's keyword among words no other message uses. Fine-tuning can
        // correct the noise on the words it trains on, never on the held-out messages' own words.
        let keywords = ["cancelar": "cancela", "saudacao": "oi", "status_pedido": "pedido"]
        let intents = (0..<60).map { T.labels[$0 % 3] }
        let texts = intents.enumerated().map { i, intent in ([keywords[intent]!] + (0..<8).map { "w\(i)x\($0)" }).joined(separator: " ") }
        let own = EncodedExamples(texts: texts, intents: intents, labels: T.labels, featurizer: Self.featurizer)
        // Noise far louder than any signal, as a shared model would carry with too little privacy budget.
        var noisy = SoftmaxModel(features: T.features, labels: T.labels)
        var rng = SplitMix64(seed: 3)
        for i in noisy.weights.indices { noisy.weights[i] = Float.random(in: -50...50, using: &rng) }
        let outcome = Personalisation.fit(noisy, on: own, options: TrainingOptions())
        #expect(outcome.use == .fineTune(share: 0))
        #expect(outcome.heldOutAccuracy == 1)
        #expect(outcome.globalHeldOutAccuracy < 0.7)
    }

    @Test func addingTheSharedModelIsAVoteOfTheTwoModels() {
        let global = Self.globalModel(intents: T.intents), own = Self.ownData()
        let alone = Personalisation.train(global, .fineTune(share: 0), on: own, options: TrainingOptions())
        let voted = Personalisation.train(global, .add(share: 0.3), on: own, options: TrainingOptions())
        var a = [Float](repeating: 0, count: global.labelCount), g = a, v = a
        for text in ["meu pedido atrasado", "quero cancelar", "bom dia"] {
            let x = Self.featurizer.features(of: text)
            alone.logits(x, into: &a); global.logits(x, into: &g); voted.logits(x, into: &v)
            for l in v.indices { #expect(abs(v[l] - (a[l] + 0.3 * g[l])) < 1e-4, "\(text), label \(l)") }
        }
        #expect(alone.labels[alone.predict(Self.featurizer.features(of: "meu pedido atrasado")).label] != "status_pedido")
    }

    @Test func trainingSideBySideChangesNothing() {
        // Uneven tasks finish out of order; their results still come back in order.
        let sizes = (0..<40).map { ($0 * 7919) % 40 * 500 }
        #expect(sizes.concurrentMap { (0..<$0).reduce(0, &+) } == sizes.map { (0..<$0).reduce(0, &+) })
        // A fold's trainings run side by side, yet the choice, its figures and the model repeat exactly.
        let global = Self.globalModel(intents: T.intents), own = Self.ownData()
        let first = Personalisation.fit(global, on: own, options: TrainingOptions()),
            second = Personalisation.fit(global, on: own, options: TrainingOptions())
        #expect(first.use == second.use && first.heldOutAccuracy == second.heldOutAccuracy && first.model == second.model)
    }

    @Test func tooLittleDataKeepsTheSharedModelAsTheStart() {
        let two = EncodedExamples(texts: ["oi", "cancelar"], intents: ["saudacao", "cancelar"], labels: T.labels, featurizer: Self.featurizer)
        let global = Self.globalModel(intents: T.intents)
        let outcome = Personalisation.fit(global, on: two, options: TrainingOptions())
        #expect(outcome.heldOut == 0 && outcome.use == .fineTune(share: 1))
        #expect(outcome.model.temperature == global.temperature && outcome.model.handoffThreshold == global.handoffThreshold)
    }
}
