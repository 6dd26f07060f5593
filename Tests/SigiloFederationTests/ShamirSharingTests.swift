import Foundation
import Testing
import SigiloCrypto
import SigiloPrivacy
@testable import SigiloFederation

/// Shamir sharing for dropout-robust secure aggregation: checked byte for byte
/// against an independent Python implementation, then for its promises (any t
/// shares recover, fewer do not, bad shares are refused).
@Suite struct ShamirSharingTests {
    /// The word stream the vector script uses: SHA-256(label || counter) as little-endian words.
    final class Words {
        let label: [UInt8]
        var counter: UInt64 = 0
        var pending: [UInt64] = []
        init(_ label: String) { self.label = Array(label.utf8) }
        func next() -> UInt64 {
            if pending.isEmpty {
                let block = SHA256.hash(label + (0..<8).reversed().map { UInt8(truncatingIfNeeded: counter >> (8 * UInt64($0))) })
                pending = stride(from: 0, to: 32, by: 8).map { i in (0..<8).reduce(UInt64(0)) { $0 | UInt64(block[i + $1]) << (8 * UInt64($1)) } }
                counter += 1
            }
            return pending.removeFirst()
        }
    }

    static func vectors() -> [[String: Any]] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("protocol/shamir-vectors.json")
        let object = (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any]
        return object?["cases"] as? [[String: Any]] ?? []
    }

    @Test func sharesMatchTheIndependentImplementation() throws {
        let vectors = Self.vectors()
        #expect(vectors.count == 4)
        for case_ in vectors {
            let label = try #require(case_["label"] as? String), secretHex = try #require(case_["secret"] as? String)
            let secret = try #require(Hex.decode(secretHex))
            let threshold = try #require(case_["threshold"] as? Int), count = try #require(case_["count"] as? Int)
            let expected = try #require(case_["shares"] as? [[String: Any]]).map { share in
                ShamirSharing.Share(x: UInt64(share["x"] as? Int ?? 0), values: (share["values"] as? [String] ?? []).compactMap { UInt64($0) })
            }
            let words = Words(label)
            let shares = try ShamirSharing.split(secret, threshold: threshold, count: count, random: words.next)
            #expect(shares == expected, "\(label)")
            #expect(try ShamirSharing.combine(Array(expected.reversed()), threshold: threshold, secretBytes: secret.count) == secret, "\(label)")
        }
    }

    @Test func anyThresholdOfSharesRecoverAndFewerAreRefused() throws {
        let random = SecureRandom()
        let secret = (0..<32).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        let shares = try ShamirSharing.split(secret, threshold: 4, count: 7, random: random.next)
        // Every 4-subset recovers the secret.
        for mask in 0..<(1 << 7) where mask.nonzeroBitCount == 4 {
            let subset = shares.indices.filter { mask & (1 << $0) != 0 }.map { shares[$0] }
            #expect(try ShamirSharing.combine(subset, threshold: 4, secretBytes: 32) == secret)
        }
        #expect(throws: ShamirSharing.SharingError.self) { try ShamirSharing.combine(Array(shares.prefix(3)), threshold: 4, secretBytes: 32) }
        // Three shares with a wrong threshold claimed give some other value, not the secret.
        #expect((try? ShamirSharing.combine(Array(shares.prefix(3)), threshold: 3, secretBytes: 32)) != secret)
        var duplicated = Array(shares.prefix(4))
        duplicated[3].x = duplicated[0].x
        #expect(throws: ShamirSharing.SharingError.self) { try ShamirSharing.combine(duplicated, threshold: 4, secretBytes: 32) }
        var outOfField = Array(shares.prefix(4))
        outOfField[1].values[0] = ShamirSharing.prime
        #expect(throws: ShamirSharing.SharingError.self) { try ShamirSharing.combine(outOfField, threshold: 4, secretBytes: 32) }
        #expect(throws: ShamirSharing.SharingError.self) { try ShamirSharing.split(secret, threshold: 5, count: 4, random: random.next) }
    }

    @Test func fieldArithmeticAgreesWithWideIntegers() {
        let random = SecureRandom()
        for _ in 0..<10_000 {
            let a = ShamirSharing.element(random.next), b = ShamirSharing.element(random.next)
            let (high, low) = a.multipliedFullWidth(by: b)
            // (a * b) mod p by long division of the 122-bit product.
            let expected = ShamirSharing.prime.dividingFullWidth((high: high % ShamirSharing.prime, low: low)).remainder
            #expect(ShamirSharing.multiply(a, b) == expected)
            if a != 0 { #expect(ShamirSharing.multiply(a, ShamirSharing.inverse(a)) == 1) }
        }
    }
}
