import Foundation
import SigiloCrypto

/// Dropout-robust secure aggregation (protocol/PROTOCOL.md, "Secure
/// aggregation"), after Bonawitz et al. 2017 and Bell et al. 2020 (SecAgg+):
/// the tenant's side of a round's four stages, as pure functions of what the
/// coordinator relays and what the tenant keeps.
///
/// 1. *Advertise*: fresh X25519 keys for this round (one to encrypt shares,
///    one to agree pairwise masks) and a commitment to a fresh self-mask seed,
///    signed with the tenant's Ed25519 identity key.
/// 2. *Share*: the seed and the mask key's private half are cut into Shamir
///    shares, any `shareThreshold` of a tenant's `degree` neighbours' shares
///    recovering them, each encrypted to one neighbour (AES-256-GCM).
/// 3. *Mask*: the grid release plus the self mask plus the pairwise masks with
///    every neighbour that shared, modulo 2^64.
/// 4. *Unmask*: for each neighbour that shared, the seed share if it sent its
///    masked input (its self mask must go) or the mask-key share if it did not
///    (its pairwise masks must go): never both for one neighbour.
public extension SecureAggregation {
    /// A round's public parameters, fixed when it opens.
    struct RoundParameters: Equatable, Sendable {
        public let round: UInt64
        public let modelVersion: UInt64
        /// The tenants the round counts on, sorted byte-wise.
        public let cohort: [String]
        /// t: the fewest masked inputs a released sum may have; the noise shares are calibrated to it.
        public let threshold: Int
        /// k: how many neighbours each tenant masks with and shares to (n - 1: the complete graph).
        public let degree: Int
        /// Public randomness drawn when the round opens: which tenants neighbour which.
        public let graphSeed: [UInt8]
        /// The sparse graph's ring (empty for the complete graph) and each tenant's place on it.
        private let ring: [String]
        private let place: [String: Int]

        public init(round: UInt64, modelVersion: UInt64, cohort: [String], threshold: Int, degree: Int, graphSeed: [UInt8]) throws {
            let sorted = cohort.sorted(by: precedes)
            guard Set(sorted).count == sorted.count else { throw SecureAggregationError("the cohort lists a tenant twice") }
            guard sorted.count >= 2, sorted.count < 1 << 16 else { throw SecureAggregationError("a secure cohort needs 2...65535 tenants, got \(sorted.count)") }
            guard degree == sorted.count - 1 || (degree >= 2 && degree % 2 == 0 && degree < sorted.count - 1) else {
                throw SecureAggregationError("degree \(degree) must be even and below \(sorted.count - 1), or \(sorted.count - 1) (every other tenant)")
            }
            guard (max(2, degree / 2 + 2)...sorted.count).contains(threshold) else {
                throw SecureAggregationError("threshold \(threshold) must be in \(max(2, degree / 2 + 2))...\(sorted.count) (two above a neighbourhood's share threshold, at most the cohort)")
            }
            guard graphSeed.count == 32 else { throw SecureAggregationError("the graph seed is 32 bytes, got \(graphSeed.count)") }
            self.round = round
            self.modelVersion = modelVersion
            self.cohort = sorted
            self.threshold = threshold
            self.degree = degree
            self.graphSeed = graphSeed
            ring = degree == sorted.count - 1 ? [] : try Self.ringOrder(sorted, graphSeed: graphSeed)
            place = Dictionary(uniqueKeysWithValues: ring.enumerated().map { ($1, $0) })
        }

        /// r: shares needed to recover a neighbour's secret. A strict majority
        /// of its k holders, so that no two disjoint sets of honest holders can
        /// each reach it: whatever survivor lists the coordinator tells, it
        /// cannot collect both a tenant's seed and its mask key.
        public var shareThreshold: Int { degree / 2 + 1 }

        /// Where `tenant`'s shares are evaluated: its 1-based place in the cohort.
        public func point(of tenant: String) throws -> UInt64 {
            guard let i = cohort.firstIndex(of: tenant) else { throw SecureAggregationError("tenant \(tenant) is not in round \(round)'s cohort") }
            return UInt64(i + 1)
        }

