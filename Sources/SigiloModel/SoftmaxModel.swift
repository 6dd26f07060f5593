import Foundation
import SigiloText

/// A multinomial logistic-regression (softmax) intent classifier over hashed
/// sparse features, with a fitted temperature and a hand-off policy.
///
/// Weights are stored bucket-major (`weights[bucket * labelCount + label]`),
/// so scoring a sparse vector reads one contiguous row per non-zero feature.
public struct SoftmaxModel: Sendable, Equatable {
    public var features: FeatureConfiguration
    public var labels: [String]
    public var weights: [Float]
    public var bias: [Float]
    /// Logits are divided by this before the softmax (fitted on validation data).
    public var temperature: Float
    /// Below this calibrated confidence the decision is `handoff`.
    public var handoffThreshold: Float
    /// Labels whose prediction always means "hand off to a human" (e.g. `oos`).
    public var handoffLabels: [Int]

    public init(features: FeatureConfiguration, labels: [String], weights: [Float]? = nil, bias: [Float]? = nil,
                temperature: Float = 1, handoffThreshold: Float = 0, handoffLabels: [Int] = []) {
        self.features = features
        self.labels = labels
        self.weights = weights ?? [Float](repeating: 0, count: features.dimension * labels.count)
        self.bias = bias ?? [Float](repeating: 0, count: labels.count)
        self.temperature = temperature
        self.handoffThreshold = handoffThreshold
        self.handoffLabels = handoffLabels
    }

    public var labelCount: Int { labels.count }
    public var parameterCount: Int { weights.count + bias.count }

    /// Raw (uncalibrated) scores of `x`, written into `logits` (labelCount values).
    public func logits(_ x: SparseVector, into logits: inout [Float]) {
        logits.withUnsafeMutableBufferPointer { out in
            x.indices.withUnsafeBufferPointer { idx in
                x.values.withUnsafeBufferPointer { val in
                    Self.scores(indices: idx, values: val, weights: weights, bias: bias, labelCount: labelCount, into: out)
                }
            }
        }
    }

    @inline(__always)
    static func scores(indices: UnsafeBufferPointer<Int32>, values: UnsafeBufferPointer<Float>, weights: [Float],
                       bias: [Float], labelCount: Int, into out: UnsafeMutableBufferPointer<Float>) {
        weights.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                let o = out.baseAddress!
                let w0 = w.baseAddress!
                for l in 0..<labelCount { o[l] = b[l] }
                // Eight rows per pass: scoring waits on rows scattered over a table
                // larger than the cache, so eight independent reads in flight (and an
                // eighth of the writes to `o`) beat one row at a time: classify went
                // from ~40k to ~55k messages/s on CLINC150 (tools/bench-model).
                var k = 0
                while k + 8 <= indices.count {
                    let r0 = w0 + Int(indices[k]) * labelCount, r1 = w0 + Int(indices[k + 1]) * labelCount
                    let r2 = w0 + Int(indices[k + 2]) * labelCount, r3 = w0 + Int(indices[k + 3]) * labelCount
                    let r4 = w0 + Int(indices[k + 4]) * labelCount, r5 = w0 + Int(indices[k + 5]) * labelCount
                    let r6 = w0 + Int(indices[k + 6]) * labelCount, r7 = w0 + Int(indices[k + 7]) * labelCount
                    let f0 = values[k], f1 = values[k + 1], f2 = values[k + 2], f3 = values[k + 3]
                    let f4 = values[k + 4], f5 = values[k + 5], f6 = values[k + 6], f7 = values[k + 7]
                    for l in 0..<labelCount {
                        o[l] += ((f0 * r0[l] + f1 * r1[l]) + (f2 * r2[l] + f3 * r3[l])) + ((f4 * r4[l] + f5 * r5[l]) + (f6 * r6[l] + f7 * r7[l]))
                    }
                    k += 8
                }
                while k < indices.count {
                    Vector.axpy(values[k], w0 + Int(indices[k]) * labelCount, o, labelCount)
                    k += 1
                }
            }
        }
    }

    /// One prediction: the top intents with calibrated probabilities and the decision.
    public struct Prediction: Sendable {
        public enum Decision: String, Sendable { case answer, handoff }
        public var top: [(label: Int, probability: Float)]
        public var decision: Decision
        public var label: Int { top[0].label }
        public var confidence: Float { top[0].probability }
    }

    /// Classifies `x`, returning the `k` most probable intents.
    public func predict(_ x: SparseVector, top k: Int = 3) -> Prediction {
        var buffer = [Float](repeating: 0, count: labelCount)
        return predict(x, top: k, scratch: &buffer)
    }

    /// As `predict(_:top:)`, reusing `scratch` (labelCount floats) across calls.
    public func predict(_ x: SparseVector, top k: Int, scratch: inout [Float]) -> Prediction {
        logits(x, into: &scratch)
        Self.softmax(&scratch, temperature: temperature)
        // Insertion into a short sorted list: k is small, labels are many.
        var top = [(label: Int, probability: Float)]()
        top.reserveCapacity(k + 1)
        for (label, p) in scratch.enumerated() where top.count < k || p > top[top.count - 1].probability {
            var i = top.count
            while i > 0, top[i - 1].probability < p { i -= 1 }
            top.insert((label, p), at: i)
            if top.count > k { top.removeLast() }
        }
        let handoff = top[0].probability < handoffThreshold || handoffLabels.contains(top[0].label)
        return Prediction(top: top, decision: handoff ? .handoff : .answer)
    }

    /// In-place softmax of `logits / temperature`, numerically stable.
    public static func softmax(_ logits: inout [Float], temperature: Float = 1) {
        logits.withUnsafeMutableBufferPointer { softmax($0, temperature: temperature) }
    }

    @inline(__always)
    static func softmax(_ z: UnsafeMutableBufferPointer<Float>, temperature: Float) {
        let inverse = 1 / temperature
        var maximum = -Float.infinity
        for v in z where v > maximum { maximum = v }
        var sum: Float = 0
        for i in z.indices {
            let e = expf((z[i] - maximum) * inverse)
            z[i] = e
            sum += e
        }
        let scale = 1 / sum
        for i in z.indices { z[i] *= scale }
    }
}
