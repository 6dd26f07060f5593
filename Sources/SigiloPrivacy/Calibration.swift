import Foundation

/// Which accountant answers a question.
public enum AccountantKind: String, CaseIterable, Sendable, Codable {
    case rdp, pld

    /// ε of a composition of rounds at δ.
    public func epsilon(_ rounds: [(SubsampledGaussian, Int)], delta: Double) throws -> Double {
        switch self {
        case .rdp: return try RDPAccountant.epsilon(rounds, delta: delta)
        case .pld: return try PLDAccountant.epsilon(rounds, delta: delta)
        }
    }
}

/// Noise calibration: how much noise a target (ε, δ) needs, and how many
/// rounds a noise level allows. Uses PLD (the tighter sound accountant) by
/// default: less noise for the same guarantee is accuracy.
public enum NoiseCalibration {
    /// The smallest noise multiplier z (within `tolerance`, rounded up so the
    /// target always holds) with ε(q, z, steps, δ) <= epsilon.
    public static func noiseMultiplier(epsilon: Double, delta: Double, sampleRate: Double, steps: Int,
                                       accountant: AccountantKind = .pld, tolerance: Double = 1e-3) throws -> Double {
        guard epsilon.isFinite, epsilon > 0 else { throw PrivacyParameterError("epsilon must be a finite number > 0, got \(epsilon)") }
        try validateDelta(delta)
        guard steps >= 1 else { throw PrivacyParameterError("steps must be >= 1, got \(steps)") }
        _ = try SubsampledGaussian(sampleRate: sampleRate, noiseMultiplier: 1)
        func eps(_ z: Double) throws -> Double {
            try accountant.epsilon([(SubsampledGaussian(sampleRate: sampleRate, noiseMultiplier: z), steps)], delta: delta)
        }
        // Bracket with the fast RDP accountant: it never reports less than PLD,
        // so the RDP answer is enough noise for either.
        var hi = 0.5
        while try RDPAccountant.epsilon(SubsampledGaussian(sampleRate: sampleRate, noiseMultiplier: hi), steps: steps, delta: delta) > epsilon {
            hi *= 2
            guard hi < 1e6 else { throw PrivacyParameterError("no noise multiplier below 1e6 reaches epsilon \(epsilon)") }
        }
        var lo = accountant == .pld ? hi * 0.5 : hi / 2
        while lo > 1e-3, try eps(lo) <= epsilon { lo /= 2 }
        while (hi - lo) / hi > tolerance / 4 {
            let mid = (lo + hi) / 2
            if try eps(mid) <= epsilon { hi = mid } else { lo = mid }
        }
        // Round up to the tolerance grid: never below the sufficient value.
        let step = tolerance
        return (hi / step).rounded(.up) * step
    }

    /// The largest number of rounds with ε(q, z, rounds, δ) <= epsilon (0 if even one round exceeds it).
    public static func maximumSteps(epsilon: Double, delta: Double, round: SubsampledGaussian,
                                    accountant: AccountantKind = .pld, limit: Int = 1_000_000) throws -> Int {
        guard epsilon.isFinite, epsilon > 0 else { throw PrivacyParameterError("epsilon must be a finite number > 0, got \(epsilon)") }
        try validateDelta(delta)
        func fits(_ steps: Int) throws -> Bool { try accountant.epsilon([(round, steps)], delta: delta) <= epsilon }
        guard try fits(1) else { return 0 }
        var lo = 1, hi = 2
        while hi <= limit, try fits(hi) { lo = hi; hi *= 2 }
        if hi > limit { return try fits(limit) ? limit : binary(lo, limit) }
        return try binary(lo, hi)
        func binary(_ good: Int, _ bad: Int) throws -> Int {
            var good = good, bad = bad
            while bad - good > 1 {
                let mid = (good + bad) / 2
                if try fits(mid) { good = mid } else { bad = mid }
            }
            return good
        }
    }
}
