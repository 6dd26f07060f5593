import SigiloCrypto
import SigiloPrivacy

/// Why a secure-aggregation step was refused: names what is wrong.
public struct SecureAggregationError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Secure placement (protocol/PROTOCOL.md, "Secure aggregation"): each
/// tenant of a round's cohort adds a 1/√n share of the round's noise to its
/// own sum, on the noise mechanism's integer grid, and hides the result
/// under pairwise masks that cancel only in the cohort's total. The
/// coordinator adds the masked vectors modulo 2^64 and learns the total,
/// noised once at the round's full σ, and nothing about any single tenant's
/// vector. The aggregate thus carries central placement's noise instead of
/// tenant placement's √n times more, without trusting the coordinator with
/// an un-noised sum.
///
/// Trust: the coordinator follows the protocol (it relays the cohort's
/// agreement keys faithfully and publishes only the total) and no tenant
/// colludes with it; k colluding tenants can remove their own shares and
/// masks, leaving √((n-k)/n) of the noise. Every cohort member must submit,
/// or the masks never cancel and the round is abandoned, releasing nothing.
///
/// Accounting: a round is charged exactly as a central round at the plan's
/// noise multiplier. The n shares are independent discrete Gaussians with
/// σᵢ = ⌈σ/√n⌉ grid steps (σ being the full mechanism's), so nσᵢ² >= σ².
/// Their sum is not exactly a discrete Gaussian, but Kairouz, Liu and Steinke
/// (2021, "The distributed discrete Gaussian mechanism") bound its distance
/// from N_Z(0, nσᵢ²) by terms in e^(-2π²σᵢ²·k/(k+1)); shares below 16 steps
/// are refused, so these are below 10^-1000, nothing next to any δ we report
/// (a plan's grid makes σᵢ thousands of steps). Rounding to the grid
/// is each tenant's own, as at tenant placement, and one customer is in one
/// tenant: the sensitivity on the grid stays 2^k + √d steps.
public enum SecureAggregation {
    /// A tenant of the round's cohort and its X25519 agreement key.
    public struct Member: Equatable, Sendable {
        public var tenant: String
        public var agreementKey: [UInt8]

        public init(tenant: String, agreementKey: [UInt8]) {
            self.tenant = tenant
            self.agreementKey = agreementKey
        }
    }

    /// The round's whole mechanism: its grid step and the σ the shares add up to.
    public static func mechanism(_ plan: Plan) throws -> GaussianNoise {
        try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension)
    }

    /// One tenant's share in a cohort of `n`: σᵢ = ⌈σ/√n⌉ steps on the same grid.
    public static func noiseShare(_ plan: Plan, cohortSize n: Int) throws -> GaussianNoise {
        guard n >= 1 else { throw SecureAggregationError("a cohort needs at least one tenant") }
        let full = try mechanism(plan)
        let sigma = full.sigmaInSteps // < 2^26, so the squares below are exact
        var steps = UInt64((Double(sigma) / Double(n).squareRoot()).rounded(.up))
        while steps * steps * UInt64(n) < sigma * sigma { steps += 1 } // whatever the square root's rounding
        // steps / 2^k is exact, so the mechanism's own rounding up keeps exactly `steps`.
        let noise = try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: Double(steps) / Double(1 << full.gridBits), dimension: plan.dimension)
        guard noise.sigmaInSteps >= 16 else {
            throw SecureAggregationError("a cohort of \(n) would make each noise share \(noise.sigmaInSteps) grid steps, below 16")
        }
        return noise
    }

    /// What `tenant` sends: its grid release (rounded sum plus noise share)
    /// plus, modulo 2^64, the mask it shares with every other member, added
    /// when its id sorts first (byte-wise UTF-8) and subtracted otherwise.
    public static func masked(_ release: [Int64], tenant: String, key: X25519.KeyPair, cohort: [Member],
                              round: UInt64, modelVersion: UInt64) throws -> [UInt64] {
        try check(cohort, includes: tenant, key: key)
        var out = release.map { UInt64(bitPattern: $0) }
        var stream = [UInt64](repeating: 0, count: release.count)
        for peer in cohort where peer.tenant != tenant {
            try mask(between: tenant, and: peer, key: key, round: round, modelVersion: modelVersion, into: &stream)
            if precedes(tenant, peer.tenant) {
                for i in out.indices { out[i] &+= UInt64(littleEndian: stream[i]) }
            } else {
                for i in out.indices { out[i] &-= UInt64(littleEndian: stream[i]) }
            }
        }
        return out
    }

    /// The pair's mask: the AES-256-CTR keystream under a key and counter
    /// drawn by HKDF-SHA256 from the pair's X25519 secret, bound to the round,
    /// the model version and both ids, so no two rounds or pairs share one.
    static func mask(between tenant: String, and peer: Member, key: X25519.KeyPair, round: UInt64, modelVersion: UInt64,
                     into stream: inout [UInt64]) throws {
        let secret = try key.sharedSecret(with: peer.agreementKey)
        let (first, second) = precedes(tenant, peer.tenant) ? (tenant, peer.tenant) : (peer.tenant, tenant)
        var info = [UInt8]()
        for v in [round, modelVersion] { withUnsafeBytes(of: v.littleEndian) { info.append(contentsOf: $0) } }
        for id in [first, second] {
            withUnsafeBytes(of: UInt16(id.utf8.count).littleEndian) { info.append(contentsOf: $0) }
            info.append(contentsOf: id.utf8)
        }
        let material = try HKDFSHA256.derive(key: secret, salt: Array("sigilo secure aggregation v1".utf8), info: info, length: 48)
        try stream.withUnsafeMutableBytes {
            try AES256CTR.keystream(key: Array(material[0..<32]), counter: Array(material[32..<48]), into: $0)
        }
    }

    /// The order that decides which side of a pair adds the mask.
    static func precedes(_ a: String, _ b: String) -> Bool { Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) }

    /// A cohort is usable when its ids are distinct, its keys well formed, and `tenant` is in it with `key`.
    static func check(_ cohort: [Member], includes tenant: String, key: X25519.KeyPair) throws {
        guard Set(cohort.map(\.tenant)).count == cohort.count else { throw SecureAggregationError("the cohort lists a tenant twice") }
        if let bad = cohort.first(where: { $0.agreementKey.count != X25519.keyBytes }) {
            throw SecureAggregationError("cohort member \(bad.tenant) has an agreement key of \(bad.agreementKey.count) bytes, not 32")
        }
        guard let me = cohort.first(where: { $0.tenant == tenant }) else { throw SecureAggregationError("tenant \(tenant) is not in the round's cohort") }
        guard me.agreementKey == key.publicKey else {
            throw SecureAggregationError("the cohort lists another agreement key for \(tenant) than this tenant's own")
        }
    }

    /// The coordinator's running total of masked updates, modulo 2^64. It
    /// means nothing until every cohort member's update is in.
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

        /// With every member's update added the masks have cancelled: the
        /// total of the grid releases, read as signed integers, times the step.
        public func unmasked(step: Double) -> RoundSum {
            RoundSum(values: values.map { Float(Double(Int64(bitPattern: $0)) * step) }, weight: weight, count: count)
        }
    }
}
