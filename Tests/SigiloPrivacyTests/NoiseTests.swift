import Foundation
import Testing
@testable import SigiloPrivacy

/// The privacy module's own seeded generator: tests only, never production.
typealias SeededGenerator = InsecureSeededGenerator

@Suite struct DiscreteGaussianTests {
    static let samples = 1_000_000

    /// Chi-square over x in -4σ...4σ plus both tails (8σ + 2 degrees of
    /// freedom), 10^6 samples; the bound is the chi-square law's 1 - 10^-6
    /// quantile, so a correct sampler fails once in a million runs. σ = 1
    /// exercises the k of Karney's proposal alone (j is always 0), larger σ
    /// the uniform j and its acceptance coin.
    @Test(arguments: [(UInt64(1), 46.9), (2, 61.9), (3, 75.5), (7, 124.2)])
    func smallSigmaMatchesTheExactMassFunction(_ sigmaSteps: UInt64, _ bound: Double) {
        let sigma = Int(sigmaSteps)
        let sampler = DiscreteGaussianSampler(sigma: sigmaSteps)
        var rng = SeededGenerator(seed: 11 + sigmaSteps)
        var counts = [Int: Int]()
        for _ in 0..<Self.samples { counts[Int(sampler.sample(using: &rng)), default: 0] += 1 }
        let limit = 4 * sigma, far = 40 * sigma
        func weight(_ x: Int) -> Double { exp(-Double(x * x) / Double(2 * sigma * sigma)) }
        let total = (-far...far).reduce(0.0) { $0 + weight($1) }
        var chi2 = 0.0
        for x in -limit...limit {
            let expected = weight(x) / total * Double(Self.samples)
            let observed = Double(counts[x, default: 0])
            chi2 += (observed - expected) * (observed - expected) / expected
        }
        let tailExpected = ((limit + 1)...far).reduce(0.0) { $0 + weight($1) } / total * Double(Self.samples)
        for tail in [counts.filter { $0.key > limit }, counts.filter { $0.key < -limit }] {
            let observed = Double(tail.values.reduce(0, +))
            chi2 += (observed - tailExpected) * (observed - tailExpected) / tailExpected
        }
        #expect(chi2 < bound, "σ \(sigma): chi-square \(chi2)")
        let mean = counts.reduce(0.0) { $0 + Double($1.key * $1.value) } / Double(Self.samples)
        #expect(abs(mean) < 5 * Double(sigma) / Double(Self.samples).squareRoot())
    }

    /// σ = 1000 and σ = 2^21 steps (what a 4M-value update's grid uses).
    @Test(arguments: [UInt64(1000), UInt64(1) << 21])
    func largeSigmaMomentsTailsAndKolmogorovSmirnov(_ sigmaSteps: UInt64) {
        let sigma = Double(sigmaSteps)
        let sampler = DiscreteGaussianSampler(sigma: sigmaSteps)
        var rng = SeededGenerator(seed: 12)
        var values = [Double]()
        values.reserveCapacity(Self.samples)
        for _ in 0..<Self.samples { values.append(Double(sampler.sample(using: &rng))) }
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n
        #expect(abs(mean) < 5 * sigma / n.squareRoot())
        #expect(abs(variance / (sigma * sigma) - 1) < 0.01)
        // Tails: P(|X| > 3σ) = 0.0026998 for the Gaussian.
        let beyond3 = Double(values.filter { abs($0) > 3 * sigma }.count) / n
        #expect(abs(beyond3 - 0.0026998) < 0.0003)
        let beyond4 = values.filter { abs($0) > 4 * sigma }.count
        #expect(beyond4 > 20 && beyond4 < 110) // expected 63
        // Kolmogorov-Smirnov against N(0, σ²) (discreteness adds at most ~4e-4).
        values.sort()
        var d = 0.0
        for (i, v) in values.enumerated() where i % 97 == 0 || i == values.count - 1 {
            let cdf = normalCDF((v + 0.5) / sigma)
            d = max(d, abs(Double(i + 1) / n - cdf))
        }
        #expect(d < 0.0025, "KS statistic \(d)")
    }

