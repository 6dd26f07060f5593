import Foundation

/// Privacy-loss-distribution (PLD) accounting of Poisson-subsampled Gaussian
/// rounds under add/remove-one-customer neighbouring.
///
/// Each direction (a customer added, a customer removed) has its own privacy
/// loss distribution. Each is discretised with the pessimistic
/// "connect-the-dots" method (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi
/// 2022, Algorithm 1): the discrete PLD's hockey-stick curve equals the true
/// one at every grid point and lies above it in between, so the reported ε is
/// never below the truth. Rounds compose by convolution, computed with an FFT
/// (T identical rounds: one transform raised to the T-th power, on a window
/// chosen by a Chernoff bound; the mass outside the window is charged to the
/// infinite-loss mass, keeping the answer pessimistic). The reported ε is the
/// larger of the two directions.
public enum PLDAccountant {
    /// Grid of privacy-loss values (dp-accounting's default is 1e-4).
    public static let defaultDiscretization = 1e-4

    /// ε for `steps` identical rounds at `delta`.
    public static func epsilon(_ round: SubsampledGaussian, steps: Int, delta: Double,
                               discretization: Double = defaultDiscretization) throws -> Double {
        try epsilon([(round, steps)], delta: delta, discretization: discretization)
    }

    /// ε for a composition of different rounds at `delta`.
    public static func epsilon(_ rounds: [(SubsampledGaussian, Int)], delta: Double,
                               discretization: Double = defaultDiscretization) throws -> Double {
        try validateDelta(delta)
        for (_, count) in rounds { try validateSteps(count) }
        let active = rounds.filter { $0.1 > 0 }
        guard !active.isEmpty else { return 0 }
        if active.allSatisfy({ $0.0.sampleRate == 1 }) {
            // Without subsampling the composition is itself a Gaussian mechanism: exact, no grid needed.
            let inverseVariance = active.reduce(0.0) { $0 + Double($1.1) / ($1.0.noiseMultiplier * $1.0.noiseMultiplier) }
            return gaussianEpsilon(sigma: 1 / inverseVariance.squareRoot(), delta: delta)
        }
        var worst = 0.0
        for direction in Direction.allCases {
            var total: LossDistribution?
            for (mechanism, count) in active {
                let single = LossDistribution.subsampledGaussian(mechanism, direction: direction, interval: discretization)
                let composed = single.selfComposed(count)
                total = total.map { $0.composed(with: composed) } ?? composed
            }
            worst = max(worst, total!.epsilon(delta: delta))
        }
        return worst
    }

    /// ε of the Gaussian mechanism with sensitivity 1 and standard deviation
    /// σ at `delta`, from its exact privacy profile (Balle and Wang 2018):
    /// δ(ε) = Φ(1/(2σ) - εσ) - e^ε Φ(-1/(2σ) - εσ), the hockey stick of the
    /// subsampled pair at q = 1; decreasing in ε, inverted by bisection; the
    /// upper end of the final bracket is returned, so the answer is never
    /// below the truth.
    static func gaussianEpsilon(sigma: Double, delta: Double) -> Double {
        func profile(_ e: Double) -> Double { LossDistribution.hockeyStick(epsilon: e, q: 1, sigma: sigma, direction: .remove) }
        guard profile(0) > delta else { return 0 }
        var low = 0.0, high = 1.0
        while profile(high) > delta { low = high; high *= 2 }
        for _ in 0..<100 where high - low > 1e-12 * high {
            let middle = (low + high) / 2
            if profile(middle) > delta { low = middle } else { high = middle }
        }
        return high
    }

    /// Which neighbouring dataset is the "upper" distribution.
    public enum Direction: CaseIterable, Sendable {
        /// The neighbouring dataset has one customer more.
        case add
        /// The neighbouring dataset has one customer less.
        case remove
    }
}

/// A discrete privacy loss distribution: mass `masses[i]` at loss
/// `(offset + i) * interval`, plus mass at +∞.
struct LossDistribution {
    var interval: Double
    var offset: Int
    var masses: [Double]
    var infinityMass: Double

    // MARK: Construction

