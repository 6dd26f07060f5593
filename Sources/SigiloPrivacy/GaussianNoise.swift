import Foundation

/// The Gaussian mechanism on a grid: a sum of clipped updates is rounded to
/// multiples of step = C·2^-k and integer discrete-Gaussian noise of standard
/// deviation σ = z·2^k steps is added to every coordinate. The release is the
/// integer vector times the step; converting it to floats afterwards is
/// post-processing.
///
/// Accounting. Rounding each coordinate to the nearest grid point moves it by
/// at most half a step, so two neighbouring sums (one customer, L2 norm <= C,
/// apart) differ on the grid by at most 2^k + √d steps in L2 norm. The
/// accountant is therefore charged the effective multiplier
/// z_eff = σ / (2^k + √d), never the nominal z; k is chosen so that √d/2^k
/// is below 1/1000, costing at most 0.1% of the noise's value.
///
/// Why the continuous-Gaussian accountants apply. The discrete Gaussian has
/// Rényi divergence at most αΔ²/(2σ²) for integer shifts of norm Δ (Canonne,
/// Kamath, Steinke 2020), which at integer orders makes the Poisson-subsampling
/// bound of Zhu and Wang (2019) coincide term by term with the RDP formula of
/// the subsampled Gaussian used by `RDPAccountant`. For the PLD accountant:
/// with σ >= 2^10 grid steps, Poisson summation puts the discrete and the
/// continuous privacy-loss distributions within a factor 1 ± e^(-2π²σ²) of
/// each other, far below any δ we report.
public struct GaussianNoise: Sendable {
    public let clipNorm: Double
    public let noiseMultiplier: Double
    public let dimension: Int
    /// Grid step = clipNorm / 2^gridBits.
    public let gridBits: Int
    let sampler: DiscreteGaussianSampler

    /// Validates C > 0, z > 0 (finite) and d >= 1, and picks the grid.
    public init(clipNorm: Double, noiseMultiplier: Double, dimension: Int) throws {
        guard clipNorm.isFinite, clipNorm > 0 else { throw PrivacyParameterError("clip norm must be a finite number > 0, got \(clipNorm)") }
        guard noiseMultiplier.isFinite, noiseMultiplier > 0 else {
            throw PrivacyParameterError("noise multiplier must be a finite number > 0, got \(noiseMultiplier)")
        }
        guard dimension >= 1, dimension <= 1 << 32 else { throw PrivacyParameterError("dimension must be in 1...2^32, got \(dimension)") }
        self.clipNorm = clipNorm
        self.noiseMultiplier = noiseMultiplier
        self.dimension = dimension
        gridBits = max(10, Int((log2(1000 * Double(dimension).squareRoot())).rounded(.up)))
        // σ in grid steps, rounded up (more noise, never less).
        let sigma = (noiseMultiplier * Double(1 << gridBits)).rounded(.up)
        guard sigma < Double(1 << 26) else {
            throw PrivacyParameterError("noise multiplier \(noiseMultiplier) is too large for dimension \(dimension)'s grid")
        }
        sampler = DiscreteGaussianSampler(sigma: UInt64(sigma))
    }

    /// The grid step in update units.
    public var step: Double { clipNorm / Double(1 << gridBits) }

    /// The noise's standard deviation in grid steps.
    public var sigmaInSteps: UInt64 { sampler.sigma }

    /// The noise multiplier the accountant must be charged (<= the nominal one).
    public var effectiveNoiseMultiplier: Double {
        Double(sampler.sigma) / (Double(1 << gridBits) + Double(dimension).squareRoot())
    }

    /// Rounds `sum` to the grid and adds noise, using the secure generator.
    public func privatize(_ sum: inout [Float], using rng: SecureRandom) throws {
        var generator = rng
        try privatize(&sum, generator: &generator)
    }

    /// As `privatize(_:using:)`, with the coordinates split into blocks drawn
    /// on all cores, each block from its own secure generator. Every
    /// coordinate gets the same mechanism (round to the grid, add an exact
    /// discrete Gaussian); only the wall time differs. The coordinator uses
    /// it at round close, when nothing else runs and d may be in the millions.
    public func privatizeOnAllCores(_ sum: inout [Float]) throws {
        try validate(sum)
        let blockSize = 1 << 18
        let blocks = (sum.count + blockSize - 1) / blockSize
        sum.withUnsafeMutableBufferPointer { values in
            nonisolated(unsafe) let values = values // blocks write disjoint ranges
            DispatchQueue.concurrentPerform(iterations: blocks) { block in
                var bits = RandomBits(SecureRandom())
                addNoise(to: values, range: (block * blockSize)..<min(values.count, (block + 1) * blockSize), using: &bits)
            }
        }
    }

