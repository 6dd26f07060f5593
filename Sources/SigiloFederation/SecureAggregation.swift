import SigiloCrypto
import SigiloPrivacy

/// Why a secure-aggregation step was refused: names what is wrong.
public struct SecureAggregationError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Secure placement (protocol/PROTOCOL.md, "Secure aggregation"): each
/// tenant of a round's cohort adds a share of the round's noise to its own
/// sum, on the noise mechanism's integer grid, and hides the result under a
/// self mask and pairwise masks with its neighbours (SecureRound.swift). The
/// coordinator adds the masked vectors modulo 2^64, removes the masks with
/// the shares the survivors reveal, and learns the total, noised at least at
/// the round's full σ, and nothing about any single tenant's vector. The
/// aggregate thus carries central placement's noise instead of tenant
/// placement's √n times more, without trusting the coordinator with an
/// un-noised sum, and a round completes as long as t tenants stay to the end.
///
/// Trust: the coordinator may read everything it relays but follows the
/// protocol's order; the threat model (protocol/SECURITY.md) says what a
/// coordinator that deviates, or enrols sybil tenants, can and cannot learn.
///
/// Accounting: a round is charged exactly as a central round at the plan's
/// noise multiplier. Each share is an independent discrete Gaussian with
/// σᵢ = ⌈σ/√t⌉ grid steps (σ being the full mechanism's, t the round's
/// threshold), and no sum of fewer than t inputs is ever unmasked, so any
/// released sum carries variance at least tσᵢ² >= σ². Survivors beyond t add
/// more (their count over t, in variance). The sum is not exactly a discrete
/// Gaussian, but Kairouz, Liu and Steinke (2021, "The distributed discrete
/// Gaussian mechanism") bound its distance from N_Z(0, mσᵢ²) by terms in
/// e^(-2π²σᵢ²·m/(m+1)); shares below 16 steps are refused, so these are below
/// 10^-1000, nothing next to any δ we report (a plan's grid makes σᵢ
/// thousands of steps). Rounding to the grid is each tenant's own, as at
/// tenant placement, and one customer is in one tenant: the sensitivity on
/// the grid stays 2^k + √d steps.
public enum SecureAggregation {
    /// The round's whole mechanism: its grid step and the σ the shares add up to.
    public static func mechanism(_ plan: Plan) throws -> GaussianNoise {
        try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension)
    }

    /// One tenant's share when at least `t` shares reach any released sum: σᵢ = ⌈σ/√t⌉ steps on the same grid.
    public static func noiseShare(_ plan: Plan, threshold t: Int) throws -> GaussianNoise {
        guard t >= 1 else { throw SecureAggregationError("a released sum needs at least one tenant") }
        let full = try mechanism(plan)
        let sigma = full.sigmaInSteps // < 2^26, so the squares below are exact
        var steps = UInt64((Double(sigma) / Double(t).squareRoot()).rounded(.up))
        while steps * steps * UInt64(t) < sigma * sigma { steps += 1 } // whatever the square root's rounding
        // steps / 2^k is exact, so the mechanism's own rounding up keeps exactly `steps`.
        let noise = try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: Double(steps) / Double(1 << full.gridBits), dimension: plan.dimension)
        guard noise.sigmaInSteps >= 16 else {
            throw SecureAggregationError("a threshold of \(t) would make each noise share \(noise.sigmaInSteps) grid steps, below 16")
        }
        return noise
    }

    /// A pair's mask: the AES-256-CTR keystream under a key and counter
    /// drawn by HKDF-SHA256 from the pair's X25519 secret, bound to the round,
    /// the model version and both ids, so no two rounds or pairs share one.
    static func mask(secret: [UInt8], between tenant: String, and peer: String, round: UInt64, modelVersion: UInt64,
                     into stream: inout [UInt64]) throws {
        let (first, second) = precedes(tenant, peer) ? (tenant, peer) : (peer, tenant)
        var info = littleEndianBytes(round) + littleEndianBytes(modelVersion)
        for id in [first, second] { info += littleEndianBytes(UInt16(id.utf8.count)) + Array(id.utf8) }
        let material = try HKDFSHA256.derive(key: secret, salt: Array("sigilo secure aggregation v2".utf8), info: info, length: 48)
        try stream.withUnsafeMutableBytes {
            try AES256CTR.keystream(key: Array(material[0..<32]), counter: Array(material[32..<48]), into: $0)
        }
    }

    /// The order that decides which side of a pair adds the mask.
    public static func precedes(_ a: String, _ b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// The coordinator's running total of masked updates, modulo 2^64. It
    /// means nothing until `unmask` has removed every mask from it.
    public struct MaskedSum: Sendable, Equatable {
        public private(set) var values: [UInt64]
        public private(set) var weight: Double
        public private(set) var count: Int

        public init(dimension: Int) {
            values = [UInt64](repeating: 0, count: dimension)
            weight = 0
            count = 0
        }

        public init(values: [UInt64], weight: Double, count: Int) {
            self.values = values
            self.weight = weight
            self.count = count
        }

        public mutating func add(_ masked: [UInt64], weight w: Double) {
            precondition(masked.count == values.count)
            for i in values.indices { values[i] &+= masked[i] }
            weight += w
            count += 1
        }

        /// With the masks removed (`SecureAggregation.unmask`): the total of
        /// the grid releases, read as signed integers, times the step.
        public func unmasked(step: Double) -> RoundSum {
            RoundSum(values: values.map { Float(Double(Int64(bitPattern: $0)) * step) }, weight: weight, count: count)
        }

        /// Takes a correction (the masks to remove) off the total, modulo 2^64.
        mutating func subtract(_ stream: [UInt64]) {
            for i in values.indices { values[i] &-= UInt64(littleEndian: stream[i]) }
        }

        mutating func add(stream: [UInt64]) {
            for i in values.indices { values[i] &+= UInt64(littleEndian: stream[i]) }
        }
    }
}
