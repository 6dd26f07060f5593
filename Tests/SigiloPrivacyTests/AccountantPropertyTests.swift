import Foundation
import Testing
@testable import SigiloPrivacy

/// Properties that need no reference implementation.
@Suite struct AccountantPropertyTests {
    func gaussian(_ q: Double, _ z: Double) throws -> SubsampledGaussian { try SubsampledGaussian(sampleRate: q, noiseMultiplier: z) }

    @Test(arguments: AccountantKind.allCases)
    func monotoneInSampleRateStepsAndNoise(_ accountant: AccountantKind) throws {
        let base = try accountant.epsilon([(gaussian(0.05, 1.2), 50)], delta: 1e-5)
        #expect(try accountant.epsilon([(gaussian(0.1, 1.2), 50)], delta: 1e-5) > base)
        #expect(try accountant.epsilon([(gaussian(0.05, 1.2), 100)], delta: 1e-5) > base)
        #expect(try accountant.epsilon([(gaussian(0.05, 1.0), 50)], delta: 1e-5) > base)
        #expect(try accountant.epsilon([(gaussian(0.05, 1.2), 50)], delta: 1e-6) > base)
        #expect(try accountant.epsilon([(gaussian(0.05, 1.2), 0)], delta: 1e-5) == 0)
    }

    @Test func pldAtFullSamplingIsTheExactGaussianMechanism() throws {
        // Balle & Wang (2018): δ(ε) = Φ(1/(2σ) - εσ) - e^ε Φ(-1/(2σ) - εσ) for sensitivity 1;
        // T rounds at q = 1 are one Gaussian with σ/√T.
        for (sigma, steps) in [(1.0, 1), (2.0, 4), (0.8, 3)] {
            let s = sigma / Double(steps).squareRoot()
            func delta(_ e: Double) -> Double { normalCDF(1 / (2 * s) - e * s) - exp(e) * normalCDF(-1 / (2 * s) - e * s) }
            var lo = 0.0, hi = 100.0
            for _ in 0..<200 { let mid = (lo + hi) / 2; if delta(mid) > 1e-5 { lo = mid } else { hi = mid } }
            let pld = try PLDAccountant.epsilon(gaussian(1, sigma), steps: steps, delta: 1e-5)
            // Pessimistic and tight: never below the truth, within the grid's reach above it.
            #expect(pld >= hi - 1e-9)
            #expect(pld - hi < 2e-3 * Double(steps))
        }
    }

    @Test func rdpAtFullSamplingIsTheClosedForm() {
        for alpha in [1.5, 2, 7.3, 32] {
            #expect(abs(RDPAccountant.rdp(q: 1, sigma: 1.3, order: alpha) - alpha / (2 * 1.69)) < 1e-12)
        }
    }

    @Test(arguments: [(0.1, 1.0, 3.3), (0.01, 1.1, 2.5), (0.2, 1.5, 5.7), (0.05, 0.8, 12.0), (0.3, 2.0, 1.5)])
    func rdpEqualsNumericalIntegration(_ q: Double, _ sigma: Double, _ alpha: Double) {
        // A_α = E_{x ~ N(0, σ²)} [(1 - q + q exp((2x - 1)/(2σ²)))^α], integrated by the midpoint rule.
        var sum = 0.0
        let h = 1e-3 * sigma
        var x = -40 * sigma
        while x < 40 * sigma {
            let m = x + h / 2
            let density = exp(-m * m / (2 * sigma * sigma)) / (sigma * (2 * Double.pi).squareRoot())
            sum += density * pow(1 - q + q * exp((2 * m - 1) / (2 * sigma * sigma)), alpha) * h
            x += h
        }
        let exact = log(sum) / (alpha - 1)
        let computed = RDPAccountant.rdp(q: q, sigma: sigma, order: alpha)
        #expect(abs(computed - exact) / exact < 1e-6, "\(computed) vs \(exact)")
    }