    /// The connect-the-dots PLD of one Poisson-subsampled Gaussian round
    /// (sensitivity 1, standard deviation σ = z).
    static func subsampledGaussian(_ m: SubsampledGaussian, direction: PLDAccountant.Direction,
                                   interval d: Double) -> LossDistribution {
        let q = m.sampleRate, sigma = m.noiseMultiplier
        // Truncate x where each Gaussian's tail holds at most exp(-50)/2.
        let tail = sigma * inverseStandardNormalCDFOfLogProbability(log(0.5) - 50) // negative
        let (lowerX, upperX): (Double, Double) = direction == .remove ? (tail - 1, -tail) : (tail, -tail + 1)
        let loss = { (x: Double) -> Double in privacyLoss(x: x, q: q, sigma: sigma, direction: direction) }
        // The loss decreases in x.
        let upperEpsilon = loss(lowerX), lowerEpsilon = loss(upperX)
        let lo = Int((lowerEpsilon / d).rounded(.down)), hi = Int((upperEpsilon / d).rounded(.up))
        let deltas = (lo...hi).map { hockeyStick(epsilon: Double($0) * d, q: q, sigma: sigma, direction: direction) }
        return connectTheDots(deltas: deltas, offset: lo, interval: d)
    }

    /// ln(upper(x) / lower(x)) for the subsampled Gaussian pair.
    static func privacyLoss(x: Double, q: Double, sigma: Double, direction: PLDAccountant.Direction) -> Double {
        let s2 = 2 * sigma * sigma
        switch direction {
        case .remove: // upper = q N(-1, σ²) + (1-q) N(0, σ²), lower = N(0, σ²)
            return logOneMinusQPlusQExp(q: q, (-2 * x - 1) / s2)
        case .add:    // upper = N(0, σ²), lower = q N(1, σ²) + (1-q) N(0, σ²)
            return -logOneMinusQPlusQExp(q: q, (2 * x - 1) / s2)
        }
    }

    /// ln(1 - q + q e^t), stable for large |t|.
    static func logOneMinusQPlusQExp(q: Double, _ t: Double) -> Double {
        if q == 1 { return t }
        if t > 0 { return t + log(q + (1 - q) * exp(-t)) }
        return log1p(q * expm1(t))
    }

    /// δ(ε) = P_upper[L > ε] - e^ε P_lower[L > ε] for the subsampled Gaussian pair.
    static func hockeyStick(epsilon e: Double, q: Double, sigma: Double, direction: PLDAccountant.Direction) -> Double {
        let s2 = sigma * sigma
        switch direction {
        case .remove:
            // L(x) > ε  <=>  x < x*, with e^((-2x-1)/(2σ²)) > (e^ε - 1 + q)/q.
            let ratio = (exp(e) - 1 + q) / q
            if ratio <= 0 { return max(0, -expm1(e)) } // every x: δ = 1 - e^ε
            let xStar = -s2 * log(ratio) - 0.5
            let upper = q * normalCDF((xStar + 1) / sigma) + (1 - q) * normalCDF(xStar / sigma)
            return max(0, upper - exp(e) * normalCDF(xStar / sigma))
        case .add:
            // L(x) > ε  <=>  1 - q + q e^((2x-1)/(2σ²)) < e^-ε  <=>  x < x*.
            let ratio = (exp(-e) - 1 + q) / q
            if ratio <= 0 { return 0 }
            let xStar = s2 * log(ratio) + 0.5
            let lower = q * normalCDF((xStar - 1) / sigma) + (1 - q) * normalCDF(xStar / sigma)
            return max(0, normalCDF(xStar / sigma) - exp(e) * lower)
        }
    }

    /// Algorithm 1 of "Connect the Dots" for equally spaced ε_i = (offset + i)·d
    /// with hockey-stick values δ_i (non-increasing).
    static func connectTheDots(deltas: [Double], offset: Int, interval d: Double) -> LossDistribution {
        let n = deltas.count
        guard n >= 2 else {
            return LossDistribution(interval: d, offset: offset, masses: [1 - deltas[0]], infinityMass: deltas[0])
        }
        let ed = exp(d), edm1 = expm1(d)
        var masses = [Double](repeating: 0, count: n)
        masses[0] = (1 - deltas[0]) + (deltas[1] - deltas[0]) / edm1
        for i in 1..<(n - 1) {
            masses[i] = ((deltas[i + 1] - deltas[i]) - ed * (deltas[i] - deltas[i - 1])) / edm1
        }
        masses[n - 1] = (deltas[n - 1] - deltas[n - 2]) / expm1(-d)
        for i in masses.indices where masses[i] < 0 { masses[i] = 0 } // rounding noise
        return LossDistribution(interval: d, offset: offset, masses: masses, infinityMass: deltas[n - 1])
    }

