import Testing
@testable import SigiloModel
import SigiloText

@Suite struct ModelFileTests {
    /// A small trained model: 2^8 buckets, 3 labels (about 3 KB on disk).
    static func smallModel(wordWeight: Int = 1) -> SoftmaxModel {
        let features = FeatureConfiguration(bucketBits: 8, wordWeight: wordWeight)
        let labels = ["cancelar", "oos", "saudacao"]
        let data = EncodedExamples(
            texts: ["oi", "bom dia", "quero cancelar", "cancela tudo", "qual a capital da franca", "me conta uma piada"],
            intents: ["saudacao", "saudacao", "cancelar", "cancelar", "oos", "oos"],
            labels: labels, featurizer: Featurizer(features))
        var model = SoftmaxTrainer.train(data.features, labels: data.labels,
                                         model: SoftmaxModel(features: features, labels: labels, handoffLabels: [1]),
                                         options: TrainingOptions(epochs: 5))
        model.temperature = 0.5
        model.handoffThreshold = 0.4
        return model
    }

    /// Word weight 1 is written as format version 1, any other as version 2.
    @Test(arguments: [(1, UInt8(1)), (2, 2)])
    func roundTrip(_ wordWeight: Int, _ version: UInt8) throws {
        let model = Self.smallModel(wordWeight: wordWeight)
        let bytes = ModelFile.encode(model)
        #expect(bytes[8] == version)
        let decoded = try ModelFile.decode(bytes)
        #expect(decoded == model)
        #expect(decoded.features.wordWeight == wordWeight)
    }

    @Test(arguments: [1, 2])
    func everyTruncationIsRejected(_ wordWeight: Int) {
        let bytes = ModelFile.encode(Self.smallModel(wordWeight: wordWeight))
        for length in 0..<bytes.count {
            #expect(throws: ModelFileError.self, "cut at \(length)") { try ModelFile.decode(Array(bytes[0..<length])) }
        }
    }

    @Test(arguments: [1, 2])
    func everyFlippedByteIsRejected(_ wordWeight: Int) {
        let bytes = ModelFile.encode(Self.smallModel(wordWeight: wordWeight))
        for offset in bytes.indices {
            var corrupted = bytes
            corrupted[offset] ^= 0x01
            #expect(throws: ModelFileError.self, "flip at \(offset)") { try ModelFile.decode(corrupted) }
        }
    }

    /// A model that reads encoder features is format version 3 and carries the kind, width and digest.
    @Test(arguments: [FeatureKind.encoder, .both])
    func encoderFeaturesRoundTripAsVersion3(_ kind: FeatureKind) throws {
        var features = FeatureConfiguration(bucketBits: 8)
        (features.kind, features.encoderDimension, features.encoderDigest) = (kind, 32, [UInt8](repeating: 7, count: 32))
        var model = SoftmaxModel(features: features, labels: ["a", "b"])
        for i in model.weights.indices { model.weights[i] = Float(i % 5) - 2 }
        #expect(model.weights.count == (kind == .both ? 256 + 32 : 32) * 2)
        let bytes = ModelFile.encode(model)
        #expect(bytes[8] == 3)
        #expect(try ModelFile.decode(bytes) == model)
        // A hashed model stays at version 1, readable by older builds.
        #expect(ModelFile.encode(Self.smallModel())[8] == 1)
    }

    @Test func errorsAreSpecific() {
        let bytes = ModelFile.encode(Self.smallModel())
        func code(_ b: [UInt8]) -> ModelFileError.Code? {
            do { _ = try ModelFile.decode(b); return nil } catch let e as ModelFileError { return e.code } catch { return nil }
        }
        #expect(code(Array("hello world, not a model".utf8)) == .notAModel)
        #expect(code(Array(bytes.dropLast(10))) == .truncated)
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0xff
        #expect(code(flipped) == .checksumMismatch)
        #expect(code(bytes + [0]) == .malformed)
    }

    @Test func aHeaderThatClaimsItsOwnShortLengthIsTruncatedNotACrash() {
        // Found by the model-file fuzzer: the declared length equals the file's
        // (27 bytes), shorter than header and checksum together; decode sliced
        // at a negative offset and trapped.
        var bytes = Array(ModelFile.encode(Self.smallModel()).prefix(27))
        for i in 0..<8 { bytes[10 + i] = UInt8(truncatingIfNeeded: UInt64(bytes.count) >> (8 * UInt64(i))) }
        #expect(throws: ModelFileError.self) { try ModelFile.decode(bytes) }
    }

    /// Recomputes an edited file's trailing SHA-256, so that the edit, not the checksum, is what the reader meets.
    static func reseal(_ bytes: inout [UInt8]) {
        bytes.replaceSubrange((bytes.count - 32)..., with: SigiloCryptoSHA.hash(Array(bytes[0..<(bytes.count - 32)])))
    }

    @Test func futureFormatVersionIsRefusedByName() throws {
        // Re-sign a file whose version field says 4: checksum valid, version not.
        var bytes = ModelFile.encode(Self.smallModel())
        bytes[8] = 4
        Self.reseal(&bytes)
        #expect(throws: ModelFileError.self) { try ModelFile.decode(bytes) }
        do { _ = try ModelFile.decode(bytes) } catch let e as ModelFileError {
            #expect(e.code == .unsupportedVersion)
            #expect(e.description.contains("version 4"))
        }
    }

    @Test func wordWeightOutsideItsRangeIsRefusedByName() throws {
        // The weight byte follows the char n-gram range: magic 8, version 2, length 8,
        // hash name 2 + 14, versions 2 + 2, bucket bits 1, n-gram ranges 4.
        for weight: UInt8 in [0, 9] {
            var bytes = ModelFile.encode(Self.smallModel(wordWeight: 2))
            let offset = 8 + 2 + 8 + 2 + 14 + 2 + 2 + 1 + 4
            #expect(bytes[offset] == 2)
            bytes[offset] = weight
            Self.reseal(&bytes)
            do { _ = try ModelFile.decode(bytes); Issue.record("weight \(weight) accepted") } catch let e as ModelFileError {
                #expect(e.code == .malformed)
                #expect(e.description.contains("word n-gram weight \(weight)"))
            }
        }
    }

    @Test func nonFiniteWeightIsRefusedEvenWithValidChecksum() throws {
        var model = Self.smallModel()
        model.weights[7] = .nan
        #expect(throws: ModelFileError.self) { try ModelFile.decode(ModelFile.encode(model)) }
    }
}

import SigiloCrypto
typealias SigiloCryptoSHA = SigiloCrypto.SHA256
