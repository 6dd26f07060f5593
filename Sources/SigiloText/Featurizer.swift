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
    /// How many times each word n-gram is counted before the 1 + ln tf
    /// weighting: a message has several times more character n-grams than
    /// word n-grams, and counting words more weighs their evidence up. 1 is
    /// the plain count.
    public var wordWeight: Int

    /// Which features a model reads: hashed n-grams (this module), the
    /// frozen sentence encoder's centred embedding (SigiloEncoder), or both
    /// side by side. The encoder's part of a feature vector follows the
    /// hashed part: indices `hashedDimension ..< dimension`.
    public var kind: FeatureKind = .hashed
    /// Width of the encoder's embedding (0 for `hashed`).
    public var encoderDimension = 0
    /// SHA-256 of the encoder file whose embeddings the model reads (empty for `hashed`).
    public var encoderDigest: [UInt8] = []

    public var hashedDimension: Int { kind.usesHashes ? bucketCount : 0 }
    /// Length of a feature vector: the model has this many weights per label.
    public var dimension: Int { hashedDimension + (kind.usesEncoder ? encoderDimension : 0) }

    public static let supportedBucketBits = 8...24
    public static let supportedWordWeights = 1...8

    public init(bucketBits: Int = 16, wordNGrams: ClosedRange<Int> = 1...2, charNGrams: ClosedRange<Int> = 3...5,
                wordWeight: Int = 1, textPipelineVersion: UInt16 = 1, hashVersion: UInt16 = FeatureHash.version) {
        self.bucketBits = bucketBits
        self.wordNGrams = wordNGrams
        self.charNGrams = charNGrams
        self.wordWeight = wordWeight
        self.textPipelineVersion = textPipelineVersion
        self.hashVersion = hashVersion
    }

    public var bucketCount: Int { 1 << bucketBits }
}

public enum FeatureKind: String, CaseIterable, Codable, Sendable {
    case hashed, encoder, both

    public var usesHashes: Bool { self != .encoder }
    public var usesEncoder: Bool { self != .hashed }
}

/// A sparse vector: distinct indices and their values.
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

    /// Scratch buffers reused across messages, so a featuriser in a loop
    /// allocates only the vectors it returns.
    public struct Workspace {
        var tokens = [Range<Int>]()
        var starts = [Int]()
        var buckets = [UInt32]()
        var slots = [UInt32]()
        var counts = [UInt16]()
        var firstSeen = [Int32]()

        public init() {}
    }

    /// Features of a raw message (redacted first).
    public func features(of text: String) -> SparseVector {
        var workspace = Workspace()
        return features(of: text, workspace: &workspace)
    }

    /// Features of a raw message, reusing `workspace` between calls.
    public func features(of text: String, workspace: inout Workspace) -> SparseVector {
        featuresOfNormalized(normalizer.normalizedUTF8(redactor.redact(text)), workspace: &workspace)
    }

    /// Features of text that is already redacted and normalised.
    public func featuresOfNormalized(_ bytes: [UInt8], workspace: inout Workspace) -> SparseVector {
        workspace.buckets.removeAll(keepingCapacity: true)
        bytes.withUnsafeBufferPointer { hashNGrams(of: $0, workspace: &workspace) }
        return Self.sublinearNormalized(&workspace)
    }

    /// Fills `workspace.buckets` with the bucket of every n-gram of the text.
    func hashNGrams(of bytes: UnsafeBufferPointer<UInt8>, workspace: inout Workspace) {
        let mask = UInt64(configuration.bucketCount - 1)
        workspace.tokens.removeAll(keepingCapacity: true)
        Tokenizer.tokenize(bytes, into: &workspace.tokens)
        let tokens = workspace.tokens
        let words = configuration.wordNGrams
        let chars = configuration.charNGrams
        let wordWeight = configuration.wordWeight

        // Word n-grams: tokens joined by a single space.
        for start in tokens.indices {
            var h = FeatureHash.step(FeatureHash.offsetBasis, FeatureHash.wordTag)
            for n in 1...words.upperBound {
                let index = start + n - 1
                guard index < tokens.count else { break }
                if n > 1 { h = FeatureHash.step(h, 0x20) }
                for i in tokens[index] { h = FeatureHash.step(h, bytes[i]) }
                if n >= words.lowerBound {
                    let bucket = UInt32(truncatingIfNeeded: FeatureHash.fmix64(h) & mask)
                    for _ in 0..<wordWeight { workspace.buckets.append(bucket) }
                }
            }
        }

        // Character n-grams of " token ", counted in scalars, hashed over bytes.
        // Byte offset of every scalar of the padded token, plus the end.
        var starts = [Int]()
        swap(&starts, &workspace.starts) // take the buffer out: no copy-on-write
        defer { swap(&starts, &workspace.starts) }
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
                    if n >= chars.lowerBound { workspace.buckets.append(UInt32(truncatingIfNeeded: FeatureHash.fmix64(h) & mask)) }
                }
            }
        }
    }

    /// Counts equal buckets, weighs each by 1 + ln(count) and scales to unit
    /// L2 norm. Indices come out distinct, in order of first occurrence.
    ///
    /// Counting uses a small open-addressing table sized to the message (not
    /// to B), so a message costs O(n-grams) whatever the bucket count.
    static func sublinearNormalized(_ workspace: inout Workspace) -> SparseVector {
        guard !workspace.buckets.isEmpty else { return SparseVector() }
        var capacity = 16
        while capacity < 2 * workspace.buckets.count { capacity <<= 1 }
        let mask = capacity - 1
        let shift = UInt32(32 - capacity.trailingZeroBitCount)
        // .max marks an empty slot (buckets are below 2^24).
        workspace.slots.removeAll(keepingCapacity: true)
        workspace.slots.append(contentsOf: repeatElement(UInt32.max, count: capacity))
        workspace.counts.removeAll(keepingCapacity: true)
        workspace.counts.append(contentsOf: repeatElement(0, count: capacity))
        workspace.firstSeen.removeAll(keepingCapacity: true)
        var slots = [UInt32](), counts = [UInt16](), firstSeen = [Int32]()
        swap(&slots, &workspace.slots); swap(&counts, &workspace.counts); swap(&firstSeen, &workspace.firstSeen)
        defer { swap(&slots, &workspace.slots); swap(&counts, &workspace.counts); swap(&firstSeen, &workspace.firstSeen) }
        slots.withUnsafeMutableBufferPointer { slots in
            counts.withUnsafeMutableBufferPointer { counts in
                for bucket in workspace.buckets {
                    var slot = Int((bucket &* 0x9e37_79b1) >> shift)
                    while slots[slot] != bucket && slots[slot] != .max { slot = (slot + 1) & mask }
                    if slots[slot] == .max { slots[slot] = bucket; firstSeen.append(Int32(slot)) }
                    counts[slot] &+= counts[slot] == .max ? 0 : 1
                }
            }
        }
        var indices = [Int32]()
        var values = [Float]()
        indices.reserveCapacity(firstSeen.count)
        values.reserveCapacity(firstSeen.count)
        var sumSquares: Float = 0
        for slot in firstSeen {
            let value = 1 + logf(Float(counts[Int(slot)]))
            indices.append(Int32(slots[Int(slot)]))
            values.append(value)
            sumSquares += value * value
        }
        let scale = 1 / sumSquares.squareRoot()
        for k in values.indices { values[k] *= scale }
        return SparseVector(indices: indices, values: values)
    }
}
