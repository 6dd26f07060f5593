import Foundation
import SigiloCrypto
import SigiloText

/// Why a model file was refused.
public struct ModelFileError: Error, CustomStringConvertible, Equatable {
    public enum Code: Equatable, Sendable {
        case notAModel, truncated, checksumMismatch, unsupportedVersion, incompatible, malformed
    }
    public let code: Code
    public let description: String

    init(_ code: Code, _ description: String) {
        self.code = code
        self.description = description
    }
}

/// Reads and writes the binary model file (models/FORMAT.md).
///
/// Layout (little-endian): magic "SGLMODEL", u16 format version, u64 total
/// length, the configuration, labels, calibration, f32 weights and bias, and
/// a SHA-256 of every preceding byte. The reader checks, in this order, the
/// magic, the length, the checksum, the version and then every field, so the
/// error names the first thing that is wrong.
public enum ModelFile {
    public static let magic = Array("SGLMODEL".utf8)
    /// Version 2 adds the word n-gram weight, version 3 the feature kind and
    /// the encoder's width and digest. A file is written at the lowest
    /// version that can hold it, so hashed models stay readable by older builds.
    public static let formatVersions: ClosedRange<UInt16> = 1...3
    static let maximumLabels = 4096
    static let maximumLabelBytes = 256
    static let maximumEncoderDimension = 4096

    /// The file bytes of `model`.
    public static func encode(_ model: SoftmaxModel) -> [UInt8] {
        var w = ByteWriter()
        w.bytes(magic)
        let version: UInt16 = model.features.kind != .hashed ? 3 : model.features.wordWeight == 1 ? 1 : 2
        w.u16(version)
        let lengthOffset = w.buffer.count
        w.u64(0) // patched below
        let name = Array(FeatureHash.name.utf8)
        w.u16(UInt16(name.count)); w.bytes(name)
        w.u16(model.features.hashVersion)
        w.u16(model.features.textPipelineVersion)
        w.u8(UInt8(model.features.bucketBits))
        w.u8(UInt8(model.features.wordNGrams.lowerBound)); w.u8(UInt8(model.features.wordNGrams.upperBound))
        w.u8(UInt8(model.features.charNGrams.lowerBound)); w.u8(UInt8(model.features.charNGrams.upperBound))
        if version >= 2 { w.u8(UInt8(model.features.wordWeight)) }
        if version >= 3 {
            w.u8(UInt8(FeatureKind.allCases.firstIndex(of: model.features.kind)!))
            w.u32(UInt32(model.features.encoderDimension))
            w.bytes(model.features.encoderDigest)
        }
        w.u32(UInt32(model.labels.count))
        for label in model.labels {
            let bytes = Array(label.utf8)
            w.u16(UInt16(bytes.count)); w.bytes(bytes)
        }
        w.u32(UInt32(model.handoffLabels.count))
        for label in model.handoffLabels { w.u32(UInt32(label)) }
        w.f32(model.temperature)
        w.f32(model.handoffThreshold)
        w.u64(UInt64(model.weights.count))
        w.floats(model.weights)
        w.floats(model.bias)
        let total = UInt64(w.buffer.count + SHA256.byteCount)
        w.patchU64(total, at: lengthOffset)
        w.bytes(SHA256.hash(w.buffer))
        return w.buffer
    }

    /// Writes `model` to `url` atomically (a crash never leaves half a model).
    public static func write(_ model: SoftmaxModel, to url: URL) throws {
        try Data(encode(model)).write(to: url, options: .atomic)
    }

