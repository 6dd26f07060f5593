/// A plan whose intents change keeps what the model learnt (protocol/PLAN.md,
/// "Changing a plan"): each new label's class comes from the old classes named
/// as its sources. One source keeps that class (the intent stayed or was
/// renamed), several are averaged (a merge), none starts from zero (a new intent).
/// The model was released under differential privacy, so rearranging it costs
/// no privacy.
extension SoftmaxModel {
    /// The model over `labels`, where `sources[i]` are the indices of the old
    /// classes label i is made from. A class is a hand-off if any of its sources
    /// was, or (a new intent) if its name is in `handoffIntents`.
    public func relabelled(_ labels: [String], sources: [[Int]], handoffIntents: Set<String>) -> SoftmaxModel {
        precondition(labels.count == sources.count && sources.allSatisfy { $0.allSatisfy(self.labels.indices.contains) }, "sources outside the model")
        var model = self
        model.labels = labels
        model.weights = Self.relabel(weights, rows: features.dimension, from: labelCount, sources: sources)
        model.bias = Self.relabel(bias, rows: 1, from: labelCount, sources: sources)
        let handoff = Set(handoffLabels)
        model.handoffLabels = labels.indices.filter {
            sources[$0].isEmpty ? handoffIntents.contains(labels[$0]) : sources[$0].contains(where: handoff.contains)
        }
        return model
    }

    /// The model's parameter vector (weights then bias, as rounds sum it) or any
    /// state shaped like it (the server optimiser's moments), relabelled the same
    /// way. An empty vector (no state yet) stays empty.
    public static func relabelParameters(_ values: [Float], dimension: Int, from old: Int, sources: [[Int]]) -> [Float] {
        guard !values.isEmpty else { return values }
        precondition(values.count == (dimension + 1) * old, "parameters of another shape")
        return relabel(Array(values[0..<(dimension * old)]), rows: dimension, from: old, sources: sources)
            + relabel(Array(values[(dimension * old)...]), rows: 1, from: old, sources: sources)
    }

    /// Feature-major rows of `old` values become rows of `sources.count`: each the mean of its sources, or zero.
    static func relabel(_ values: [Float], rows: Int, from old: Int, sources: [[Int]]) -> [Float] {
        let wide = sources.count
        var out = [Float](repeating: 0, count: rows * wide)
        for (label, from) in sources.enumerated() where !from.isEmpty {
            let scale = 1 / Float(from.count)
            for row in 0..<rows {
                var sum: Float = 0
                for source in from { sum += values[row * old + source] }
                out[row * wide + label] = sum * scale
            }
        }
        return out
    }
}
