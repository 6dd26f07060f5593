/// Exact sampling of the discrete Gaussian N_Z(0, σ²) on the integers
/// (Canonne, Kamath, Steinke 2020, Algorithms 1-3), using only integer
/// arithmetic and uniform random bits: no floating point touches a sample,
/// so no low-order bit can carry information about anything but the noise
/// (the failure Mironov 2012 showed for floating-point samplers).
///
/// σ² is an integer (the caller rounds it up, which only adds noise).
public struct DiscreteGaussianSampler: Sendable {
    /// The variance parameter σ² (in grid units squared).
    public let sigmaSquared: UInt128
    /// t = ⌊σ⌋ + 1, the scale of the discrete Laplace proposal.
    let t: UInt64
    /// 2σ²t², the denominator of the acceptance exponent.
    let acceptanceDenominator: UInt128

    public init(sigmaSquared: UInt128) {
        precondition(sigmaSquared >= 1 && sigmaSquared < (1 << 80), "σ² out of range")
        self.sigmaSquared = sigmaSquared
        t = UInt64(isqrt(sigmaSquared)) + 1
        acceptanceDenominator = 2 * sigmaSquared * UInt128(t) * UInt128(t)
    }

    /// One sample from N_Z(0, σ²).
    func sample<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Int64 {
        while true {
            let y = discreteLaplace(using: &bits)
            // Accept with probability exp(-(|y| - σ²/t)² / (2σ²)) = exp(-(|y|·t - σ²)² / (2σ²t²)).
            let magnitude = UInt128(y.magnitude) * UInt128(t)
            let difference = magnitude > sigmaSquared ? magnitude - sigmaSquared : sigmaSquared - magnitude
            if bernoulliExpMinus(numerator: difference * difference, denominator: acceptanceDenominator, using: &bits) {
                return y
            }
        }
    }

    /// One sample, drawing from a plain generator (convenience for tests).
    func sample<R: RandomNumberGenerator>(using rng: inout R) -> Int64 {
        var bits = RandomBits(rng)
        defer { rng = bits.generator }
        return sample(using: &bits)
    }

    /// Discrete Laplace with scale t: P(x) ∝ exp(-|x|/t) (CKS Algorithm 2).
    func discreteLaplace<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Int64 {
        while true {
            let u = bits.generator.next(upperBound: t)
            guard bernoulliExpMinus(numerator: UInt128(u), denominator: UInt128(t), using: &bits) else { continue }
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

/// Bernoulli(n/d) exactly, by comparing random bits with the binary
/// expansion of n/d digit by digit (two bits on average).
@inline(__always)
func bernoulli<R: RandomNumberGenerator>(numerator n: UInt128, denominator d: UInt128, using bits: inout RandomBits<R>) -> Bool {
    if n >= d { return true }
    if n == 0 { return false }
    var remainder = n // the fraction remainder/d in [0, 1); d < 2^127 so doubling cannot overflow
    while true {
        remainder <<= 1
        let digit = remainder >= d
        if digit { remainder -= d }
        let bit = bits.next()
        if bit != digit { return digit } // first difference: u < p exactly when p's digit is 1
        if remainder == 0 { return false } // p's expansion ended; u >= p almost surely
    }
}

/// Bernoulli(exp(-n/d)) for n >= 0, d > 0, exactly (CKS Algorithm 1 and its
/// extension to γ > 1: ⌊γ⌋ draws of Bernoulli(e^-1), then one of e^-(γ - ⌊γ⌋)).
@inline(__always)
func bernoulliExpMinus<R: RandomNumberGenerator>(numerator n: UInt128, denominator d: UInt128, using bits: inout RandomBits<R>) -> Bool {
    // Subtraction instead of 128-bit division: γ is rarely above a few units.
    var rest = n
    while rest >= d {
        if !bernoulliExpMinusOne(using: &bits) { return false }
        rest -= d
    }
    // γ in [0, 1): K counts successes of Bernoulli(γ/K); the result is "K is odd".
    if rest == 0 { return true }
    var k: UInt64 = 1
    if d <= UInt128(UInt64.max >> 8) {
        // Small denominators: one multiply-shift draw per trial (Lemire) beats bit comparison.
        let d64 = UInt64(d), r64 = UInt64(rest)
        while bits.generator.next(upperBound: d64 * k) < r64 { k += 1 }
    } else {
        while bernoulli(numerator: rest, denominator: d * UInt128(k), using: &bits) { k += 1 }
    }
    return k & 1 == 1
}

/// Bernoulli(exp(-1)): K counts successes of Bernoulli(1/K) (the first is certain).
@inline(__always)
func bernoulliExpMinusOne<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Bool {
    var k: UInt64 = 2
    while bits.generator.next(upperBound: k) == 0 { k += 1 }
    return k & 1 == 1
}

/// ⌊√n⌋ for a 128-bit integer (a float estimate, then exact correction).
func isqrt(_ n: UInt128) -> UInt128 {
    if n < 2 { return n }
    var x = UInt128(Double(n).squareRoot())
    while x * x > n { x -= 1 }
    while (x + 1) * (x + 1) <= n { x += 1 }
    return x
}