    // MARK: Composition

    /// The T-fold composition with itself.
    func selfComposed(_ times: Int, tailBound: Double = 1e-15) -> LossDistribution {
        precondition(times >= 1)
        if times == 1 { return self }
        let t = Double(times)
        // Window [lower, upper] (in grid units of the composed loss) outside of
        // which the composed finite mass is at most tailBound on each side.
        let (lower, upper) = chernoffWindow(times: t, tailBound: tailBound)
        let width = upper - lower + 1
        var size = 1
        while size < max(width, masses.count) { size <<= 1 }
        var re = [Double](repeating: 0, count: size), im = [Double](repeating: 0, count: size)
        for (i, m) in masses.enumerated() { re[i % size] += m }
        FFT.transform(&re, &im, inverse: false)
        for k in 0..<size { // z^T in polar form
            let r = (re[k] * re[k] + im[k] * im[k]).squareRoot()
            let theta = atan2(im[k], re[k])
            let rt = r == 0 ? 0 : exp(t * log(r))
            re[k] = rt * cos(t * theta)
            im[k] = rt * sin(t * theta)
        }
        FFT.transform(&re, &im, inverse: true)
        // Index s of the composed loss (in grid units) sits at (s - T*offset) mod size.
        let shift = lower - times * offset
        var out = [Double](repeating: 0, count: width)
        for i in 0..<width {
            let v = re[((shift + i) % size + size) % size]
            out[i] = v > 0 ? v : 0
        }
        // Mass off the window (and its cyclic images) goes to +∞: pessimistic.
        let finite = pow(1 - infinityMass, t)
        let infinity = min(1, 1 - finite + 2 * tailBound)
        return LossDistribution(interval: interval, offset: lower, masses: out, infinityMass: infinity).trimmed()
    }

    /// The composition of two distributions on the same grid.
    func composed(with other: LossDistribution) -> LossDistribution {
        precondition(interval == other.interval)
        let width = masses.count + other.masses.count - 1
        var size = 1
        while size < width { size <<= 1 }
        var aRe = [Double](repeating: 0, count: size), aIm = [Double](repeating: 0, count: size)
        var bRe = [Double](repeating: 0, count: size), bIm = [Double](repeating: 0, count: size)
        for (i, m) in masses.enumerated() { aRe[i] = m }
        for (i, m) in other.masses.enumerated() { bRe[i] = m }
        FFT.transform(&aRe, &aIm, inverse: false)
        FFT.transform(&bRe, &bIm, inverse: false)
        for k in 0..<size {
            let r = aRe[k] * bRe[k] - aIm[k] * bIm[k]
            let i = aRe[k] * bIm[k] + aIm[k] * bRe[k]
            aRe[k] = r; aIm[k] = i
        }
        FFT.transform(&aRe, &aIm, inverse: true)
        let out = (0..<width).map { max(0, aRe[$0]) }
        let infinity = 1 - (1 - infinityMass) * (1 - other.infinityMass)
        return LossDistribution(interval: interval, offset: offset + other.offset, masses: out, infinityMass: infinity).trimmed()
    }

    /// Drops negligible leading and trailing masses (below 1e-30).
    func trimmed() -> LossDistribution {
        guard let first = masses.firstIndex(where: { $0 > 1e-30 }), let last = masses.lastIndex(where: { $0 > 1e-30 }) else {
            return LossDistribution(interval: interval, offset: offset, masses: [0], infinityMass: infinityMass)
        }
        var extra = 0.0
        for i in (last + 1)..<masses.count { extra += masses[i] }
        return LossDistribution(interval: interval, offset: offset + first, masses: Array(masses[first...last]),
                                infinityMass: min(1, infinityMass + extra))
    }

    /// Bounds L, U (grid units) with P[S < L], P[S > U] <= tailBound for the
    /// T-fold sum S of this distribution's finite part (Chernoff, over a grid of t).
    func chernoffWindow(times t: Double, tailBound: Double) -> (Int, Int) {
        let logTail = log(tailBound)
        let total = masses.reduce(0, +)
        let logTotal = log(total)
        var upper = Double(masses.count - 1 + offset) * t
        var lower = Double(offset) * t
        // Log-MGF of the normalised finite part, in grid units.
        func logMGF(_ s: Double) -> Double {
            var m = -Double.infinity
            for (i, p) in masses.enumerated() where p > 0 { m = max(m, log(p) + s * Double(i + offset)) }
            var sum = 0.0
            for (i, p) in masses.enumerated() where p > 0 { sum += exp(log(p) + s * Double(i + offset) - m) }
            return m + log(sum) - logTotal
        }
        var s = 1e-7
        while s < 10 {
            upper = min(upper, (t * logMGF(s) - logTail) / s)
            lower = max(lower, (logTail - t * logMGF(-s)) / s)
            s *= 1.5
        }
        return (Int(lower.rounded(.down)) - 1, Int(upper.rounded(.up)) + 1)
    }

