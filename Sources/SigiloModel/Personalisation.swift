/// A tenant's own version of the shared model: the global model fine-tuned on
/// the tenant's data, which never leaves it. `sigilo-tenant personalise`
/// builds it next to the tenant's store; `sigilo-eval federated` measures it
/// against local-only training with this same code.
///
/// How much of the shared model to keep is chosen per tenant: training starts
/// from trust x global, with the trust picked on a fifth of the tenant's own
/// data held out. A noisy shared model (noise at every tenant, say) is then
/// discounted instead of spoiling the tenant's own training; trust 0 is
/// local-only training. The same held-out fifth calibrates the temperature
/// and the hand-off threshold, which the shared model cannot have: the
/// coordinator never sees a labelled message.
public enum Personalisation {
    public static let trustLevels: [Float] = [0, 0.25, 0.5, 1]

    public struct Outcome: Sendable {
        public var model: SoftmaxModel
        /// The share of the global weights training started from.
        public var trust: Float
        /// Examples held out to choose the trust and calibrate; 0 when there
        /// were too few (then trust is 1 and the global calibration is kept).
        public var heldOut: Int
        /// In-scope accuracy on the held-out examples of the global model as
        /// it is, and of the chosen fine-tuned model (trained without them).
        public var globalHeldOutAccuracy: Double
        public var heldOutAccuracy: Double
    }

    /// Fine-tunes `global` on `own`, whose labels must all index `global.labels` (drop unknown intents first).
    public static func fit(_ global: SoftmaxModel, on own: EncodedExamples, options: TrainingOptions,
                           progress: ((String) -> Void)? = nil) -> Outcome {
        precondition(!own.labels.contains { $0 < 0 }, "every example's intent must be one of the model's")
        func start(_ trust: Float) -> SoftmaxModel {
            var model = global
            for i in model.weights.indices { model.weights[i] *= trust }
            for i in model.bias.indices { model.bias[i] *= trust }
            return model
        }
        var rng = SplitMix64(seed: options.seed ^ 0x7472_7573_74)
        var order = Array(0..<own.count)
        order.shuffle(using: &rng)
        let held = own.count / 5
        var best: (trust: Float, accuracy: Double, model: SoftmaxModel)?
        var globalAccuracy = 0.0
        if held > 0 {
            let fit = own.subset(Array(order[held...]).sorted()), check = own.subset(Array(order[..<held]).sorted())
            globalAccuracy = Metrics.evaluate(global, on: check).accuracyInScope
            // From most trust to least: a tie goes to the model that knows more intents than the tenant has seen.
            for trust in trustLevels.reversed() {
                let model = SoftmaxTrainer.train(fit.features, labels: fit.labels, model: start(trust), options: options)
                let accuracy = Metrics.evaluate(model, on: check).accuracyInScope
                progress?(String(format: "trust %.2f: held-out accuracy %.4f", trust, accuracy))
                if accuracy > best?.accuracy ?? -1 { best = (trust, accuracy, model) }
            }
            IntentTraining.calibrate(&best!.model, on: check)
        }
        var model = SoftmaxTrainer.train(own.features, labels: own.labels, model: start(best?.trust ?? 1), options: options)
        if let best {
            model.temperature = best.model.temperature
            model.handoffThreshold = best.model.handoffThreshold
        }
        return Outcome(model: model, trust: best?.trust ?? 1, heldOut: held,
                       globalHeldOutAccuracy: globalAccuracy, heldOutAccuracy: best?.accuracy ?? 0)
    }
}
