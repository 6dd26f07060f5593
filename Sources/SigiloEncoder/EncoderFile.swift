import Foundation
import SigiloCrypto

/// A malformed, truncated or unexpected encoder file, naming what is wrong.
public struct EncoderFileError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The shape of a BERT-style encoder, as its file declares it.
public struct EncoderArchitecture: Equatable, Sendable {
    public var hidden: Int
    public var layers: Int
    public var heads: Int
    public var intermediate: Int
    public var vocabulary: Int
    public var positions: Int
    public var tokenTypes: Int
    public var layerNormEpsilon: Float

    public init(hidden: Int, layers: Int, heads: Int, intermediate: Int, vocabulary: Int, positions: Int, tokenTypes: Int = 2,
                layerNormEpsilon: Float = 1e-12) {
        (self.hidden, self.layers, self.heads, self.intermediate) = (hidden, layers, heads, intermediate)
        (self.vocabulary, self.positions, self.tokenTypes, self.layerNormEpsilon) = (vocabulary, positions, tokenTypes, layerNormEpsilon)
    }
}

/// One Sigilo encoder file (models/ENCODER.md): the magic `SGLENC01`, a
/// little-endian u32 header length, a JSON header (architecture, special
/// tokens, the tensor directory), then 64-byte-aligned tensors. Decoding
/// checks every field and every tensor's bounds and size against its
/// declared shape; nothing is trusted because it is ours.
public struct EncoderFile: Sendable {
    public static let magic = Array("SGLENC01".utf8)
    /// SHA-256 of models/e5-small-enpt-q4.sgle, the encoder Sigilo ships
    /// (tools/convert-encoder.py writes it; models/ENCODER.md records it).
    public static let shippedSHA256 = "e856dc795bb188e754d0a00bc71dde7fb002f5f915a41039617b6fc6547b37ca"
    /// Weights per 4-bit block (an fp16 scale and 16 bytes of nibbles).
    public static let blockWeights = 32
    public static let blockBytes = 18

    public enum TensorType: String, Sendable { case f32, q4_0, u32, u8 }

    public struct Tensor: Sendable {
        public let type: TensorType
        public let shape: [Int]
        let range: Range<Int>
    }

    public let architecture: EncoderArchitecture
    public let special: (bos: Int32, eos: Int32, pad: Int32, unk: Int32)
    public let prefix: String
    /// Lower-case hex SHA-256 of the whole file.
    public let digest: String
    let tensors: [String: Tensor]
    let bytes: [UInt8]