    @Test func pldIsTighterThanRdp() throws {
        for (q, z, t) in [(0.1, 1.0, 100), (0.01, 1.1, 1000), (0.2, 2.0, 200)] {
            let round = try gaussian(q, z)
            #expect(try PLDAccountant.epsilon(round, steps: t, delta: 1e-5) < RDPAccountant.epsilon(round, steps: t, delta: 1e-5))
        }
    }

    @Test func mixedCompositionLiesBetweenItsParts() throws {
        let a = try gaussian(0.1, 1.0), b = try gaussian(0.1, 2.0)
        for accountant in AccountantKind.allCases {
            let mixed = try accountant.epsilon([(a, 50), (b, 50)], delta: 1e-5)
            let quiet = try accountant.epsilon([(b, 100)], delta: 1e-5)
            let loud = try accountant.epsilon([(a, 100)], delta: 1e-5)
            #expect(mixed > quiet)
            #expect(mixed < loud)
        }
    }

    @Test func badParametersAreRefusedWithTheirName() {
        #expect(throws: PrivacyParameterError("sample rate q must be in (0, 1], got 0.0")) { try gaussian(0, 1) }
        #expect(throws: PrivacyParameterError.self) { try gaussian(1.5, 1) }
        #expect(throws: PrivacyParameterError.self) { try gaussian(.nan, 1) }
        #expect(throws: PrivacyParameterError("noise multiplier z must be a finite number > 0, got -1.0")) { try gaussian(0.1, -1) }
        #expect(throws: PrivacyParameterError.self) { try gaussian(0.1, .infinity) }
        #expect(throws: PrivacyParameterError("steps must be >= 0, got -1")) { try RDPAccountant.epsilon(gaussian(0.1, 1), steps: -1, delta: 1e-5) }
        #expect(throws: PrivacyParameterError("delta must be in (0, 1), got 1.0")) { try PLDAccountant.epsilon(gaussian(0.1, 1), steps: 1, delta: 1) }
        #expect(throws: PrivacyParameterError.self) { try PLDAccountant.epsilon(gaussian(0.1, 1), steps: 1, delta: .nan) }
    }
}

@Suite struct CalibrationTests {
    @Test func matchesThePflReferenceCalibration() throws {
        // ../shared/reference/pfl/README.md: q = 0.1, 300 rounds, ε = 8, δ = 1e-5 needs z = 1.286 (PLD), 1.361 (RDP).
        let pld = try NoiseCalibration.noiseMultiplier(epsilon: 8, delta: 1e-5, sampleRate: 0.1, steps: 300)
        let rdp = try NoiseCalibration.noiseMultiplier(epsilon: 8, delta: 1e-5, sampleRate: 0.1, steps: 300, accountant: .rdp)
        #expect(abs(pld - 1.286) <= 0.002, "PLD calibration \(pld)")
        #expect(abs(rdp - 1.361) <= 0.002, "RDP calibration \(rdp)")
        // The calibrated value always meets the target.
        #expect(try PLDAccountant.epsilon(SubsampledGaussian(sampleRate: 0.1, noiseMultiplier: pld), steps: 300, delta: 1e-5) <= 8)
    }

    @Test func maximumStepsIsTheLastRoundWithinBudget() throws {
        let round = try SubsampledGaussian(sampleRate: 0.05, noiseMultiplier: 1.0)
        let steps = try NoiseCalibration.maximumSteps(epsilon: 3, delta: 1e-5, round: round, accountant: .rdp)
        #expect(steps > 0)
        #expect(try RDPAccountant.epsilon(round, steps: steps, delta: 1e-5) <= 3)
        #expect(try RDPAccountant.epsilon(round, steps: steps + 1, delta: 1e-5) > 3)
        #expect(try NoiseCalibration.maximumSteps(epsilon: 0.01, delta: 1e-5, round: SubsampledGaussian(sampleRate: 1, noiseMultiplier: 0.5)) == 0)
    }
}
