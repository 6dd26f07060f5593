import Foundation

/// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy 2021): the clip
/// norm tracks a target quantile γ of the customers' update norms.
///
/// Each round every sampled customer contributes the bit b = [norm <= C]
/// ("unclipped"); the coordinator sees the sum of (b - 1/2) plus Gaussian
/// noise, estimates the unclipped fraction and moves C geometrically:
/// C <- C · exp(-η (fraction - γ)). Too many unclipped updates mean C is too
/// large, so it shrinks; counting *clipped* updates instead inverts the sign
/// and makes C run away.
///
/// The count query has sensitivity 1/2 per customer, so with noise standard
/// deviation σ_b it is a Gaussian mechanism with multiplier 2σ_b; released
/// together with the update sum (multiplier z) the round is one Gaussian
/// mechanism with multiplier (z⁻² + (2σ_b)⁻²)^(-1/2), which is what the
/// accountant must be charged (`combinedNoiseMultiplier`).
public struct AdaptiveClipping: Sendable {
    public private(set) var clipNorm: Double
    public let targetQuantile: Double
    public let learningRate: Double
    /// Standard deviation of the noise on the count of unclipped updates.
    public let countNoise: Double

    public init(initialClipNorm: Double, targetQuantile: Double = 0.5, learningRate: Double = 0.2, countNoise: Double) throws {
        guard initialClipNorm.isFinite, initialClipNorm > 0 else { throw PrivacyParameterError("initial clip norm must be > 0, got \(initialClipNorm)") }
        guard targetQuantile > 0, targetQuantile < 1 else { throw PrivacyParameterError("target quantile must be in (0, 1), got \(targetQuantile)") }
        guard learningRate.isFinite, learningRate > 0 else { throw PrivacyParameterError("learning rate must be > 0, got \(learningRate)") }
        guard countNoise.isFinite, countNoise > 0 else { throw PrivacyParameterError("count noise must be > 0, got \(countNoise)") }
        clipNorm = initialClipNorm
        self.targetQuantile = targetQuantile
        self.learningRate = learningRate
        self.countNoise = countNoise
    }

    /// The multiplier to charge for a round that releases the update sum (z) and the noisy count.
    public func combinedNoiseMultiplier(updateNoiseMultiplier z: Double) -> Double {
        1 / (1 / (z * z) + 1 / (4 * countNoise * countNoise)).squareRoot()
    }

    /// The noisy count a tenant or coordinator releases: Σ(b_i - 1/2) + noise,
    /// computed on the integer grid (2Σ(b_i - 1/2) is an integer with
    /// sensitivity 1) with exact discrete-Gaussian noise.
    func noisyCenteredCount<R: RandomNumberGenerator>(unclippedBits: [Bool], generator: inout R) -> Double {
        let twice = unclippedBits.reduce(0) { $0 + ($1 ? 1 : -1) }
        let sampler = DiscreteGaussianSampler(sigma: UInt64((2 * countNoise).rounded(.up)))
        return Double(Int64(twice) + sampler.sample(using: &generator)) / 2
    }

    /// One round: `norms` are the (pre-clipping) update norms of the customers
    /// sampled this round; `expectedCount` is q times the population (never
    /// the observed count, which would leak who was sampled).
    mutating func update<R: RandomNumberGenerator>(norms: [Double], expectedCount: Double, generator: inout R) {
        let bits = norms.map { $0 <= clipNorm }
        let fraction = noisyCenteredCount(unclippedBits: bits, generator: &generator) / expectedCount + 0.5
        clipNorm *= exp(-learningRate * (fraction - targetQuantile))
    }

    /// One round with the secure generator.
    public mutating func update(norms: [Double], expectedCount: Double, using rng: SecureRandom) {
        var generator = rng
        update(norms: norms, expectedCount: expectedCount, generator: &generator)
    }
}
