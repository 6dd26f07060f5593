import Foundation
import Testing
@testable import SigiloText

/// Checks the product against models/hash-vectors.json, written by an
/// independent Python implementation of the specification (tools/gen-hash-vectors.py).
@Suite struct HashVectorTests {
    nonisolated(unsafe) static let vectors: [String: Any] = { // read-only after initialisation
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try! Data(contentsOf: root.appendingPathComponent("models/hash-vectors.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    @Test func fnv1a64MatchesThePublishedReference() {
        let reference = Self.vectors["fnv1a64_reference"] as! [[String: String]]
        #expect(reference.count == 3)
        for row in reference {
            #expect(String(FeatureHash.fnv1a64(Array(row["utf8"]!.utf8)), radix: 16).leftPadded(16) == row["fnv1a64"]!)
        }
    }

    @Test func taggedNGramHashesAndBuckets() {
        let rows = Self.vectors["ngrams"] as! [[String: Any]]
        #expect(rows.count >= 5)
        for row in rows {
            let tag = UInt8(row["tag"] as! Int)
            let h = FeatureHash.hash(tag: tag, Array((row["utf8"] as! String).utf8))
            #expect(String(h, radix: 16).leftPadded(16) == row["hash64"] as! String)
            #expect(Int(h & 0xffff) == row["bucket_bits_16"] as! Int)
            #expect(Int(h & 0xfff) == row["bucket_bits_12"] as! Int)
        }
    }

    @Test func wholeMessageFeatureVectors() {
        let rows = Self.vectors["messages"] as! [[String: Any]]
        #expect(!rows.isEmpty)
        for row in rows {
            let featurizer = Featurizer(FeatureConfiguration(bucketBits: row["bucket_bits"] as! Int,
                                                             wordWeight: row["word_weight"] as? Int ?? 1))
            let x = featurizer.features(of: row["normalized"] as! String)
            let expected = (row["features"] as! [[Double]]).map { (Int32($0[0]), $0[1]) }
            let actual = zip(x.indices, x.values).sorted { $0.0 < $1.0 }
            #expect(actual.count == expected.count)
            for (a, e) in zip(actual, expected) {
                #expect(a.0 == e.0)
                #expect(abs(Double(a.1) - e.1) < 1e-5)
            }
        }
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
