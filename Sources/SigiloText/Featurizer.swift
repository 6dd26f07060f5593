import Foundation

/// What a feature vector is computed from: stored in every model file, so a
/// model is only ever applied to text featurised exactly as in training.
public struct FeatureConfiguration: Equatable, Sendable {
    /// log2 of the number of hash buckets B (B is a power of two).
    public var bucketBits: Int
    /// Word n-gram orders (1...2: unigrams and bigrams).
    public var wordNGrams: ClosedRange<Int>
    /// Character n-gram orders within word boundaries (3...5).
    public var charNGrams: ClosedRange<Int>
    /// Version of redaction + normalisation + tokenisation.
    public var textPipelineVersion: UInt16
    /// Version of `FeatureHash`.
    public var hashVersion: UInt16

    public static let supportedBucketBits = 8...24

    public init(bucketBits: Int = 16, wordNGrams: ClosedRange<Int> = 1...2, charNGrams: ClosedRange<Int> = 3...5,
                textPipelineVersion: UInt16 = 1, hashVersion: UInt16 = FeatureHash.version) {
        self.bucketBits = bucketBits
        self.wordNGrams = wordNGrams
        self.charNGrams = charNGrams
        self.textPipelineVersion = textPipelineVersion
        self.hashVersion = hashVersion
    }

    public var bucketCount: Int { 1 << bucketBits }
}

/// A sparse vector: sorted, distinct indices and their values.
public struct SparseVector: Equatable, Sendable {
    public var indices: [Int32]
    public var values: [Float]

    public init(indices: [Int32] = [], values: [Float] = []) {
        self.indices = indices
        self.values = values
    }

    public var count: Int { indices.count }
}

/// Turns a raw message into its feature vector:
/// redact -> normalise -> tokenise -> hash word and character n-grams ->
/// sublinear term frequency (1 + ln tf) -> L2 normalisation.
public struct Featurizer: Sendable {
    public let configuration: FeatureConfiguration
    public let redactor = Redactor()
    public let normalizer = TextNormalizer()

    public init(_ configuration: FeatureConfiguration) {
        self.configuration = configuration
    }

    /// Features of a raw message (redacted first).
    public func features(of text: String) -> SparseVector {
        featuresOfNormalized(normalizer.normalizedUTF8(redactor.redact(text)))
    }

    /// Features of text that is already redacted and normalised.
    public func featuresOfNormalized(_ bytes: [UInt8]) -> SparseVector {
        var buckets = [UInt32]()
        buckets.reserveCapacity(bytes.count * 4 + 16)
        bytes.withUnsafeBufferPointer { hashNGrams(of: $0, into: &buckets) }
        return Self.sublinearNormalized(&buckets)
    }

    /// Appends the bucket of every n-gram of the text to `buckets`.
    func hashNGrams(of bytes: UnsafeBufferPointer<UInt8>, into buckets: inout [UInt32]) {
        let mask = UInt64(configuration.bucketCount - 1)
        var tokens = [Range<Int>]()
        Tokenizer.tokenize(bytes, into: &tokens)
        let words = configuration.wordNGrams
        let chars = configuration.charNGrams

        // Word n-grams: tokens joined by a single space.
        for start in tokens.indices {
            var h = FeatureHash.step(FeatureHash.offsetBasis, FeatureHash.wordTag)
            for n in 1...words.upperBound {
                let index = start + n - 1
                guard index < tokens.count else { break }
                if n > 1 { h = FeatureHash.step(h, 0x20) }
                for i in tokens[index] { h = FeatureHash.step(h, bytes[i]) }
                if n >= words.lowerBound { buckets.append(UInt32(truncatingIfNeeded: FeatureHash.fmix64(h) & mask)) }
            }
        }

        // Character n-grams of " token ", counted in scalars, hashed over bytes.
        var starts = [Int]() // byte offset of every scalar of the padded token, plus the end
        for token in tokens {
            starts.removeAll(keepingCapacity: true)
            starts.append(-1) // the leading pad
            for i in token where bytes[i] & 0xc0 != 0x80 { starts.append(i) }
            starts.append(token.upperBound) // the trailing pad
            let scalarCount = starts.count
            starts.append(token.upperBound + 1)
            for first in 0..<scalarCount {
                var h = FeatureHash.step(FeatureHash.offsetBasis, FeatureHash.charTag)
                var n = 0
                var position = first
                while n < chars.upperBound, position < scalarCount {
                    let lo = starts[position], hi = starts[position + 1]
                    if lo < 0 || lo >= token.upperBound {
                        h = FeatureHash.step(h, 0x20)
                    } else {
                        for i in lo..<min(hi, token.upperBound) { h = FeatureHash.step(h, bytes[i]) }
                    }
                    n += 1
                    position += 1
                    if n >= chars.lowerBound { buckets.append(UInt32(truncatingIfNeeded: FeatureHash.fmix64(h) & mask)) }
                }
            }
        }
    }

    /// Counts equal buckets, weighs each by 1 + ln(count) and scales to unit L2 norm.
    static func sublinearNormalized(_ buckets: inout [UInt32]) -> SparseVector {
        guard !buckets.isEmpty else { return SparseVector() }
        buckets.sort()
        var indices = [Int32]()
        var values = [Float]()
        indices.reserveCapacity(buckets.count)
        values.reserveCapacity(buckets.count)
        var i = 0
        var sumSquares: Float = 0
        while i < buckets.count {
            var j = i + 1
            while j < buckets.count, buckets[j] == buckets[i] { j += 1 }
            let value = 1 + logf(Float(j - i))
            indices.append(Int32(buckets[i]))
            values.append(value)
            sumSquares += value * value
            i = j
        }
        let scale = 1 / sumSquares.squareRoot()
        for k in values.indices { values[k] *= scale }
        return SparseVector(indices: indices, values: values)
    }
}

