import Foundation
import SigiloFederation

/// Flags valid-but-odd updates. A tenant's update is a sum of clipped customer
/// updates (norm at most weight x C) plus, with tenant placement, its noise
/// (norm close to z C sqrt(d)); dividing the norm by that scale makes updates
/// of different tenants and rounds comparable, and the plan's noise is what
/// makes a score "normal". An update is anomalous when its score is far above
/// the median of its peers (this round's and the previous rounds' accepted
/// updates), or when it points against the sum of the round's other updates.
struct UpdateAnomaly: Equatable, Sendable {
    /// Score above this multiple of the peers' median is flagged.
    static let scoreFactor = 3.0
    /// Cosine with the other updates' sum below this is flagged.
    static let minimumCosine = -0.5
    /// Fewer peers than this: no verdict on the score (nothing to compare with).
    static let minimumPeers = 2

    enum Kind: String, Sendable { case norm, direction }
    let kind: Kind
    let detail: String

    /// The scale-free size of an update.
    static func score(norm: Double, weight: Double, plan: Plan, tenantNoised: Bool) -> Double {
        let noise = tenantNoised ? plan.noiseMultiplier * plan.clipNorm * Double(plan.dimension).squareRoot() : 0
        return norm / max(weight * plan.clipNorm + noise, .leastNormalMagnitude)
    }

    /// The first anomaly, or nil. `cosine` is with the round's other updates' sum (nil when there are none).
    static func check(score: Double, peerScores: [Double], cosine: Double?) -> UpdateAnomaly? {
        if peerScores.count >= minimumPeers {
            let sorted = peerScores.sorted()
            let middle = sorted.count / 2
            let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
            if score > scoreFactor * median {
                return UpdateAnomaly(kind: .norm, detail: "score \(rounded(score)) is \(rounded(score / median))x the median \(rounded(median)) of \(sorted.count) peers")
            }
        }
        if let cosine, cosine < minimumCosine {
            return UpdateAnomaly(kind: .direction, detail: "cosine \(rounded(cosine)) with the sum of the round's other updates")
        }
        return nil
    }

    private static func rounded(_ x: Double) -> String { String(format: "%.3g", x) }

    /// The cosine between an update (of L2 norm `norm`) and the sum of the
    /// others; nil when either is zero.
    static func cosine(_ update: [Float], norm: Double, others: [Float]) -> Double? {
        precondition(update.count == others.count)
        // Float lanes within blocks of 4,096 values, each block's sums added in double: it runs under the
        // coordinator's lock once per update (4M values), and a scalar double loop took 8 ms of it.
        var dot = 0.0, squared = 0.0
        update.withUnsafeBufferPointer { u in
            others.withUnsafeBufferPointer { o in
                let ru = UnsafeRawPointer(u.baseAddress!), ro = UnsafeRawPointer(o.baseAddress!)
                var start = 0
                while start < o.count {
                    let end = min(o.count, start + 4096)
                    var d = SIMD8<Float>(repeating: 0), q = SIMD8<Float>(repeating: 0)
                    var i = start
                    while i + 8 <= end {
                        let a = ro.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                        let b = ru.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                        d += a * b
                        q += a * a
                        i += 8
                    }
                    var blockDot = Double(d.sum()), blockSquared = Double(q.sum())
                    while i < end {
                        blockDot += Double(o[i]) * Double(u[i])
                        blockSquared += Double(o[i]) * Double(o[i])
                        i += 1
                    }
                    dot += blockDot
                    squared += blockSquared
                    start = end
                }
            }
        }
        guard squared > 0, norm > 0 else { return nil }
        return dot / (squared.squareRoot() * norm)
    }
}
