import Foundation

/// Rényi-DP accounting of Poisson-subsampled Gaussian rounds.
///
/// Per round, the RDP at order α is log(A_α)/(α-1) (Mironov, Talwar, Zhang
/// 2019): a finite binomial sum for integer α, a convergent two-sided series
/// for fractional α, evaluated in log space. Rounds compose by adding RDP
/// curves, so T identical rounds cost one multiplication, not T additions.
/// Conversion to (ε, δ) uses the improved bound of Canonne, Kamath, Steinke
/// (2020, Prop. 12), with the KL-divergence shortcut for tiny RDP values.
public enum RDPAccountant {
    /// The orders dp-accounting uses by default: 1.1 ... 10.9, 11 ... 63, 128, 256, 512, 1024.
    public static let defaultOrders: [Double] = {
        let fractional: [Double] = (1..<100).map { 1 + Double($0) / 10 }
        let integers: [Double] = (11..<64).map { Double($0) }
        return fractional + integers + [128, 256, 512, 1024]
    }()

    /// RDP of one round at each of `orders`.
    public static func rdp(_ round: SubsampledGaussian, orders: [Double] = defaultOrders) -> [Double] {
        orders.map { rdp(q: round.sampleRate, sigma: round.noiseMultiplier, order: $0) }
    }

    /// RDP of the composition of `rounds` (each mechanism with its count).
    public static func rdp(_ rounds: [(SubsampledGaussian, Int)], orders: [Double] = defaultOrders) -> [Double] {
        var total = [Double](repeating: 0, count: orders.count)
        for (mechanism, count) in rounds where count > 0 {
            for (i, value) in rdp(mechanism, orders: orders).enumerated() { total[i] += Double(count) * value }
        }
        return total
    }

    /// ε for `steps` identical rounds at `delta`.
    public static func epsilon(_ round: SubsampledGaussian, steps: Int, delta: Double) throws -> Double {
        try validateSteps(steps)
        try validateDelta(delta)
        return epsilon(orders: defaultOrders, rdp: rdp([(round, steps)]), delta: delta)
    }

    /// ε for a composition of different rounds at `delta`.
    public static func epsilon(_ rounds: [(SubsampledGaussian, Int)], delta: Double) throws -> Double {
        try validateDelta(delta)
        for (_, count) in rounds { try validateSteps(count) }
        return epsilon(orders: defaultOrders, rdp: rdp(rounds), delta: delta)
    }

    /// The smallest ε over orders (CKS 2020 Prop. 12; KL shortcut when δ² > 1 - e^-rdp).
    public static func epsilon(orders: [Double], rdp: [Double], delta: Double) -> Double {
        var best = Double.infinity
        for (alpha, r) in zip(orders, rdp) {
            let candidate: Double
            if r < 0 {
                candidate = 0 // numerical noise around zero: no privacy loss
            } else if !r.isFinite {
                candidate = .infinity
            } else if delta * delta + expm1(-r) > 0 {
                candidate = 0 // δ >= sqrt(1 - exp(-KL)) already: ε = 0 suffices
            } else if alpha > 1.01 {
                candidate = r + log1p(-1 / alpha) - log(delta * alpha) / (alpha - 1)
            } else {
                candidate = .infinity // numerically unstable near α = 1 and useless there
            }
            best = min(best, candidate)
        }
        return max(0, best)
    }

    /// RDP of the Poisson-subsampled Gaussian with rate q and noise σ at order α.
    public static func rdp(q: Double, sigma: Double, order alpha: Double) -> Double {
        if q == 1 { return alpha / (2 * sigma * sigma) }
        let logA = alpha == alpha.rounded() ? logAInteger(q: q, sigma: sigma, alpha: Int(alpha))
                                            : logAFractional(q: q, sigma: sigma, alpha: alpha)
        return logA / (alpha - 1)
    }

