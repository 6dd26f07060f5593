/// Exact sampling of the discrete Gaussian N_Z(0, σ²) on the integers
/// (Canonne, Kamath, Steinke 2020, Algorithms 1-3), using only integer
/// arithmetic and uniform random bits: no floating point touches a sample,
/// so no low-order bit can carry information about anything but the noise
/// (the failure Mironov 2012 showed for floating-point samplers).
///
/// σ is an integer number of grid steps (callers round it up, which only
/// adds noise). The proposal scale is t = σ: CKS's rejection step is exact for
/// any t, and with t = σ the acceptance exponent (|y| - σ)²/(2σ²) has a
/// numerator and denominator that fit in 64 bits for σ < 2^26, so every
/// Bernoulli trial is one multiply-shift draw.
public struct DiscreteGaussianSampler: Sendable {
    /// The standard deviation σ, in grid steps.
    public let sigma: UInt64

    public init(sigma: UInt64) {
        precondition(sigma >= 1 && sigma < 1 << 26, "σ must be in 1..<2^26 grid steps")
        self.sigma = sigma
    }

    /// The variance σ².
    public var sigmaSquared: UInt64 { sigma * sigma }

    /// One sample from N_Z(0, σ²).
    func sample<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Int64 {
        let denominator = 2 * sigma * sigma
        while true {
            let y = discreteLaplace(using: &bits)
            // Accept with probability exp(-(|y| - σ²/t)² / (2σ²)) = exp(-(|y| - σ)² / (2σ²)).
            let magnitude = y.magnitude
            let difference = magnitude > sigma ? magnitude - sigma : sigma - magnitude
            let accepted: Bool
            if difference < 1 << 32 {
                accepted = bernoulliExpMinus(numerator: difference * difference, denominator: denominator, using: &bits)
            } else {
                // |y| >= 2^32 - σ (probability below e^-64 per proposal): the exact test in 128 bits.
                accepted = bernoulliExpMinusWide(numerator: UInt128(difference) * UInt128(difference),
                                                 denominator: UInt128(denominator), using: &bits)
            }
            if accepted { return y }
        }
    }

    /// One sample, drawing from a plain generator (convenience for tests).
    func sample<R: RandomNumberGenerator>(using rng: inout R) -> Int64 {
        var bits = RandomBits(rng)
        defer { rng = bits.generator }
        return sample(using: &bits)
    }

    /// Discrete Laplace with scale t = σ: P(x) ∝ exp(-|x|/t) (CKS Algorithm 2).
    func discreteLaplace<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Int64 {
        let t = sigma
        while true {
            let u = bits.generator.next(upperBound: t)
            guard bernoulliExpMinus(numerator: u, denominator: t, using: &bits) else { continue }
            var v: UInt64 = 0
            while bernoulliExpMinusOne(using: &bits) { v += 1 }
            let x = u &+ t &* v
            let negative = bits.next()
            if negative && x == 0 { continue }
            return negative ? -Int64(x) : Int64(x)
        }
    }
}

/// Uniform random bits from a generator, one 64-bit word at a time.
struct RandomBits<R: RandomNumberGenerator> {
    var generator: R
    private var word: UInt64 = 0
    private var remaining = 0

    init(_ generator: R) { self.generator = generator }

    @inline(__always)
    mutating func next() -> Bool {
        if remaining == 0 { word = generator.next(); remaining = 64 }
        let bit = word & 1 == 1
        word >>= 1
        remaining -= 1
        return bit
    }
}

/// Bernoulli(exp(-n/d)) for n >= 0, d > 0, exactly (CKS Algorithm 1 and its
/// extension to γ > 1: ⌊γ⌋ draws of Bernoulli(e^-1), then one of e^-(γ - ⌊γ⌋)).
/// Each Bernoulli(r/(d·K)) is one uniform draw below d·K (Lemire's method).
@inline(__always)
func bernoulliExpMinus<R: RandomNumberGenerator>(numerator n: UInt64, denominator d: UInt64, using bits: inout RandomBits<R>) -> Bool {
    var rest = n
    while rest >= d { // subtraction, not division: γ is rarely above a few units
        if !bernoulliExpMinusOne(using: &bits) { return false }
        rest -= d
    }
    // γ in [0, 1): K counts successes of Bernoulli(γ/K); the result is "K is odd".
    if rest == 0 { return true }
    var k: UInt64 = 1
    while bits.generator.next(upperBound: d * k) < rest { k += 1 }
    return k & 1 == 1
}

/// Bernoulli(exp(-1)): K counts successes of Bernoulli(1/K) (the first is certain).
@inline(__always)
func bernoulliExpMinusOne<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Bool {
    var k: UInt64 = 2 // the first trial, Bernoulli(1/1), always succeeds
    while bits.generator.next(upperBound: k) == 0 { k += 1 }
    return k & 1 == 1
}

/// Bernoulli(exp(-n/d)) for 128-bit n and d (the rare wide case of `sample`).
func bernoulliExpMinusWide<R: RandomNumberGenerator>(numerator n: UInt128, denominator d: UInt128, using bits: inout RandomBits<R>) -> Bool {
    var rest = n
    while rest >= d {
        if !bernoulliExpMinusOne(using: &bits) { return false }
        rest -= d
    }
    if rest == 0 { return true }
    var k: UInt128 = 1
    while bernoulli(numerator: rest, denominator: d * k, using: &bits) { k += 1 }
    return k & 1 == 1
}

/// Bernoulli(n/d) exactly, comparing random bits with the binary expansion of
/// n/d digit by digit (two bits on average).
func bernoulli<R: RandomNumberGenerator>(numerator n: UInt128, denominator d: UInt128, using bits: inout RandomBits<R>) -> Bool {
    if n >= d { return true }
    if n == 0 { return false }
    var remainder = n // remainder/d in [0, 1); d < 2^127 so doubling cannot overflow
    while true {
        remainder <<= 1
        let digit = remainder >= d
        if digit { remainder -= d }
        let bit = bits.next()
        if bit != digit { return digit } // first difference: u < p exactly when p's digit is 1
        if remainder == 0 { return false } // p's expansion ended: u >= p almost surely
    }
}
