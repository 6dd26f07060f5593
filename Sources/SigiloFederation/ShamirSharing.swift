/// Shamir's t-of-n secret sharing over the prime field GF(2^61 - 1), for the
/// seeds and mask keys of dropout-robust secure aggregation (issue 20): any
/// `threshold` shares recover the secret; fewer reveal nothing about it.
///
/// A secret of any length is cut into 7-byte big-endian chunks (each below
/// 2^56, so inside the field) and each chunk is shared with its own random
/// polynomial of degree threshold - 1; share i is every polynomial at x = i.
/// Field arithmetic is not a cipher; the randomness of the coefficients is the
/// caller's CSPRNG. protocol/shamir-vectors.json, written by an independent
/// Python implementation (tools/gen-shamir-vectors.py), pins it byte for byte.
public enum ShamirSharing {
    public static let prime: UInt64 = (1 << 61) - 1
    static let chunkBytes = 7

    public struct Share: Equatable, Sendable {
        /// The evaluation point, 1...count.
        public var x: UInt64
        /// One field element per chunk of the secret.
        public var values: [UInt64]

        public init(x: UInt64, values: [UInt64]) {
            self.x = x
            self.values = values
        }
    }

    public struct SharingError: Error, Equatable, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// `count` shares of `secret`, any `threshold` of which recover it.
    /// `random` yields uniformly random 64-bit words (a CSPRNG in production).
    public static func split(_ secret: [UInt8], threshold: Int, count: Int, random: () -> UInt64) throws -> [Share] {
        guard threshold >= 1, count >= threshold, count < 1 << 16 else {
            throw SharingError(description: "need 1 <= threshold (\(threshold)) <= count (\(count)) < 65536")
        }
        guard !secret.isEmpty else { throw SharingError(description: "the secret is empty") }
        var shares = (1...count).map { Share(x: UInt64($0), values: []) }
        for chunk in stride(from: 0, to: secret.count, by: chunkBytes).map({ secret[$0..<min($0 + chunkBytes, secret.count)] }) {
            let constant = chunk.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let coefficients = [constant] + (1..<threshold).map { _ in element(random) }
            for i in shares.indices { shares[i].values.append(evaluate(coefficients, at: shares[i].x)) }
        }
        return shares
    }

    /// The secret of `secretBytes` bytes from at least `threshold` shares with
    /// distinct points; refuses fewer, malformed or inconsistent shares.
    public static func combine(_ shares: [Share], threshold: Int, secretBytes: Int) throws -> [UInt8] {
        let chunks = (secretBytes + chunkBytes - 1) / chunkBytes
        guard threshold >= 1, shares.count >= threshold else {
            throw SharingError(description: "\(shares.count) share(s) given, \(threshold) needed")
        }
        let used = Array(shares.prefix(threshold))
        guard Set(used.map(\.x)).count == used.count, used.allSatisfy({ $0.x != 0 && $0.x < prime }) else {
            throw SharingError(description: "share points must be distinct and in 1..<p")
        }
        guard used.allSatisfy({ $0.values.count == chunks && $0.values.allSatisfy { $0 < prime } }) else {
            throw SharingError(description: "every share must hold \(chunks) field element(s) below 2^61 - 1")
        }
        // Lagrange basis at 0: l_i = prod_{j != i} x_j / (x_j - x_i).
        let basis = used.indices.map { i in
            used.indices.reduce(UInt64(1)) { acc, j in
                j == i ? acc : multiply(acc, multiply(used[j].x, inverse(subtract(used[j].x, used[i].x))))
            }
        }
        var secret = [UInt8]()
        for c in 0..<chunks {
            let value = used.indices.reduce(UInt64(0)) { add($0, multiply(basis[$1], used[$1].values[c])) }
            let length = min(chunkBytes, secretBytes - c * chunkBytes)
            guard value >> (8 * UInt64(length)) == 0 else { throw SharingError(description: "the shares are inconsistent (chunk \(c) is out of range)") }
            secret += (0..<length).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        }
        return secret
    }

    // MARK: GF(2^61 - 1)

    /// A uniform field element: 61 random bits, redrawn on the one value that is not below p.
    static func element(_ random: () -> UInt64) -> UInt64 {
        while true {
            let candidate = random() >> 3
            if candidate < prime { return candidate }
        }
    }

    static func evaluate(_ coefficients: [UInt64], at x: UInt64) -> UInt64 {
        coefficients.reversed().reduce(UInt64(0)) { add(multiply($0, x), $1) }
    }

    static func add(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let s = a + b // both < 2^61: no overflow
        return s >= prime ? s - prime : s
    }

    static func subtract(_ a: UInt64, _ b: UInt64) -> UInt64 { a >= b ? a - b : a + prime - b }

    static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let (high, low) = a.multipliedFullWidth(by: b)
        // 2^61 = 1 (mod p): fold the bits above 61 onto the low ones.
        let folded = (low & prime) + (low >> 61 | high << 3)
        return folded >= prime ? folded - prime : folded
    }

    static func inverse(_ a: UInt64) -> UInt64 {
        // Fermat: a^(p-2); a != 0 (distinct points guarantee it).
        var result: UInt64 = 1, base = a, exponent = prime - 2
        while exponent > 0 {
            if exponent & 1 == 1 { result = multiply(result, base) }
            base = multiply(base, base)
            exponent >>= 1
        }
        return result
    }
}