    /// Reads and decodes `path`; when `expectedSHA256` is given, a file whose
    /// digest differs is refused before anything else is read from it.
    public static func load(path: String, expectedSHA256: String?) throws -> EncoderFile {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw EncoderFileError("\(path): cannot read the encoder file")
        }
        let bytes = [UInt8](data), digest = SHA256.hex(SHA256.hash(bytes))
        if let expected = expectedSHA256, digest != expected.lowercased() {
            throw EncoderFileError("\(path): SHA-256 \(digest) is not the expected \(expected)")
        }
        do { return try EncoderFile(bytes: bytes, digest: digest) } catch let error as EncoderFileError {
            throw EncoderFileError("\(path): \(error.description)")
        }
    }

    public init(bytes: [UInt8]) throws { try self.init(bytes: bytes, digest: SHA256.hex(SHA256.hash(bytes))) }

    private init(bytes: [UInt8], digest: String) throws {
        guard bytes.count >= 12, Array(bytes[0..<8]) == Self.magic else { throw EncoderFileError("not a Sigilo encoder file (magic)") }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
        guard headerLength <= bytes.count - 12 else { throw EncoderFileError("header: \(headerLength) bytes declared, file truncated") }
        guard let header = try? JSONSerialization.jsonObject(with: Data(bytes[12..<12 + headerLength])) as? [String: Any] else {
            throw EncoderFileError("header: not a JSON object")
        }
        guard header["format"] as? Int == 1 else { throw EncoderFileError("format: only version 1 is known") }
        let dataStart = (12 + headerLength + 63) / 64 * 64
        guard let config = header["architecture"] as? [String: Any] else { throw EncoderFileError("architecture: missing") }
        func count(_ name: String, _ within: ClosedRange<Int>) throws -> Int {
            guard let value = config[name] as? Int, within.contains(value) else {
                throw EncoderFileError("architecture.\(name): expected an integer in \(within.lowerBound)...\(within.upperBound)")
            }
            return value
        }
        let hidden = try count("hidden", 32...4096), heads = try count("heads", 1...64)
        guard hidden % Self.blockWeights == 0, hidden % (8 * heads) == 0 else {
            throw EncoderFileError("architecture.hidden: \(hidden) is not a multiple of 32 and of 8 times the \(heads) heads")
        }
        let intermediate = try count("intermediate", 32...16384)
        guard intermediate % Self.blockWeights == 0 else { throw EncoderFileError("architecture.intermediate: not a multiple of 32") }
        guard let epsilon = (config["layer_norm_epsilon"] as? NSNumber)?.floatValue, epsilon > 0, epsilon < 1 else {
            throw EncoderFileError("architecture.layer_norm_epsilon: expected a number in (0, 1)")
        }
        let architecture = EncoderArchitecture(hidden: hidden, layers: try count("layers", 1...64), heads: heads, intermediate: intermediate,
                                           vocabulary: try count("vocabulary", 8...1_000_000), positions: try count("positions", 4...8192),
                                           tokenTypes: try count("token_types", 1...16), layerNormEpsilon: epsilon)
        self.architecture = architecture
        guard let ids = header["special_tokens"] as? [String: Any] else { throw EncoderFileError("special_tokens: missing") }
        func id(_ name: String) throws -> Int32 {
            guard let value = ids[name] as? Int, value >= 0, value < architecture.vocabulary else {
                throw EncoderFileError("special_tokens.\(name): expected a token id below \(architecture.vocabulary)")
            }
            return Int32(value)
        }
        special = (try id("bos"), try id("eos"), try id("pad"), try id("unk"))
        guard let prefix = header["prefix"] as? String, prefix.utf8.count <= 64 else { throw EncoderFileError("prefix: expected a short string") }
        self.prefix = prefix
        guard let directory = header["tensors"] as? [[String: Any]] else { throw EncoderFileError("tensors: expected an array") }
        var tensors = [String: Tensor]()
        for (index, entry) in directory.enumerated() {
            let at = "tensors[\(index)]"
            guard let name = entry["name"] as? String else { throw EncoderFileError("\(at).name: missing") }
            guard let type = (entry["type"] as? String).flatMap(TensorType.init(rawValue:)) else {
                throw EncoderFileError("\(at).type: expected f32, q4_0, u32 or u8")
            }
            guard let shape = entry["shape"] as? [Int], !shape.isEmpty, shape.allSatisfy({ $0 > 0 && $0 <= 1 << 26 }),
                  let offset = entry["offset"] as? Int, let length = entry["bytes"] as? Int, offset >= 0, length >= 0 else {
                throw EncoderFileError("\(at) (\(name)): shape, offset and bytes must be positive integers")
            }
            let elements = shape.reduce(1, *)
            let expected: Int
            switch type {
            case .f32, .u32: expected = elements * 4
            case .u8: expected = elements
            case .q4_0:
                guard shape.last! % Self.blockWeights == 0 else { throw EncoderFileError("\(at) (\(name)): rows must be whole 32-weight blocks") }
                expected = elements / Self.blockWeights * Self.blockBytes
            }
            guard length == expected, offset <= bytes.count - dataStart, length <= bytes.count - dataStart - offset else {
                throw EncoderFileError("\(at) (\(name)): \(length) bytes at \(offset) do not fit shape \(shape) inside the file")
            }
            guard tensors[name] == nil else { throw EncoderFileError("\(at): \(name) appears twice") }
            tensors[name] = Tensor(type: type, shape: shape, range: dataStart + offset..<dataStart + offset + length)
        }
        self.tensors = tensors
        self.bytes = bytes
        self.digest = digest
    }

    func tensor(_ name: String, _ type: TensorType, _ shape: [Int]) throws -> Tensor {
        guard let tensor = tensors[name] else { throw EncoderFileError("tensor \(name): missing") }
        guard tensor.type == type, tensor.shape == shape else {
            throw EncoderFileError("tensor \(name): \(tensor.type.rawValue) \(tensor.shape), expected \(type.rawValue) \(shape)")
        }
        return tensor
    }

    /// A float tensor, checked to be finite.
    func floats(_ name: String, _ shape: [Int]) throws -> [Float] {
        let values = try words(tensor(name, .f32, shape)).map { Float(bitPattern: $0) }
        guard values.allSatisfy(\.isFinite) else { throw EncoderFileError("tensor \(name): not every value is finite") }
        return values
    }

    func integers(_ name: String, count: Int? = nil) throws -> [UInt32] {
        guard let tensor = tensors[name], tensor.type == .u32, tensor.shape.count == 1 else {
            throw EncoderFileError("tensor \(name): missing or not a u32 vector")
        }
        if let count, tensor.shape[0] != count { throw EncoderFileError("tensor \(name): \(tensor.shape[0]) entries, expected \(count)") }
        return words(tensor)
    }

    func raw(_ name: String, _ type: TensorType) throws -> ArraySlice<UInt8> {
        guard let tensor = tensors[name], tensor.type == type else { throw EncoderFileError("tensor \(name): missing or not \(type.rawValue)") }
        return bytes[tensor.range]
    }

    /// A 4-bit matrix `[rows][columns]` dequantised to floats, row-major.
    func dequantised(_ name: String, rows: Int, columns: Int) throws -> [Float] {
        let tensor = try tensor(name, .q4_0, [rows, columns])
        var out = [Float](repeating: 0, count: rows * columns)
        out.withUnsafeMutableBufferPointer { out in
            bytes.withUnsafeBufferPointer { all in
                Q4.dequantise(blocks: UnsafeRawPointer(all.baseAddress! + tensor.range.lowerBound), count: rows * columns / Self.blockWeights,
                              into: out.baseAddress!)
            }
        }
        guard out.allSatisfy(\.isFinite) else { throw EncoderFileError("tensor \(name): a block scale is not finite") }
        return out
    }

    /// The 4-bit blocks of a tensor, kept packed (the word embeddings: one row is dequantised per token).
    func packed(_ name: String, rows: Int, columns: Int) throws -> [UInt8] {
        Array(bytes[try tensor(name, .q4_0, [rows, columns]).range])
    }

    private func words(_ tensor: Tensor) -> [UInt32] {
        bytes.withUnsafeBytes { all in
            (0..<(tensor.range.count / 4)).map { all.loadUnaligned(fromByteOffset: tensor.range.lowerBound + 4 * $0, as: UInt32.self).littleEndian }
        }
    }
}

/// 4-bit weights in blocks of 32: a binary16 scale `d`, then 16 bytes whose
/// low nibbles are weights 0-15 and high nibbles weights 16-31, each `(q - 8) * d`.
enum Q4 {
    static func dequantise(blocks: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        for block in 0..<count {
            let base = blocks + block * EncoderFile.blockBytes
            let scale = Float(Float16(bitPattern: base.loadUnaligned(as: UInt16.self).littleEndian))
            let nibbles = base + 2
            let row = out + block * EncoderFile.blockWeights
            for j in 0..<16 {
                let byte = nibbles.load(fromByteOffset: j, as: UInt8.self)
                row[j] = Float(Int(byte & 0x0F) - 8) * scale
                row[j + 16] = Float(Int(byte >> 4) - 8) * scale
            }
        }
    }
}
