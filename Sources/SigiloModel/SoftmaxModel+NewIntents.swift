/// A plan that gains intents keeps what the model learnt (protocol/PLAN.md,
/// "Adding intents"): the old classes keep their weights, new classes start
/// from zero, appended after the old ones so every old label keeps its index.
extension SoftmaxModel {
    public func addingLabels(_ new: [String], handoffIntents: Set<String>) -> SoftmaxModel {
        let old = labelCount, wider = old + new.count
        var model = self
        model.labels = labels + new
        model.weights = Self.widen(weights, rows: features.dimension, from: old, to: wider)
        model.bias = Self.widen(bias, rows: 1, from: old, to: wider)
        model.handoffLabels = handoffLabels + new.indices.filter { handoffIntents.contains(new[$0]) }.map { old + $0 }
        return model
    }

    /// The model's parameter vector (weights then bias, as rounds sum it) or any
    /// state shaped like it (the server optimiser's moments), widened the same way.
    /// An empty vector (no state yet) stays empty.
    public static func widenParameters(_ values: [Float], dimension: Int, from old: Int, to wider: Int) -> [Float] {
        guard !values.isEmpty else { return values }
        precondition(values.count == (dimension + 1) * old, "parameters of another shape")
        return widen(Array(values[0..<(dimension * old)]), rows: dimension, from: old, to: wider)
            + widen(Array(values[(dimension * old)...]), rows: 1, from: old, to: wider)
    }

    /// Bucket-major rows of `old` values become rows of `wider`, zero-filled.
    static func widen(_ values: [Float], rows: Int, from old: Int, to wider: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * wider)
        for row in 0..<rows {
            for label in 0..<old { out[row * wider + label] = values[row * old + label] }
        }
        return out
    }
}
