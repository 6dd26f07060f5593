import Foundation
import Testing
@testable import SigiloEncoder

/// Encoder files built by the tests (TinyEncoder): what loads, what is
/// refused, and what the error names.
@Suite struct EncoderFileTests {
    static func refusal(_ bytes: [UInt8]) -> String? {
        do { _ = try Encoder(file: EncoderFile(bytes: bytes)); return nil } catch { return "\(error)" }
    }

    @Test func aTinyEncoderLoadsAndEmbedsToUnitVectors() throws {
        let encoder = try Encoder(file: EncoderFile(bytes: TinyEncoder().bytes()))
        let vectors = encoder.embed(["oi", "quero falar", "", "🙂 unknown"])
        #expect(vectors.count == 4)
        for v in vectors {
            #expect(v.count == 32 && v.allSatisfy { $0.isFinite })
            #expect(abs(v.map { $0 * $0 }.reduce(0, +) - 1) < 1e-5)
        }
        #expect(encoder.embed(["oi"]) == encoder.embed(["oi"]))
        #expect(vectors[0] != vectors[1])
    }

    @Test func theTokenizerFollowsTheSpecification() throws {
        let tokenizer = try Encoder(file: EncoderFile(bytes: TinyEncoder().bytes())).tokenizer
        // pieces: 4 ▁, 5 a, 6 o, 7 ▁a, 8 ▁o, 9 ▁ol, 10 á, 11 !, 12 ▁oi, 13 ▁quero, 14 ▁falar
        #expect(tokenizer.tokenize("oi") == [12])
        #expect(tokenizer.tokenize("  quero   falar ") == [13, 14, 4]) // spaces collapse; a leading space is the ▁
        #expect(tokenizer.tokenize("ola") == [9, 5])
        #expect(tokenizer.tokenize("o\u{01}i!") == [12, 11]) // the control character dropped
        #expect(tokenizer.tokenize("oi\u{FF01}") == [12, 11]) // full-width ! normalised
        #expect(tokenizer.tokenize("oxi") == [8, 3, 3]) // x and i: no piece covers them
        #expect(tokenizer.tokenize("") == [4])
    }

    @Test func longTextsAreCutToThePositions() throws {
        let encoder = try Encoder(file: EncoderFile(bytes: TinyEncoder().bytes()))
        let ids = encoder.tokens(String(repeating: "oi ", count: 100))
        #expect(ids.count == 32 && ids.first == 0 && ids.last == 2)
        let vector = encoder.embed([String(repeating: "oi ", count: 100)])[0]
        #expect(vector.allSatisfy { $0.isFinite })
    }

    @Test func aFileWhoseDigestDiffersIsRefusedBeforeItIsParsed() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sigilo-encoder-\(UUID()).sgle").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3])))
        let wrongDigest = #expect(throws: EncoderFileError.self) { try Encoder(path: path, expectedSHA256: String(repeating: "0", count: 64)) }
        #expect(wrongDigest?.description.contains("SHA-256") == true)
        let unpinned = #expect(throws: EncoderFileError.self) { try Encoder(path: path, expectedSHA256: nil) }
        #expect(unpinned?.description.contains("magic") == true)
    }

    /// Each case: a header field (dotted path), its new value as JSON, and what the error must name.
    @Test(arguments: [
        ("format", "2", "format"),
        ("architecture.hidden", "48", "architecture.hidden"),
        ("architecture.heads", "0", "architecture.heads"),
        ("architecture.layer_norm_epsilon", "\"tiny\"", "architecture.layer_norm_epsilon"),
        ("special_tokens.unk", "99", "special_tokens.unk"),
        ("tensors.20.shape", "[33, 32]", "tensors[20]"),
        ("tensors.9.offset", "1099511627776", "tensors[9]"),
        ("tensors.9.type", "\"f64\"", "tensors[9].type"),
        ("tensors.9.name", "\"embeddings.word\"", "appears twice"),
        ("tensors.9.name", "\"something.else\"", "tensor embeddings.norm.weight: missing"),
    ])
    func aBadHeaderFieldIsNamed(_ path: String, _ json: String, _ named: String) throws {
        var tiny = TinyEncoder()
        tiny.headerEdits = [(path.split(separator: ".").map(String.init), try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed))]
        let error = try #require(Self.refusal(tiny.bytes()))
        #expect(error.contains(named), "\(error)")
    }

    @Test func aNonFiniteWeightIsRefusedByName() throws {
        var bytes = TinyEncoder().bytes()
        let file = try EncoderFile(bytes: bytes)
        let norm = try #require(file.tensors["embeddings.norm.weight"])
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { bytes.replaceSubrange(norm.range.lowerBound..<norm.range.lowerBound + 4, with: $0) }
        #expect(Self.refusal(bytes)?.contains("embeddings.norm.weight") == true)
    }

    @Test func everyTruncationIsRefusedWithoutACrash() {
        let bytes = TinyEncoder().bytes()
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) {
            #expect(Self.refusal(Array(bytes[..<cut])) != nil, "cut at \(cut)")
        }
    }
}