        /// `tenant`'s neighbours, sorted. The complete graph when the degree is
        /// n - 1; otherwise the cohort is shuffled by the graph seed onto a
        /// ring and each tenant neighbours the k/2 on either side (a random
        /// Harary graph, as in SecAgg+): k-regular and symmetric.
        public func neighbours(of tenant: String) throws -> [String] {
            if degree == cohort.count - 1 {
                guard cohort.contains(tenant) else { throw SecureAggregationError("tenant \(tenant) is not in round \(round)'s cohort") }
                return cohort.filter { $0 != tenant }
            }
            guard let at = place[tenant] else { throw SecureAggregationError("tenant \(tenant) is not in round \(round)'s cohort") }
            let n = ring.count
            let around = (1...degree / 2).flatMap { [ring[(at + $0) % n], ring[(at - $0 + n) % n]] }
            return around.sorted(by: precedes)
        }

        /// The cohort shuffled by Fisher-Yates, drawing from the AES-256-CTR keystream of the graph seed.
        static func ringOrder(_ cohort: [String], graphSeed: [UInt8]) throws -> [String] {
            let material = try HKDFSHA256.derive(key: graphSeed, salt: Array("sigilo secure aggregation graph v2".utf8), info: [], length: 48)
            // Rejection needs more than one word per draw with probability below 2^-47 each; four per draw never run out.
            var words = [UInt64](repeating: 0, count: 4 * cohort.count + 64)
            try words.withUnsafeMutableBytes { try AES256CTR.keystream(key: Array(material[0..<32]), counter: Array(material[32..<48]), into: $0) }
            var next = 0
            var ring = cohort
            for i in stride(from: ring.count - 1, to: 0, by: -1) {
                let bound = UInt64(i + 1)
                let floor = (0 &- bound) % bound // words below it would bias the remainder
                var word: UInt64
                repeat {
                    guard next < words.count else { throw SecureAggregationError("the graph seed's keystream ran out") }
                    word = UInt64(littleEndian: words[next]); next += 1
                } while word < floor
                ring.swapAt(i, Int(word % bound))
            }
            return ring
        }
    }

    /// t for a cohort of n: the plan's fraction of it, rounded up, and at
    /// least two more than a neighbourhood's share threshold: a survivor's
    /// seed is recovered from its surviving neighbours' shares, so with fewer
    /// survivors no sum could ever be unmasked (this binds small, complete
    /// cohorts only: 7 tenants need 5 whatever the fraction).
    static func threshold(cohortSize n: Int, survivorFraction f: Double) -> Int {
        max(2, Int((f * Double(n)).rounded(.up)), degree(cohortSize: n, survivorFraction: f) / 2 + 2)
    }

    /// k for a cohort of n whose tenants each stay to the end with
    /// probability at least `survivorFraction`: the least even degree for
    /// which some tenant's neighbourhood keeping fewer than a majority is
    /// below 10^-6 for the whole round (union bound over the n tenants), or
    /// n - 1 (the complete graph) when that is no larger.
    static func degree(cohortSize n: Int, survivorFraction f: Double) -> Int {
        var k = 2
        while k < n - 1 {
            if Double(n) * binomialTail(trials: k, successProbability: f, below: k / 2 + 1) <= 1e-6 { return k }
            k += 2
        }
        return n - 1
    }