    /// Reads and validates a model file.
    public static func read(from url: URL) throws -> SoftmaxModel {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelFileError(.malformed, "cannot read \(url.path): \(error.localizedDescription)")
        }
        return try decode(Array(data))
    }

    /// Decodes and validates model file bytes.
    public static func decode(_ bytes: [UInt8]) throws -> SoftmaxModel {
        let minimum = magic.count + 2 + 8
        guard bytes.count >= magic.count, Array(bytes[0..<magic.count]) == magic else {
            throw ModelFileError(.notAModel, "not a Sigilo model file (missing magic \"SGLMODEL\")")
        }
        guard bytes.count >= minimum else {
            throw ModelFileError(.truncated, "truncated model file: \(bytes.count) bytes, header alone needs \(minimum)")
        }
        var r = ByteReader(bytes)
        r.offset = magic.count
        let version = try r.u16("format version")
        let declared = try r.u64("total length")
        guard declared == UInt64(bytes.count) else {
            if declared > UInt64(bytes.count) {
                throw ModelFileError(.truncated, "truncated model file: header says \(declared) bytes, file has \(bytes.count)")
            }
            throw ModelFileError(.malformed, "model file has \(UInt64(bytes.count) - declared) unexpected trailing bytes")
        }
        // The length check before any slicing: a file whose header claims its own short length
        // (found by the model-file fuzzer) must be refused, not cut at a negative offset.
        guard bytes.count >= minimum + SHA256.byteCount else {
            throw ModelFileError(.truncated, "truncated model file: \(bytes.count) bytes, header and checksum need \(minimum + SHA256.byteCount)")
        }
        let body = bytes[0..<(bytes.count - SHA256.byteCount)]
        guard constantTimeEqual(SHA256.hash(body), Array(bytes[(bytes.count - SHA256.byteCount)...])) else {
            throw ModelFileError(.checksumMismatch, "model file checksum mismatch: the file is corrupted")
        }
        guard formatVersions.contains(version) else {
            throw ModelFileError(.unsupportedVersion,
                                 "unsupported model format version \(version) (this build reads \(formatVersions.lowerBound)...\(formatVersions.upperBound))")
        }
        r.end = bytes.count - SHA256.byteCount

        let nameLength = Int(try r.u16("hash name length"))
        let name = String(decoding: try r.bytes(nameLength, "hash name"), as: UTF8.self)
        guard name == FeatureHash.name else {
            throw ModelFileError(.incompatible, "model uses feature hash \"\(name)\"; this build implements \"\(FeatureHash.name)\"")
        }
        let hashVersion = try r.u16("hash version")
        guard hashVersion == FeatureHash.version else {
            throw ModelFileError(.incompatible, "model uses hash version \(hashVersion); this build implements \(FeatureHash.version)")
        }
        let pipeline = try r.u16("text pipeline version")
        guard pipeline == 1 else {
            throw ModelFileError(.incompatible, "model uses text pipeline version \(pipeline); this build implements 1")
        }
        let bits = Int(try r.u8("bucket bits"))
        guard FeatureConfiguration.supportedBucketBits.contains(bits) else {
            throw ModelFileError(.malformed, "bucket bits \(bits) outside \(FeatureConfiguration.supportedBucketBits)")
        }
        let wordLo = Int(try r.u8("word n-gram min")), wordHi = Int(try r.u8("word n-gram max"))
        let charLo = Int(try r.u8("char n-gram min")), charHi = Int(try r.u8("char n-gram max"))
        guard wordLo >= 1, wordLo <= wordHi, wordHi <= 4 else {
            throw ModelFileError(.malformed, "word n-gram range \(wordLo)...\(wordHi) is invalid")
        }
        guard charLo >= 1, charLo <= charHi, charHi <= 8 else {
            throw ModelFileError(.malformed, "character n-gram range \(charLo)...\(charHi) is invalid")
        }
        let wordWeight = version >= 2 ? Int(try r.u8("word n-gram weight")) : 1
        guard FeatureConfiguration.supportedWordWeights.contains(wordWeight) else {
            throw ModelFileError(.malformed, "word n-gram weight \(wordWeight) outside \(FeatureConfiguration.supportedWordWeights)")
        }
        var kind = FeatureKind.hashed, encoderDimension = 0, encoderDigest = [UInt8]()
        if version >= 3 {
            let code = Int(try r.u8("feature kind"))
            guard code < FeatureKind.allCases.count, FeatureKind.allCases[code] != .hashed else {
                throw ModelFileError(.malformed, "feature kind \(code) is not 1 (encoder) or 2 (both)")
            }
            kind = FeatureKind.allCases[code]
            encoderDimension = Int(try r.u32("encoder dimension"))
            guard (1...maximumEncoderDimension).contains(encoderDimension) else {
                throw ModelFileError(.malformed, "encoder dimension \(encoderDimension) outside 1...\(maximumEncoderDimension)")
            }
            encoderDigest = try r.bytes(SHA256.byteCount, "encoder digest")
        }
        let labelCount = Int(try r.u32("label count"))
        guard (1...maximumLabels).contains(labelCount) else {
            throw ModelFileError(.malformed, "label count \(labelCount) outside 1...\(maximumLabels)")
        }
        var labels = [String]()
        for index in 0..<labelCount {
            let length = Int(try r.u16("length of label \(index)"))
            guard (1...maximumLabelBytes).contains(length) else {
                throw ModelFileError(.malformed, "label \(index) has length \(length), outside 1...\(maximumLabelBytes)")
            }
            let raw = try r.bytes(length, "label \(index)")
            guard let label = String(validating: raw, as: UTF8.self) else {
                throw ModelFileError(.malformed, "label \(index) is not valid UTF-8")
            }
            labels.append(label)
        }
        guard Set(labels).count == labels.count else { throw ModelFileError(.malformed, "labels are not unique") }
        let handoffCount = Int(try r.u32("hand-off label count"))
        guard handoffCount <= labelCount else {
            throw ModelFileError(.malformed, "hand-off label count \(handoffCount) exceeds label count \(labelCount)")
        }
        var handoff = [Int]()
        for _ in 0..<handoffCount {
            let index = Int(try r.u32("hand-off label"))
            guard index < labelCount else { throw ModelFileError(.malformed, "hand-off label index \(index) out of range") }
            handoff.append(index)
        }
        let temperature = try r.f32("temperature")
        guard temperature.isFinite, temperature > 0 else {
            throw ModelFileError(.malformed, "temperature \(temperature) is not a positive finite number")
        }
        let threshold = try r.f32("hand-off threshold")
        guard threshold.isFinite, (0...1).contains(threshold) else {
            throw ModelFileError(.malformed, "hand-off threshold \(threshold) outside [0, 1]")
        }
        var features = FeatureConfiguration(bucketBits: bits, wordNGrams: wordLo...wordHi, charNGrams: charLo...charHi,
                                            wordWeight: wordWeight, textPipelineVersion: pipeline, hashVersion: hashVersion)
        (features.kind, features.encoderDimension, features.encoderDigest) = (kind, encoderDimension, encoderDigest)
        let weightCount = try r.u64("weight count")
        let expected = UInt64(features.dimension * labelCount)
        guard weightCount == expected else {
            throw ModelFileError(.malformed, "weight count \(weightCount) != feature dimension x labels = \(expected)")
        }
        let weights = try r.floats(Int(weightCount), "weights")
        let bias = try r.floats(labelCount, "bias")
        guard r.offset == r.end else {
            throw ModelFileError(.malformed, "\(r.end - r.offset) unexpected bytes after the bias")
        }
        if let bad = weights.firstIndex(where: { !$0.isFinite }) {
            throw ModelFileError(.malformed, "weight \(bad) is not finite")
        }
        if let bad = bias.firstIndex(where: { !$0.isFinite }) {
            throw ModelFileError(.malformed, "bias \(bad) is not finite")
        }
        return SoftmaxModel(features: features, labels: labels, weights: weights, bias: bias,
                            temperature: temperature, handoffThreshold: threshold, handoffLabels: handoff)
    }
}