    /// For simulations only: noise from a seeded generator that is NOT
    /// cryptographically secure, so that a run can be repeated exactly.
    /// The tenant and coordinator programs never call this; `sigilo-eval`
    /// does only in its labelled `--insecure-seeded-noise` mode.
    public func privatizeWithInsecureSeededNoise(_ sum: inout [Float], seed: UInt64) throws {
        var generator = InsecureSeededGenerator(seed: seed)
        try privatize(&sum, generator: &generator)
    }

    /// As `privatize(_:using:)`; generic so that tests can pass a seeded generator.
    func privatize<R: RandomNumberGenerator>(_ sum: inout [Float], generator: inout R) throws {
        try validate(sum)
        var bits = RandomBits(generator)
        defer { generator = bits.generator }
        sum.withUnsafeMutableBufferPointer { addNoise(to: $0, range: $0.indices, using: &bits) }
    }

    /// The release on the grid itself, as integers: round(value / step) +
    /// N_Z(0, σ²) per coordinate. Secure aggregation adds these integers up
    /// exactly (modulo 2^64) before anything is converted back.
    public func gridRelease(_ sum: [Float], using rng: SecureRandom) throws -> [Int64] {
        var generator = rng
        return try gridRelease(sum, generator: &generator)
    }

    /// `gridRelease` with seeded, NOT secure noise: simulations only, as
    /// `privatizeWithInsecureSeededNoise`.
    public func gridReleaseWithInsecureSeededNoise(_ sum: [Float], seed: UInt64) throws -> [Int64] {
        var generator = InsecureSeededGenerator(seed: seed)
        return try gridRelease(sum, generator: &generator)
    }

    func gridRelease<R: RandomNumberGenerator>(_ sum: [Float], generator: inout R) throws -> [Int64] {
        try validate(sum)
        var bits = RandomBits(generator)
        defer { generator = bits.generator }
        let inverse = 1 / step
        return sum.map { Self.nearestInteger(Double($0) * inverse) &+ sampler.sample(using: &bits) }
    }

    /// Replaces each value in `range` by the release: (round(value / step) + N_Z(0, σ²)) · step.
    /// The values have been validated.
    private func addNoise<R: RandomNumberGenerator>(to values: UnsafeMutableBufferPointer<Float>, range: Range<Int>,
                                                    using bits: inout RandomBits<R>) {
        let inverse = 1 / step, s = step
        for i in range {
            let grid = Self.nearestInteger(Double(values[i]) * inverse) &+ sampler.sample(using: &bits)
            values[i] = Float(Double(grid) * s)
        }
    }

    /// Refuses a sum of the wrong dimension or with a value the grid cannot
    /// hold, before anything is changed.
    private func validate(_ sum: [Float]) throws {
        guard sum.count == dimension else { throw PrivacyParameterError("update has \(sum.count) values, mechanism expects \(dimension)") }
        let inverse = 1 / step
        for i in sum.indices { try checkGridPoint(sum[i], index: i, inverse: inverse) }
    }

    /// Refuses a non-finite value, or one too large for the grid's integers, naming `index`.
    @inline(__always)
    private func checkGridPoint(_ value: Float, index: Int, inverse: Double) throws {
        let v = Double(value)
        guard v.isFinite else { throw PrivacyParameterError("value \(index) of the sum is not finite") }
        guard abs(v * inverse) < 0x1p62 else { throw PrivacyParameterError("value \(index) of the sum (\(v)) is too large for the grid") }
    }

    /// x rounded to the nearest integer, halves away from zero (as `rounded()`),
    /// for |x| < 2^62, without the library call `rounded()` compiles to.
    @inline(__always)
    static func nearestInteger(_ x: Double) -> Int64 {
        let truncated = Int64(x)
        let fraction = x - Double(truncated) // exact: both are within 1 of each other
        return truncated + (fraction >= 0.5 ? 1 : 0) - (fraction <= -0.5 ? 1 : 0)
    }
}

/// SplitMix64: seeded, fast and NOT secure. For `privatizeWithInsecureSeededNoise`
/// and for tests (through @testable); release code paths never take it.
struct InsecureSeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