    /// P[Binomial(trials, p) < below], summed in log space.
    static func binomialTail(trials n: Int, successProbability p: Double, below: Int) -> Double {
        guard p < 1 else { return 0 }
        var total = 0.0
        for i in 0..<min(below, n + 1) {
            let logChoose = lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1))
            total += exp(logChoose + Double(i) * log(p) + Double(n - i) * log1p(-p))
        }
        return total
    }

    /// The round's parameters for a cohort, a survivor fraction and public randomness.
    static func parameters(round: UInt64, modelVersion: UInt64, cohort: [String], survivorFraction f: Double, graphSeed: [UInt8]) throws -> RoundParameters {
        try RoundParameters(round: round, modelVersion: modelVersion, cohort: cohort, threshold: threshold(cohortSize: cohort.count, survivorFraction: f),
                            degree: degree(cohortSize: cohort.count, survivorFraction: f), graphSeed: graphSeed)
    }

    // MARK: Stage 1, advertise

    /// One tenant's secrets for one round: never reused, kept until the round ends.
    struct RoundSecrets: Sendable {
        /// Agrees the key that encrypts shares to and from neighbours.
        public let encryption: X25519.KeyPair
        /// Agrees the pairwise masks; its private half is shared, in case this tenant drops.
        public let mask: X25519.KeyPair
        /// Seeds the self mask; shared, in case this tenant survives.
        public let seed: [UInt8]

        public static let encodedBytes = 96

        public static func generate() throws -> RoundSecrets {
            try RoundSecrets(encryption: .generate(), mask: .generate(), seed: try X25519.KeyPair.generate().privateKey)
        }

        public init(encryption: X25519.KeyPair, mask: X25519.KeyPair, seed: [UInt8]) throws {
            guard seed.count == 32 else { throw SecureAggregationError("a self-mask seed is 32 bytes, got \(seed.count)") }
            self.encryption = encryption
            self.mask = mask
            self.seed = seed
        }

        /// For the tenant's store (which seals it).
        public var encoded: [UInt8] { encryption.privateKey + mask.privateKey + seed }

        public init(encoded: [UInt8]) throws {
            guard encoded.count == Self.encodedBytes else { throw SecureAggregationError("round secrets are \(Self.encodedBytes) bytes, got \(encoded.count)") }
            try self.init(encryption: .init(privateKey: Array(encoded[0..<32])), mask: .init(privateKey: Array(encoded[32..<64])),
                          seed: Array(encoded[64..<96]))
        }
    }

    /// What a tenant publishes for a round, signed with its identity key.
    struct Advertisement: Equatable, Sendable {
        public var tenant: String
        /// The Ed25519 key the coordinator registered for `tenant` (it signs the rest).
        public var identityKey: [UInt8]
        public var encryptionKey: [UInt8]
        public var maskKey: [UInt8]
        /// SHA-256 of the self-mask seed, so that its reconstruction can be checked.
        public var seedCommitment: [UInt8]
        public var signature: [UInt8]

        public init(tenant: String, identityKey: [UInt8], encryptionKey: [UInt8], maskKey: [UInt8], seedCommitment: [UInt8], signature: [UInt8]) {
            self.tenant = tenant
            self.identityKey = identityKey
            self.encryptionKey = encryptionKey
            self.maskKey = maskKey
            self.seedCommitment = seedCommitment
            self.signature = signature
        }

        /// This tenant's advertisement for `round`.
        public static func signed(round: UInt64, tenant: String, identity: Ed25519.KeyPair, secrets: RoundSecrets) throws -> Advertisement {
            var ad = Advertisement(tenant: tenant, identityKey: identity.publicKey, encryptionKey: secrets.encryption.publicKey,
                                   maskKey: secrets.mask.publicKey, seedCommitment: SecureAggregation.seedCommitment(secrets.seed), signature: [])
            ad.signature = try identity.sign(ad.message(round: round))
            return ad
        }

        /// What the signature covers: the round and tenant bind the keys to one use.
        public func message(round: UInt64) -> [UInt8] {
            Array("sigilo-secure-keys-v2\n\(round)\n\(tenant)\n\(Hex.encode(encryptionKey))\n\(Hex.encode(maskKey))\n\(Hex.encode(seedCommitment))".utf8)
        }

        /// Refuses keys the tenant did not sign: a coordinator that substitutes
        /// its own keys for a peer's, to read the shares or cancel the masks,
        /// is caught here.
        public func verify(round: UInt64) throws {
            guard encryptionKey.count == 32, maskKey.count == 32, seedCommitment.count == 32 else {
                throw SecureAggregationError("\(tenant)'s round keys are malformed")
            }
            guard Ed25519.verify(signature: signature, message: message(round: round), publicKey: identityKey) else {
                throw SecureAggregationError("\(tenant)'s round keys are not signed by its identity key: refusing the round (substituted keys?)")
            }
        }
    }

    static func seedCommitment(_ seed: [UInt8]) -> [UInt8] { SHA256.hash(Array("sigilo-secure-seed-v2".utf8) + seed) }

    // MARK: Stage 2, share

    /// A share encrypted by `from` to `to`, relayed by the coordinator.
    struct EncryptedShare: Equatable, Sendable {
        public var from: String
        public var to: String
        public var ciphertext: [UInt8]

        public init(from: String, to: String, ciphertext: [UInt8]) {
            self.from = from
            self.to = to
            self.ciphertext = ciphertext
        }
    }

    /// Plaintext of an encrypted share: the seed's share, then the mask key's (five field elements each).
    static let shareElements = 5
    static let sharePlaintextBytes = 2 * shareElements * 8
    /// Sealed size: nonce, plaintext, tag.
    static let shareCiphertextBytes = 12 + sharePlaintextBytes + 16

    /// `tenant`'s shares for its neighbours that advertised (their
    /// advertisements, each verified first). Refuses when fewer than the share
    /// threshold did: nobody could recover this tenant's secrets.
    static func shares(of tenant: String, secrets: RoundSecrets, parameters p: RoundParameters, neighbours: [Advertisement],
                       random: () -> UInt64) throws -> [EncryptedShare] {
        let expected = Set(try p.neighbours(of: tenant))
        guard Set(neighbours.map(\.tenant)).count == neighbours.count, neighbours.allSatisfy({ expected.contains($0.tenant) }) else {
            throw SecureAggregationError("the coordinator relayed keys of tenants that are not \(tenant)'s neighbours in round \(p.round)")
        }
        for ad in neighbours { try ad.verify(round: p.round) }
        guard neighbours.count >= p.shareThreshold else {
            throw SecureAggregationError("only \(neighbours.count) of \(tenant)'s \(p.degree) neighbours advertised keys; \(p.shareThreshold) are needed")
        }
        let seedShares = try ShamirSharing.split(secrets.seed, threshold: p.shareThreshold, count: p.cohort.count, random: random)
        let keyShares = try ShamirSharing.split(secrets.mask.privateKey, threshold: p.shareThreshold, count: p.cohort.count, random: random)
        return try neighbours.map { ad in
            let x = Int(try p.point(of: ad.tenant)) - 1
            let plaintext = (seedShares[x].values + keyShares[x].values).flatMap(littleEndianBytes)
            let cipher = try shareCipher(secrets.encryption, peerKey: ad.encryptionKey)
            return EncryptedShare(from: tenant, to: ad.tenant, ciphertext: try cipher.seal(plaintext, context: shareContext(p.round, from: tenant, to: ad.tenant)))
        }
    }

    /// The pair's share key: HKDF of their encryption keys' X25519 secret (the same both ways).
    static func shareCipher(_ mine: X25519.KeyPair, peerKey: [UInt8]) throws -> AES256GCM {
        let secret = try mine.sharedSecret(with: peerKey)
        return try AES256GCM(key: HKDFSHA256.derive(key: secret, salt: Array("sigilo secure aggregation shares v2".utf8), info: [], length: 32))
    }

    /// Authenticated with each share: which round, from whom, to whom (a share cannot be replayed elsewhere).
    static func shareContext(_ round: UInt64, from: String, to: String) -> [UInt8] {
        var out = littleEndianBytes(round)
        for id in [from, to] { out += littleEndianBytes(UInt16(id.utf8.count)) + Array(id.utf8) }
        return out
    }

    /// The seed share and mask-key share `holder` received from `share.from`.
    static func open(_ share: EncryptedShare, holder: String, secrets: RoundSecrets, sender: Advertisement, parameters p: RoundParameters)
        throws -> (seed: ShamirSharing.Share, key: ShamirSharing.Share) {
        guard share.to == holder, share.from == sender.tenant else { throw SecureAggregationError("a share from \(share.from) was addressed to \(share.to), not \(holder)") }
        let plaintext: [UInt8]
        do {
            plaintext = try shareCipher(secrets.encryption, peerKey: sender.encryptionKey)
                .open(share.ciphertext, context: shareContext(p.round, from: share.from, to: holder))
        } catch { throw SecureAggregationError("the share from \(share.from) does not decrypt: altered in transit") }
        guard plaintext.count == sharePlaintextBytes else { throw SecureAggregationError("the share from \(share.from) is \(plaintext.count) bytes") }
        let words = littleEndianWords(plaintext)
        let x = try p.point(of: holder)
        return (.init(x: x, values: Array(words[0..<shareElements])), .init(x: x, values: Array(words[shareElements...])))
    }

    // MARK: Stage 3, mask

    /// What `tenant` sends: its grid release plus its self mask plus, with
    /// each neighbour that shared (`sharedNeighbours`, verified advertisements),
    /// the pair's mask, added when its id sorts first and subtracted otherwise,
    /// all modulo 2^64. A late input from a tenant the coordinator already
    /// declared dropped still carries the self mask, whose seed nobody reveals.
    static func maskedInput(_ release: [Int64], tenant: String, secrets: RoundSecrets, parameters p: RoundParameters,
                            sharedNeighbours: [Advertisement]) throws -> [UInt64] {
        let expected = Set(try p.neighbours(of: tenant))
        guard sharedNeighbours.allSatisfy({ expected.contains($0.tenant) }) else {
            throw SecureAggregationError("the coordinator listed tenants that are not \(tenant)'s neighbours in round \(p.round)")
        }
        var out = release.map { UInt64(bitPattern: $0) }
        var stream = [UInt64](repeating: 0, count: release.count)
        try selfMask(secrets.seed, parameters: p, into: &stream)
        for i in out.indices { out[i] &+= UInt64(littleEndian: stream[i]) }
        for ad in sharedNeighbours {
            try ad.verify(round: p.round)
            try mask(secret: secrets.mask.sharedSecret(with: ad.maskKey), between: tenant, and: ad.tenant, round: p.round, modelVersion: p.modelVersion, into: &stream)
            if precedes(tenant, ad.tenant) {
                for i in out.indices { out[i] &+= UInt64(littleEndian: stream[i]) }
            } else {
                for i in out.indices { out[i] &-= UInt64(littleEndian: stream[i]) }
            }
        }
        return out
    }

    /// The self mask: the AES-256-CTR keystream under a key and counter drawn by HKDF from the seed and the round.
    static func selfMask(_ seed: [UInt8], parameters p: RoundParameters, into stream: inout [UInt64]) throws {
        let material = try HKDFSHA256.derive(key: seed, salt: Array("sigilo secure aggregation self mask v2".utf8),
                                             info: littleEndianBytes(p.round) + littleEndianBytes(p.modelVersion), length: 48)
        try stream.withUnsafeMutableBytes { try AES256CTR.keystream(key: Array(material[0..<32]), counter: Array(material[32..<48]), into: $0) }
    }

    // MARK: Stage 4, unmask

    /// A share a holder reveals about one neighbour.
    struct RevealedShare: Equatable, Sendable {
        public enum Kind: String, Sendable { case seed, key }
        /// Whose secret it is a share of.
        public var owner: String
        public var kind: Kind
        public var share: ShamirSharing.Share

        public init(owner: String, kind: Kind, share: ShamirSharing.Share) {
            self.owner = owner
            self.kind = kind
            self.share = share
        }
    }

    /// What `tenant` reveals when the coordinator says `survivors` sent their
    /// masked inputs: for each neighbour it masked with, the seed share if it
    /// survived, else the mask-key share. Refuses fewer survivors than the
    /// threshold (a sum of so few would carry less noise than was charged),
    /// survivors it never masked with, and, when it already answered this
    /// round (`answered`), any other survivor list: that would hand out the
    /// other share of some neighbour, and with both the coordinator removes
    /// every mask from that neighbour's input.
    static func reveal(tenant: String, secrets: RoundSecrets, parameters p: RoundParameters, maskedWith: [Advertisement],
                       received: [EncryptedShare], survivors: Set<String>, answered: Set<String>?) throws -> [RevealedShare] {
        if let answered, answered != survivors {
            let flipped = answered.symmetricDifference(survivors).sorted(by: precedes)
            throw SecureAggregationError("round \(p.round): already unmasked for another survivor list; answering this one would reveal both shares of \(flipped.joined(separator: ", "))")
        }
        guard survivors.count >= p.threshold else {
            throw SecureAggregationError("round \(p.round): told of \(survivors.count) survivors, below the threshold of \(p.threshold): refusing to unmask")
        }
        guard survivors.contains(tenant) else { throw SecureAggregationError("round \(p.round): the survivor list leaves out this tenant, which sent its input") }
        let neighbours = Set(maskedWith.map(\.tenant))
        let cohort = Set(p.cohort)
        guard survivors.isSubset(of: cohort) else { throw SecureAggregationError("round \(p.round): the survivor list names tenants outside the cohort") }
        var out = [RevealedShare]()
        let bySender = Dictionary(received.map { ($0.from, $0) }, uniquingKeysWith: { first, _ in first })
        for ad in maskedWith {
            guard let share = bySender[ad.tenant] else {
                throw SecureAggregationError("round \(p.round): no share from \(ad.tenant), which this tenant masked with")
            }
            let opened = try open(share, holder: tenant, secrets: secrets, sender: ad, parameters: p)
            out.append(survivors.contains(ad.tenant) ? RevealedShare(owner: ad.tenant, kind: .seed, share: opened.seed)
                                                     : RevealedShare(owner: ad.tenant, kind: .key, share: opened.key))
        }
        // A neighbour it never masked with cannot have survived in its view.
        let graph = Set(try p.neighbours(of: tenant))
        if let stranger = survivors.first(where: { $0 != tenant && !neighbours.contains($0) && graph.contains($0) }) {
            throw SecureAggregationError("round \(p.round): \(stranger) is listed as a survivor but never shared with this tenant")
        }
        return out
    }

    static func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    /// Bytes (a multiple of 8 of them) read as little-endian 64-bit words.
    static func littleEndianWords(_ bytes: [UInt8]) -> [UInt64] {
        stride(from: 0, to: bytes.count, by: 8).map { i in (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) } }
    }
}
