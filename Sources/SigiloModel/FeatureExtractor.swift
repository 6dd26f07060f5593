import SigiloCrypto
import SigiloEncoder
import SigiloText

/// Why features cannot be made for a model: the encoder it names is not the one at hand.
public struct FeatureExtractorError: Error, CustomStringConvertible {
    public let description: String
}

/// Turns messages into the feature vectors a model of `configuration` reads:
/// hashed n-grams, the encoder's centred embedding, or both side by side
/// (FeatureConfiguration.kind). Messages are redacted first on both paths;
/// the encoder reads the redacted text as written (its tokenizer normalises).
public struct FeatureExtractor: Sendable {
    public let configuration: FeatureConfiguration
    public let featurizer: Featurizer
    public let encoder: Encoder?

    /// The encoder must be the one the configuration names (same digest and width).
    public init(_ configuration: FeatureConfiguration, encoder: Encoder? = nil) throws {
        self.configuration = configuration
        featurizer = Featurizer(configuration)
        if configuration.kind.usesEncoder {
            guard let encoder else {
                throw FeatureExtractorError(description: "the model reads \(configuration.kind.rawValue) features and no encoder was loaded")
            }
            let wanted = SHA256.hex(configuration.encoderDigest)
            guard encoder.digest == wanted, encoder.architecture.hidden == configuration.encoderDimension else {
                throw FeatureExtractorError(description: "the model was trained on encoder \(wanted.prefix(16))… (\(configuration.encoderDimension) wide); "
                                                       + "the loaded encoder is \(encoder.digest.prefix(16))… (\(encoder.architecture.hidden) wide)")
            }
            self.encoder = encoder
        } else {
            self.encoder = nil
        }
    }

    /// The extractor for a model or plan of `configuration`: when it reads
    /// encoder features, the encoder at `encoderPath` (default: located as
    /// `EncoderLocation` says) is loaded and must have the configuration's digest.
    public static func loading(_ configuration: FeatureConfiguration, encoderPath: String? = nil) throws -> FeatureExtractor {
        let encoder = configuration.kind.usesEncoder
            ? try EncoderLocation.load(path: encoderPath, expectedSHA256: SHA256.hex(configuration.encoderDigest)) : nil
        return try FeatureExtractor(configuration, encoder: encoder)
    }

    /// A configuration for `kind` that reads `encoder`'s embeddings.
    public static func configuration(_ base: FeatureConfiguration, kind: FeatureKind, encoder: Encoder?) -> FeatureConfiguration {
        var c = base
        c.kind = kind
        if kind.usesEncoder, let encoder {
            c.encoderDimension = encoder.architecture.hidden
            c.encoderDigest = Hex.decode(encoder.digest) ?? []
        } else {
            (c.encoderDimension, c.encoderDigest) = (0, [])
        }
        return c
    }

    /// The digest of the encoder this extractor reads (as stores key embeddings); nil for hashed features.
    public var encoderDigest: [UInt8]? { encoder == nil ? nil : configuration.encoderDigest }

    /// The redacted text the encoder reads for `text`.
    public func encoderInput(_ text: String) -> String { featurizer.redactor.redact(text) }

    /// Features of `texts`, in order. The encoder's part is `centredEmbeddings`
    /// when given (the encoder's centred embeddings of the redacted texts, say
    /// from a cache), else computed here, batched over every core.
    public func features(_ texts: [String], centredEmbeddings: [[Float]]? = nil) -> [SparseVector] {
        let centredEmbeddings = configuration.kind.usesEncoder ? centredEmbeddings ?? encoder!.features(texts.map(encoderInput)) : nil
        var workspace = Featurizer.Workspace()
        return texts.indices.map { i in
            var vector = configuration.kind.usesHashes ? featurizer.features(of: texts[i], workspace: &workspace) : SparseVector()
            if let embedding = centredEmbeddings?[i] { append(embedding, to: &vector) }
            return vector
        }
    }

    /// Puts a centred embedding after the hashed part of `vector` (which is empty for `encoder` features).
    public func append(_ embedding: [Float], to vector: inout SparseVector) {
        let base = Int32(configuration.hashedDimension)
        vector.indices += (0..<Int32(embedding.count)).map { base + $0 }
        vector.values += embedding
    }
}