/// Little-endian byte writer.
struct ByteWriter {
    var buffer = [UInt8]()
    mutating func u8(_ v: UInt8) { buffer.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { buffer.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }
    mutating func bytes(_ b: [UInt8]) { buffer.append(contentsOf: b) }
    mutating func floats(_ values: [Float]) {
        buffer.reserveCapacity(buffer.count + values.count * 4)
        for v in values { u32(v.bitPattern) }
    }
    mutating func patchU64(_ v: UInt64, at offset: Int) {
        withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { buffer[offset + i] = b } }
    }
}

/// Bounds-checked little-endian reader whose errors name the field and offset.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0
    var end: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.end = bytes.count
    }

    mutating func take(_ count: Int, _ field: String) throws -> ArraySlice<UInt8> {
        guard count >= 0, end - offset >= count else {
            throw ModelFileError(.truncated, "model file ends inside \(field) at offset \(offset)")
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    mutating func integer<T: FixedWidthInteger>(_: T.Type, _ field: String) throws -> T {
        let slice = try take(MemoryLayout<T>.size, field)
        var value: T = 0
        for (shift, byte) in slice.enumerated() { value |= T(byte) << (8 * shift) }
        return value
    }

    mutating func u8(_ field: String) throws -> UInt8 { try integer(UInt8.self, field) }
    mutating func u16(_ field: String) throws -> UInt16 { try integer(UInt16.self, field) }
    mutating func u32(_ field: String) throws -> UInt32 { try integer(UInt32.self, field) }
    mutating func u64(_ field: String) throws -> UInt64 { try integer(UInt64.self, field) }
    mutating func f32(_ field: String) throws -> Float { Float(bitPattern: try u32(field)) }
    mutating func bytes(_ count: Int, _ field: String) throws -> [UInt8] { Array(try take(count, field)) }

    mutating func floats(_ count: Int, _ field: String) throws -> [Float] {
        guard count >= 0, count <= (end - offset) / 4 else {
            throw ModelFileError(.truncated, "model file ends inside \(field) at offset \(offset)")
        }
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBytes { dst in
                dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count * 4)]))
            }
        }
        #if _endian(big)
        for i in out.indices { out[i] = Float(bitPattern: UInt32(littleEndian: out[i].bitPattern)) }
        #endif
        offset += count * 4
        return out
    }
}