    /// log A_α = log Σ_k C(α,k) (1-q)^(α-k) q^k exp((k²-k)/(2σ²)), α integer.
    static func logAInteger(q: Double, sigma: Double, alpha: Int) -> Double {
        var logA = -Double.infinity
        let logQ = log(q), log1mQ = log1p(-q)
        for k in 0...alpha {
            let term = logBinomial(Double(alpha), Double(k)) + Double(alpha - k) * log1mQ + Double(k) * logQ
                + Double(k * k - k) / (2 * sigma * sigma)
            logA = logAddExp(logA, term)
        }
        return logA
    }

    /// The fractional-order series of Mironov, Talwar, Zhang (2019, Sec. 3.3):
    /// A_α = A₀ + A₁, each a sum over i >= 0 of generalised binomial terms
    /// weighted by Gaussian tail masses around z₀ = σ² ln(1/q - 1) + 1/2.
    static func logAFractional(q: Double, sigma: Double, alpha: Double) -> Double {
        var positive = -Double.infinity, negative = -Double.infinity
        let z0 = sigma * sigma * log(1 / q - 1) + 0.5
        let logQ = log(q), log1mQ = log1p(-q)
        let twoSigma2 = 2 * sigma * sigma
        var i = 0
        while true {
            let di = Double(i)
            let j = alpha - di
            let logCoefficient = logAbsGeneralisedBinomial(alpha, i)
            let negativeSign = generalisedBinomialIsNegative(alpha, i)
            let logT0 = logCoefficient + di * logQ + j * log1mQ
            let logT1 = logCoefficient + j * logQ + di * log1mQ
            let logE0 = log(0.5) + logErfc((di - z0) / (sqrt(2) * sigma))
            let logE1 = log(0.5) + logErfc((z0 - j) / (sqrt(2) * sigma))
            let logS0 = logT0 + (di * di - di) / twoSigma2 + logE0
            let logS1 = logT1 + (j * j - j) / twoSigma2 + logE1
            let term = logAddExp(logS0, logS1)
            if negativeSign { negative = logAddExp(negative, term) } else { positive = logAddExp(positive, term) }
            // Terms decay geometrically once i is past α; stop when negligible.
            if Double(i) > alpha, term < max(positive, negative) - 40 { break }
            i += 1
            if i > 100_000 { break }
        }
        if negative == -.infinity { return positive }
        return positive + log1p(-exp(negative - positive))
    }

    // MARK: - Log-space helpers

    static func logAddExp(_ a: Double, _ b: Double) -> Double {
        if a == -.infinity { return b }
        if b == -.infinity { return a }
        let m = max(a, b)
        return m + log1p(exp(-abs(a - b)))
    }

    static func logBinomial(_ n: Double, _ k: Double) -> Double {
        lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)
    }

    /// log |C(α, i)| for real α and integer i >= 0.
    static func logAbsGeneralisedBinomial(_ alpha: Double, _ i: Int) -> Double {
        // |α(α-1)...(α-i+1)| / i!  =  |Γ(α+1) / Γ(α-i+1)| / i!
        var lgAlpha = 0, lgRest = 0
        return lgammaSigned(alpha + 1, &lgAlpha) - lgammaSigned(alpha - Double(i) + 1, &lgRest) - lgamma(Double(i) + 1)
    }

    /// C(α, i) < 0 for real α: an odd number of negative factors (α - m), m < i.
    static func generalisedBinomialIsNegative(_ alpha: Double, _ i: Int) -> Bool {
        // Factors α - m are negative for m >= floor(α) + 1 (α not an integer).
        let negatives = max(0, i - (Int(alpha.rounded(.down)) + 1))
        return negatives % 2 == 1
    }

    static func lgammaSigned(_ x: Double, _ sign: inout Int) -> Double {
        var s: Int32 = 0
        let value = lgamma_r(x, &s)
        sign = Int(s)
        return value
    }

    /// log(erfc(x)), accurate where erfc underflows (asymptotic series for large x).
    static func logErfc(_ x: Double) -> Double {
        if x < 25 { return log(erfc(x)) }
        let x2 = x * x
        // erfc(x) ~ exp(-x²)/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶))
        return -x2 - log(x) - 0.5 * log(Double.pi) + log1p(-1 / (2 * x2) + 3 / (4 * x2 * x2) - 15 / (8 * x2 * x2 * x2))
    }
}
