/// Exact sampling of the discrete Gaussian N_Z(0, σ²) on the integers, using
/// only integer arithmetic and uniform random words: no floating point touches
/// a sample, so no low-order bit can carry information about anything but the
/// noise (the failure Mironov 2012 showed for floating-point samplers).
///
/// The construction is Karney's (2016, "Sampling exactly from the normal
/// distribution", algorithm D) for an integer σ: propose |x| = kσ + j with
/// k >= 0 drawn with P(k) ∝ e^(-k²/2), j uniform in [0, σ) and a random sign,
/// and accept with probability e^(-j(2kσ + j)/(2σ²)). The proposal's weight
/// times the acceptance is e^(-(kσ + j)²/(2σ²)), the target mass of x; each
/// integer has exactly one (k, j, sign) (zero only with the + sign). Every
/// accept/reject decision is an exact coin: e^(-m/128) against the binary
/// expansion (`ExpMinusDigits`), and the remaining e^(-r/(128σ²)), r < σ²,
/// by Canonne, Kamath and Steinke's (2020) Bernoulli algorithm. The proposal
/// is accepted about 71% of the time and a sample costs about 7 random words.
///
/// σ is an integer number of grid steps (callers round it up, which only adds noise).
public struct DiscreteGaussianSampler: Sendable {
    /// The standard deviation σ, in grid steps.
    public let sigma: UInt64
    private let sigmaSquared: UInt64
    /// ⌊(2^64 - 1) / σ²⌋: a quotient by σ² as a multiply (see `accepts`).
    private let sigmaSquaredReciprocal: UInt64
    private let thresholds: [UInt64]

    public init(sigma: UInt64) {
        precondition(sigma >= 1 && sigma < 1 << 26, "σ must be in 1..<2^26 grid steps")
        self.sigma = sigma
        sigmaSquared = sigma * sigma
        sigmaSquaredReciprocal = UInt64.max / sigmaSquared
        thresholds = ExpMinusDigits.firstWords
    }

    /// One sample from N_Z(0, σ²).
    func sample<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Int64 {
        while true {
            let k = halfSquareExponent(using: &bits)
            let j = bits.uniform(below: sigma)
            let negative = bits.next()
            if negative && k == 0 && j == 0 { continue } // zero has only the + sign
            guard accepts(k: k, j: j, using: &bits) else { continue }
            let magnitude = Int64(k &* sigma &+ j)
            return negative ? -magnitude : magnitude
        }
    }

    /// One sample, drawing from a plain generator (convenience for tests).
    func sample<R: RandomNumberGenerator>(using rng: inout R) -> Int64 {
        var bits = RandomBits(rng)
        defer { rng = bits.generator }
        return sample(using: &bits)
    }

    /// The coin e^(-j(2kσ + j)/(2σ²)) = e^(-m/128) · e^(-r/(128σ²)) with
    /// 64·j(2kσ + j) = m·σ² + r.
    @inline(__always)
    private func accepts<R: RandomNumberGenerator>(k: UInt64, j: UInt64, using bits: inout RandomBits<R>) -> Bool {
        // j < 2^26 and 2kσ + j < (2k + 1)·2^26, so 64·j(2kσ + j) fits in 64 bits while k < 32.
        guard k < 32 else {
            // Probability below e^-512 per proposal: one exact coin in 128 bits.
            let n = UInt128(j) * (2 * UInt128(k) * UInt128(sigma) + UInt128(j))
            return bernoulliExpMinusWide(numerator: n, denominator: 2 * UInt128(sigmaSquared), using: &bits)
        }
        let scaled = 64 * j * (2 * k * sigma + j)
        // The high word of scaled·⌊(2^64-1)/σ²⌋ undershoots the quotient by at most 2.
        var ticks = scaled.multipliedFullWidth(by: sigmaSquaredReciprocal).high
        var rest = scaled - ticks * sigmaSquared
        while rest >= sigmaSquared { ticks += 1; rest -= sigmaSquared }
        return expMinusCoin(ticks: Int(ticks), using: &bits)
            && bernoulliExpMinus(numerator: rest, denominator: 128 * sigmaSquared, using: &bits)
    }