    // MARK: Queries

    /// The smallest ε with δ(ε) <= delta (exact between grid points).
    func epsilon(delta: Double) -> Double {
        if infinityMass >= delta { return .infinity }
        let d = interval
        let decay = exp(-d)
        var a = 0.0       // Σ_{j > k} p_j
        var b = 0.0       // Σ_{j > k} p_j e^{-(l_j - l_k)}
        var k = masses.count - 1
        // δ(l_k) = inf + a - b, increasing as k goes down.
        while k >= 0 {
            let deltaAtK = infinityMass + a - b
            if deltaAtK > delta {
                // Between l_k and l_{k+1}: inf + a - e^(ε - l_k) b = delta.
                let e = Double(offset + k) * d + log((infinityMass + a - delta) / b)
                return max(0, e)
            }
            b = decay * (b + masses[k])
            a += masses[k]
            k -= 1
        }
        // δ at the lowest loss is still below target: any ε above it works.
        let e = Double(offset) * d + log(max(1e-300, infinityMass + a - delta) / max(b, 1e-300))
        return max(0, e.isFinite ? e : 0)
    }

    /// δ(ε) of the distribution.
    func delta(epsilon e: Double) -> Double {
        var sum = infinityMass
        for (i, p) in masses.enumerated() {
            let l = Double(offset + i) * interval
            if l > e { sum += p * -expm1(e - l) }
        }
        return sum
    }
}

// MARK: - Numerics

/// Φ(x), accurate in both tails.
func normalCDF(_ x: Double) -> Double {
    0.5 * erfc(-x / 2.squareRoot())
}

/// The x with ln Φ(x) = logP (for tail probabilities far below 1e-300 too).
func inverseStandardNormalCDFOfLogProbability(_ logP: Double) -> Double {
    var lo = -60.0, hi = 0.0
    for _ in 0..<200 {
        let mid = (lo + hi) / 2
        // ln Φ(mid) = ln(erfc(-mid/√2)/2)
        let value = RDPAccountant.logErfc(-mid / 2.squareRoot()) + log(0.5)
        if value < logP { lo = mid } else { hi = mid }
    }
    return (lo + hi) / 2
}

/// In-place iterative radix-2 FFT on split real/imaginary arrays (power-of-two length).
enum FFT {
    static func transform(_ re: inout [Double], _ im: inout [Double], inverse: Bool) {
        let n = re.count
        precondition(n & (n - 1) == 0 && im.count == n)
        guard n > 1 else { return }
        // Bit-reversal permutation.
        var j = 0
        for i in 1..<n {
            var bit = n >> 1
            while j & bit != 0 { j ^= bit; bit >>= 1 }
            j |= bit
            if i < j { re.swapAt(i, j); im.swapAt(i, j) }
        }
        let sign: Double = inverse ? 1 : -1
        re.withUnsafeMutableBufferPointer { r in
            im.withUnsafeMutableBufferPointer { m in
                var length = 2
                while length <= n {
                    let angle = sign * 2 * Double.pi / Double(length)
                    let half = length / 2
                    // Twiddles computed directly per stage (no drift from repeated multiplication).
                    var wr = [Double](repeating: 0, count: half), wi = [Double](repeating: 0, count: half)
                    for k in 0..<half { wr[k] = cos(angle * Double(k)); wi[k] = sin(angle * Double(k)) }
                    var start = 0
                    while start < n {
                        for k in 0..<half {
                            let a = start + k, b = a + half
                            let tr = r[b] * wr[k] - m[b] * wi[k]
                            let ti = r[b] * wi[k] + m[b] * wr[k]
                            r[b] = r[a] - tr; m[b] = m[a] - ti
                            r[a] += tr; m[a] += ti
                        }
                        start += length
                    }
                    length <<= 1
                }
                if inverse {
                    let scale = 1 / Double(n)
                    for i in 0..<n { r[i] *= scale; m[i] *= scale }
                }
            }
        }
    }
}