    @Test func outputDependsOnlyOnTheNoise() throws {
        // The same generator state gives the same integer noise whatever the input.
        let mechanism = try GaussianNoise(clipNorm: 1, noiseMultiplier: 1.1, dimension: 1000)
        let a = (0..<1000).map { Float(sin(Double($0))) * 0.01 }
        let b = (0..<1000).map { Float($0 % 7) * 0.3 }
        var r1 = SeededGenerator(seed: 5), r2 = SeededGenerator(seed: 5)
        var ra = a, rb = b
        try mechanism.privatize(&ra, generator: &r1)
        try mechanism.privatize(&rb, generator: &r2)
        // Releases are grid points (|grid| < 2^24, so the floats hold them exactly).
        let inverse = 1 / mechanism.step
        let noiseA = zip(ra, a).map { Int64(Double($0) * inverse) - Int64((Double($1) * inverse).rounded()) }
        let noiseB = zip(rb, b).map { Int64(Double($0) * inverse) - Int64((Double($1) * inverse).rounded()) }
        #expect(noiseA == noiseB)
        #expect(Set(noiseA).count > 900) // and it is noise
    }

    @Test func gridMechanismChargesTheRoundingAndReleasesGridValues() throws {
        let mechanism = try GaussianNoise(clipNorm: 0.5, noiseMultiplier: 1.0, dimension: 4_000_000)
        #expect(mechanism.effectiveNoiseMultiplier <= 1.0)
        #expect(mechanism.effectiveNoiseMultiplier > 0.999)
        var values = [Float](repeating: 0.25, count: 16)
        let small = try GaussianNoise(clipNorm: 1, noiseMultiplier: 2, dimension: 16)
        var rng = SeededGenerator(seed: 9)
        try small.privatize(&values, generator: &rng)
        for v in values { #expect((Double(v) / small.step).rounded() == Double(v) / small.step) }
        let sd = (values.map { Double($0 - 0.25) * Double($0 - 0.25) }.reduce(0, +) / 16).squareRoot()
        #expect(sd > 0.5 && sd < 4) // z·C = 2
    }

    @Test func gridRoundingIsRoundHalfAwayFromZero() {
        var rng = SeededGenerator(seed: 21)
        let halves = (-8...8).map { Double($0) + 0.5 } + [0.49999999999999994, -0.49999999999999994, 0x1p52 + 1, -0x1p61]
        let random = (0..<10_000).map { _ in Double(Int64(bitPattern: rng.next()) >> Int(rng.next() % 60)) * 0.37 }
        for x in halves + random {
            #expect(GaussianNoise.nearestInteger(x) == Int64(x.rounded()), "x = \(x)")
        }
    }

    @Test func noiseOnAllCoresHasTheMechanismsLawInEveryBlock() throws {
        // 4 blocks of 2^18: each drawn by its own generator on its own thread.
        let d = 1 << 20, clip = 0.5, z = 1.5
        let mechanism = try GaussianNoise(clipNorm: clip, noiseMultiplier: z, dimension: d)
        var values = [Float](repeating: 0.125, count: d)
        try mechanism.privatizeOnAllCores(&values)
        let sigma = z * clip
        for block in 0..<4 {
            let noise = values[(block << 18)..<((block + 1) << 18)].map { Double($0) - 0.125 }
            let mean = noise.reduce(0, +) / Double(noise.count)
            let sd = (noise.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(noise.count - 1)).squareRoot()
            #expect(abs(mean) < 5 * sigma / Double(noise.count).squareRoot(), "block \(block) mean \(mean)")
            #expect(abs(sd / sigma - 1) < 0.01, "block \(block) sd \(sd) vs \(sigma)")
        }
        for v in values.prefix(1000) { #expect((Double(v) / mechanism.step).rounded() == Double(v) / mechanism.step) }
        #expect(values[0..<1000] != values[(1 << 18)..<((1 << 18) + 1000)], "two blocks drew the same stream")
        // A non-finite input is refused before any noise is added.
        var bad = [Float](repeating: 1, count: d)
        bad[d - 1] = .infinity
        #expect(throws: PrivacyParameterError.self) { try mechanism.privatizeOnAllCores(&bad) }
        #expect(bad[0] == 1)
    }

    @Test func badInputIsRefused() throws {
        #expect(throws: PrivacyParameterError.self) { try GaussianNoise(clipNorm: 0, noiseMultiplier: 1, dimension: 3) }
        #expect(throws: PrivacyParameterError.self) { try GaussianNoise(clipNorm: 1, noiseMultiplier: .nan, dimension: 3) }
        let mechanism = try GaussianNoise(clipNorm: 1, noiseMultiplier: 1, dimension: 3)
        var rng = SeededGenerator(seed: 1)
        var nonFinite: [Float] = [1, .nan, 2], short: [Float] = [1, 2]
        #expect(throws: PrivacyParameterError.self) { try mechanism.privatize(&nonFinite, generator: &rng) }
        #expect(throws: PrivacyParameterError.self) { try mechanism.privatize(&short, generator: &rng) }
        #expect(nonFinite[0] == 1 && nonFinite[2] == 2 && short == [1, 2]) // untouched
    }

    @Test func secureRandomIsNotConstantAndCopiesShareOneStream() {
        let rng = SecureRandom()
        let copy = rng
        let a = (0..<10_000).map { _ in rng.next() }
        let b = (0..<10_000).map { _ in copy.next() }
        #expect(Set(a).count == 10_000)
        #expect(Set(a).isDisjoint(with: b))
        let ones = a.reduce(0) { $0 + $1.nonzeroBitCount }
        #expect(abs(Double(ones) / 640_000 - 0.5) < 0.01)
    }
}

@Suite struct ClippingTests {
    @Test func clipsTheWholeUpdateBiasIncluded() throws {
        var tensors: [[Float]] = [[3, 0], [0, 4]] // norm 5 across both tensors
        let before = try Clipping.clip(&tensors, to: 1)
        #expect(before == 5)
        #expect(try Clipping.norm(tensors) <= 1)
        #expect(abs(tensors[0][0] - 0.6) < 1e-6 && abs(tensors[1][1] - 0.8) < 1e-6)
        var small: [[Float]] = [[0.1, 0.2]]
        try Clipping.clip(&small, to: 1)
        #expect(small == [[0.1, 0.2]])
    }

    @Test func neverExceedsTheClipNormOnManyRandomVectors() throws {
        var rng = SeededGenerator(seed: 3)
        for _ in 0..<200 {
            var t: [[Float]] = [(0..<257).map { _ in Float.random(in: -10...10, using: &rng) }, [Float.random(in: -100...100, using: &rng)]]
            let c = Double.random(in: 0.001...5, using: &rng)
            try Clipping.clip(&t, to: c)
            #expect(try Clipping.norm(t) <= c)
        }
    }

    @Test func nonFiniteIsAnErrorNotAClip() {
        var t: [[Float]] = [[1, .infinity]]
        #expect(throws: PrivacyParameterError.self) { try Clipping.clip(&t, to: 1) }
        var n: [[Float]] = [[.nan]]
        #expect(throws: PrivacyParameterError.self) { try Clipping.clip(&n, to: 1) }
        var ok: [[Float]] = [[1]]
        #expect(throws: PrivacyParameterError.self) { try Clipping.clip(&ok, to: 0) }
    }
}

@Suite struct LedgerTests {
    @Test func chargesAnswersBeforeChargingAndRoundTrips() throws {
        var ledger = try PrivacyLedger(delta: 1e-5)
        // The calibrated multiplier for ε = 8 over 300 rounds (pfl quotes it rounded, as 1.286).
        let z = try NoiseCalibration.noiseMultiplier(epsilon: 8, delta: 1e-5, sampleRate: 0.1, steps: 300)
        let round = try SubsampledGaussian(sampleRate: 0.1, noiseMultiplier: z)
        for i in 0..<299 { try ledger.charge(round: "r\(i)", round, at: Date(timeIntervalSince1970: Double(i))) }
        // Round 300 still fits ε = 8 (calibrated); a 301st would not.
        #expect(try ledger.wouldExceed(8, adding: round) == false)
        try ledger.charge(round: "r299", round, at: Date(timeIntervalSince1970: 299))
        #expect(try ledger.wouldExceed(8, adding: round) == true)
        #expect(try ledger.epsilon() <= 8)
        #expect(throws: PrivacyParameterError.self) { try ledger.charge(round: "r5", round, at: Date()) }
        let decoded = try PrivacyLedger.decode(ledger.encoded())
        #expect(decoded == ledger)
    }

    @Test func corruptedLedgersAreRefused() throws {
        #expect(throws: PrivacyParameterError.self) { try PrivacyLedger.decode(Data("{}".utf8)) }
        let bad = #"{"delta":1e-5,"entries":[{"round":"a","sampleRate":2,"noiseMultiplier":1,"time":"2026-11-29T00:00:00Z"}]}"#
        #expect(throws: PrivacyParameterError.self) { try PrivacyLedger.decode(Data(bad.utf8)) }
        let twice = #"{"delta":1e-5,"entries":[{"round":"a","sampleRate":0.1,"noiseMultiplier":1,"time":"2026-11-29T00:00:00Z"},{"round":"a","sampleRate":0.1,"noiseMultiplier":1,"time":"2026-11-29T00:00:00Z"}]}"#
        #expect(throws: PrivacyParameterError.self) { try PrivacyLedger.decode(Data(twice.utf8)) }
        #expect(throws: PrivacyParameterError.self) { try PrivacyLedger(delta: 0) }
    }
}

@Suite struct AdaptiveClippingTests {
    /// Log-normal update norms: median e^0 = 1, so the 0.5-quantile is 1 and the 0.8-quantile e^(0.8416·0.6).
    func norms(_ count: Int, _ rng: inout SeededGenerator) -> [Double] {
        (0..<count).map { _ in
            let u1 = Double.random(in: Double.ulpOfOne..<1, using: &rng), u2 = Double.random(in: 0..<1, using: &rng)
            return exp(0.6 * (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
        }
    }

    @Test(arguments: [0.01, 1.0, 100.0])
    func convergesToTheMedianWithin100Rounds(_ start: Double) throws {
        // η = 0.2 moves ln C by at most η/2 per round towards the median: ln 100 takes ~46 rounds.
        for (quantile, truth) in [(0.5, 1.0)] {
            var clipping = try AdaptiveClipping(initialClipNorm: start, targetQuantile: quantile, learningRate: 0.2, countNoise: 500.0 / 20)
            var rng = SeededGenerator(seed: 21)
            for _ in 0..<100 { clipping.update(norms: norms(500, &rng), expectedCount: 500, generator: &rng) }
            #expect(abs(clipping.clipNorm / truth - 1) < 0.05, "from \(start), quantile \(quantile): \(clipping.clipNorm) vs \(truth)")
        }
    }

    @Test func tracksAnotherQuantile() throws {
        let truth = exp(0.8416 * 0.6) // the 0.8-quantile
        var clipping = try AdaptiveClipping(initialClipNorm: 1, targetQuantile: 0.8, learningRate: 0.2, countNoise: 500.0 / 20)
        var rng = SeededGenerator(seed: 22)
        for _ in 0..<100 { clipping.update(norms: norms(500, &rng), expectedCount: 500, generator: &rng) }
        #expect(abs(clipping.clipNorm / truth - 1) < 0.05, "\(clipping.clipNorm) vs \(truth)")
    }

    @Test func shrinksWhenEverythingIsUnclippedAndGrowsWhenEverythingIsClipped() throws {
        // The inverted indicator (counting clipped updates) fails both directions.
        var rng = SeededGenerator(seed: 2)
        var big = try AdaptiveClipping(initialClipNorm: 10, countNoise: 1)
        big.update(norms: Array(repeating: 0.1, count: 100), expectedCount: 100, generator: &rng)
        #expect(big.clipNorm < 10)
        var small = try AdaptiveClipping(initialClipNorm: 0.01, countNoise: 1)
        small.update(norms: Array(repeating: 5, count: 100), expectedCount: 100, generator: &rng)
        #expect(small.clipNorm > 0.01)
    }

    @Test func countNoiseIsChargedToTheAccountant() throws {
        let clipping = try AdaptiveClipping(initialClipNorm: 1, countNoise: 5)
        let combined = clipping.combinedNoiseMultiplier(updateNoiseMultiplier: 1.0)
        #expect(combined < 1.0)
        #expect(abs(combined - 1 / (1 + 1.0 / 100).squareRoot()) < 1e-12)
    }
}

@Suite struct ExactBernoulliTests {
    @Test func wideBernoulliMatchesItsProbability() {
        var bits = RandomBits(SeededGenerator(seed: 4))
        // p = 1/3 with a 100-bit denominator; exp(-1/2) through the wide path.
        let d = UInt128(3) << 98
        let hits = (0..<200_000).filter { _ in bernoulli(numerator: UInt128(1) << 98, denominator: d, using: &bits) }.count
        #expect(abs(Double(hits) / 200_000 - 1.0 / 3) < 0.005)
        let e = (0..<200_000).filter { _ in bernoulliExpMinusWide(numerator: UInt128(1) << 90, denominator: UInt128(1) << 91, using: &bits) }.count
        #expect(abs(Double(e) / 200_000 - exp(-0.5)) < 0.005)
        let narrow = (0..<200_000).filter { _ in bernoulliExpMinus(numerator: 5, denominator: 2, using: &bits) }.count
        #expect(abs(Double(narrow) / 200_000 - exp(-2.5)) < 0.003)
    }
}

@Suite struct ExpMinusDigitsTests {
    /// ⌊e^(-t/128) · 2^192⌋ in three words, from Python's decimal module at 200 digits.
    @Test(arguments: [
        (1, [UInt64(0xfe01_feab_5511_27cb), 0xfe5f_8999_4c44_216f, 0x70d4_017a_ec23_4b1f]),
        (64, [0x9b45_97e3_7cb0_4ff3, 0xd675_a355_30cd_d767, 0xe347_bf8a_d0e8_0abb]),
        (128, [0x5e2d_58d8_b3bc_df1a, 0xbade_c782_9054_f90d, 0xda98_05aa_b56c_7733]),
        (384, [0x0cbe_d866_6758_5764, 0xa413_0191_c840_8680, 0x3a08_ae39_cdc3_18c6]),
        (511, [0x04b9_bf7f_d2cf_4db7, 0x6300_489f_51aa_8f45, 0x8e22_83f4_52b4_7437]),
    ])
    func digitsMatchAnIndependentComputation(_ ticks: Int, _ words: [UInt64]) {
        #expect(ExpMinusDigits.fractionWords(ticks: ticks, count: 3) == words)
        #expect(ExpMinusDigits.firstWords[ticks] == words[0])
    }

    @Test func everyTableWordAgreesWithTheFloatingPointExponential() {
        for ticks in 1..<ExpMinusDigits.tableTicks {
            let approximate = exp(-Double(ticks) / 128) * 0x1p64
            #expect(abs(Double(ExpMinusDigits.firstWords[ticks]) - approximate) < approximate * 0x1p-50, "ticks \(ticks)")
        }
    }

    @Test func aTiedFirstWordIsDecidedByTheNextWords() {
        // e^-1 = 0x5e2d58d8b3bcdf1a badec7829054f90d da9805aab56c7733...; the first word already tied.
        func coin(_ words: [UInt64]) -> Bool {
            var generator = ScriptedGenerator(words)
            return ExpMinusDigits.resolveTie(ticks: 128, using: &generator)
        }
        #expect(coin([0xbade_c782_9054_f90c]))
        #expect(!coin([0xbade_c782_9054_f90e]))
        #expect(coin([0xbade_c782_9054_f90d, 0xda98_05aa_b56c_7732]))
        #expect(!coin([0xbade_c782_9054_f90d, 0xda98_05aa_b56c_7734]))
    }

    @Test func theGeometricStepResolvesATieWithItsThreshold() {
        // u's first word equals ⌊e^(-1/2)·2^64⌋: only u's second word says whether u < e^(-1/2).
        let sampler = DiscreteGaussianSampler(sigma: 5)
        var below = RandomBits(ScriptedGenerator([0x9b45_97e3_7cb0_4ff3, 0]))
        var above = RandomBits(ScriptedGenerator([0x9b45_97e3_7cb0_4ff3, .max]))
        #expect(sampler.halfGeometric(using: &below) == 1)
        #expect(sampler.halfGeometric(using: &above) == 0)
    }
}

/// Hands out the given words, then fails the test: a coin must not read more than it was scripted.
struct ScriptedGenerator: RandomNumberGenerator {
    var words: [UInt64]
    init(_ words: [UInt64]) { self.words = words }
    mutating func next() -> UInt64 {
        guard !words.isEmpty else { Issue.record("the coin read more words than scripted"); return 0 }
        return words.removeFirst()
    }
}
