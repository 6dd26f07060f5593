import Foundation

/// Fits the temperature and the hand-off threshold on held-out data.
public enum Calibration {
    /// The temperature T > 0 minimising the negative log-likelihood of `labels`
    /// under softmax(logits / T); golden-section search over ln T in [-4, 4].
    /// When every label already has the top score there is no minimum (the
    /// likelihood only grows as T falls), so the data shows no miscalibration
    /// to correct and T stays 1: a small set classified without error (a
    /// tenant's own held-out messages, say) must not make the model claim
    /// certainty on everything else.
    public static func fitTemperature(logits: [[Float]], labels: [Int]) -> Float {
        guard !logits.isEmpty else { return 1 }
        let anyWrong = zip(logits, labels).contains { z, y in z.indices.contains { $0 != y && z[$0] >= z[y] } }
        guard anyWrong else { return 1 }
        func nll(_ logT: Double) -> Double {
            let inverse = exp(-logT)
            var total = 0.0
            for (z, y) in zip(logits, labels) {
                var maximum = -Double.infinity
                for v in z { maximum = max(maximum, Double(v) * inverse) }
                var sum = 0.0
                for v in z { sum += exp(Double(v) * inverse - maximum) }
                total += maximum + log(sum) - Double(z[y]) * inverse
            }
            return total
        }
        var lo = -4.0, hi = 4.0
        let ratio = (sqrt(5.0) - 1) / 2
        var a = hi - ratio * (hi - lo), b = lo + ratio * (hi - lo)
        var fa = nll(a), fb = nll(b)
        for _ in 0..<60 {
            if fa < fb { hi = b; b = a; fb = fa; a = hi - ratio * (hi - lo); fa = nll(a) }
            else { lo = a; a = b; fa = fb; b = lo + ratio * (hi - lo); fb = nll(b) }
        }
        return Float(exp((lo + hi) / 2))
    }

    /// One held-out example as the threshold search sees it.
    public struct Outcome: Sendable {
        public var confidence: Float
        public var correct: Bool
        /// The prediction is a hand-off label (handed off whatever the confidence).
        public var predictedHandoff: Bool
        /// The true label is a hand-off label (a human should take it).
        public var goldHandoff: Bool

        public init(confidence: Float, correct: Bool, predictedHandoff: Bool, goldHandoff: Bool) {
            self.confidence = confidence
            self.correct = correct
            self.predictedHandoff = predictedHandoff
            self.goldHandoff = goldHandoff
        }
    }

    /// Share of right answers a threshold learnt without mistakes may hand off.
    public static let quietQuantile = 0.01

    /// The confidence threshold that sends the most messages to the right place:
    /// answered when the answer is right, handed to a human when the model
    /// would be wrong or the message is out of scope. Ties go to the lowest
    /// threshold (fewest hand-offs).
    ///
    /// A held-out set the model answers without a mistake (a tenant's own
    /// messages, none out of scope) has nothing to learn that from, and would
    /// give 0: every message answered, however unlike anything the tenant has
    /// seen. Then the threshold is the confidence below which only
    /// `quietQuantile` of the right answers fall.
    public static func handoffThreshold(_ outcomes: [Outcome]) -> Float {
        // With threshold t, a message is answered iff confidence >= t and its
        // prediction is not a hand-off label.
        func rightIfAnswered(_ o: Outcome) -> Bool { o.correct && !o.goldHandoff }
        let answered = outcomes.filter { !$0.predictedHandoff }
        if !answered.isEmpty, answered.allSatisfy(rightIfAnswered) {
            let confidences = answered.map(\.confidence).sorted()
            return confidences[Int(Double(confidences.count - 1) * quietQuantile)]
        }
        let sorted = outcomes.sorted { $0.confidence < $1.confidence }
        // Start with t = 0: everything not predicted as hand-off is answered.
        var right = outcomes.reduce(0) { $0 + (($1.predictedHandoff ? true : rightIfAnswered($1)) ? 1 : 0) }
        var best = right
        var bestThreshold: Float = 0
        var i = 0
        while i < sorted.count {
            // Raise t just above sorted[i].confidence: those messages flip to hand-off.
            let c = sorted[i].confidence
            while i < sorted.count, sorted[i].confidence == c {
                let o = sorted[i]
                if !o.predictedHandoff { right += rightIfAnswered(o) ? -1 : 1 }
                i += 1
            }
            if right > best {
                best = right
                bestThreshold = i < sorted.count ? (c + sorted[i].confidence) / 2 : c.nextUp
            }
        }
        return min(bestThreshold, 1)
    }
}