    /// k >= 0 with P(k) ∝ e^(-k²/2) (Karney's algorithm G): a geometric k with
    /// P(k) ∝ e^(-k/2), accepted with probability e^(-k(k-1)/2).
    @inline(__always)
    private func halfSquareExponent<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> UInt64 {
        while true {
            let k = halfGeometric(using: &bits)
            if k < 2 { return k }
            if expMinusCoin(ticks: Int(k * (k - 1) / 2) * ExpMinusDigits.ticksPerUnit, using: &bits) { return k }
        }
    }

    /// k >= 0 with P(k >= m) = e^(-m/2): one uniform u, k = #{m in 1...7 : u < e^(-m/2)},
    /// continued (the law is memoryless) when u is below all seven.
    @inline(__always)
    func halfGeometric<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> UInt64 {
        let step = ExpMinusDigits.ticksPerUnit / 2
        var total: UInt64 = 0
        while true {
            let u = bits.generator.next()
            var k: UInt64 = 0
            var tie = 0
            for m in 1...7 {
                let threshold = thresholds[m * step]
                k += u < threshold ? 1 : 0
                if u == threshold { tie = m }
            }
            // u's first word equals the m-th threshold's (probability 2^-64): its later words decide.
            if tie != 0, ExpMinusDigits.resolveTie(ticks: tie * step, using: &bits.generator) { k += 1 }
            total += k
            if k < 7 { return total }
        }
    }

    /// The coin [u < e^(-ticks/128)] for fresh uniforms, any ticks >= 0.
    @inline(__always)
    private func expMinusCoin<R: RandomNumberGenerator>(ticks: Int, using bits: inout RandomBits<R>) -> Bool {
        var ticks = ticks
        // e^(-a-b) = e^(-a)·e^(-b): beyond the table, independent coins of e^-3.
        let three = 3 * ExpMinusDigits.ticksPerUnit
        while ticks >= ExpMinusDigits.tableTicks {
            if !tableCoin(ticks: three, using: &bits) { return false }
            ticks -= three
        }
        return tableCoin(ticks: ticks, using: &bits)
    }

    /// The coin [u < e^(-ticks/128)] for ticks in the table.
    @inline(__always)
    private func tableCoin<R: RandomNumberGenerator>(ticks: Int, using bits: inout RandomBits<R>) -> Bool {
        if ticks == 0 { return true }
        let u = bits.generator.next(), threshold = thresholds[ticks]
        if u != threshold { return u < threshold }
        return ExpMinusDigits.resolveTie(ticks: ticks, using: &bits.generator)
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

    /// A uniform integer in [0, bound), exactly (Lemire 2019: the high word
    /// of a random word times the bound, redrawn in the rare biased cases).
    @inline(__always)
    mutating func uniform(below bound: UInt64) -> UInt64 {
        var product = generator.next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = generator.next().multipliedFullWidth(by: bound) }
        }
        return product.high
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
    while true {
        let (bound, overflow) = d.multipliedReportingOverflow(by: k)
        let success = overflow
            ? bernoulli(numerator: UInt128(rest), denominator: UInt128(d) * UInt128(k), using: &bits)
            : bits.uniform(below: bound) < rest
        if !success { return k & 1 == 1 }
        k += 1
    }
}

/// Bernoulli(exp(-1)): K counts successes of Bernoulli(1/K) (the first is certain).
@inline(__always)
func bernoulliExpMinusOne<R: RandomNumberGenerator>(using bits: inout RandomBits<R>) -> Bool {
    var k: UInt64 = 2 // the first trial, Bernoulli(1/1), always succeeds
    while bits.uniform(below: k) == 0 { k += 1 }
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
