/// An invalid privacy parameter, named precisely.
public struct PrivacyParameterError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One round's mechanism: Poisson sampling of customers at rate q, then the
/// Gaussian mechanism with noise multiplier z (noise std = z * clip norm).
public struct SubsampledGaussian: Hashable, Sendable, Codable {
    public var sampleRate: Double
    public var noiseMultiplier: Double

    /// Validates q in (0, 1] and z > 0, both finite.
    public init(sampleRate: Double, noiseMultiplier: Double) throws {
        guard sampleRate.isFinite, sampleRate > 0, sampleRate <= 1 else {
            throw PrivacyParameterError("sample rate q must be in (0, 1], got \(sampleRate)")
        }
        guard noiseMultiplier.isFinite, noiseMultiplier > 0 else {
            throw PrivacyParameterError("noise multiplier z must be a finite number > 0, got \(noiseMultiplier)")
        }
        self.sampleRate = sampleRate
        self.noiseMultiplier = noiseMultiplier
    }
}

func validateDelta(_ delta: Double) throws {
    guard delta.isFinite, delta > 0, delta < 1 else {
        throw PrivacyParameterError("delta must be in (0, 1), got \(delta)")
    }
}

func validateSteps(_ steps: Int) throws {
    guard steps >= 0 else { throw PrivacyParameterError("steps must be >= 0, got \(steps)") }
}
