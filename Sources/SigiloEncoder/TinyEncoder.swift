import Foundation

/// Writes small encoder files with random weights, in the layout of
/// models/ENCODER.md, so tests and fuzz seeds can build encoders of any shape
/// in milliseconds and break them field by field. Never a real model.
public struct TinyEncoder {
    public var hidden = 32, layers = 1, heads = 2, intermediate = 64, positions = 32
    public var pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁", "a", "o", "▁a", "▁o", "▁ol", "á", "!", "▁oi", "▁quero", "▁falar"]
    public var rules: [UInt32: [UInt32]] = [0x01: [], 0xFF01: [0x21]] // a control character dropped; full-width ! to !
    public var seed: UInt64 = 1
    /// Header fields to replace (by key path through the JSON) before writing.
    public var headerEdits: [(path: [String], value: Any?)] = []

    public init() {}

    public func bytes() -> [UInt8] {
        var random = seed
        func next() -> Float { // SplitMix64, mapped to [-1, 1)
            random &+= 0x9E37_79B9_7F4A_7C15
            var z = random
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Float((z ^ (z >> 31)) >> 40) / Float(1 << 23) - 1
        }
        var tensors = [(String, String, [Int], [UInt8])]()
        func f32(_ name: String, _ shape: [Int], around centre: Float = 0, scale: Float = 0.1) {
            let values = (0..<shape.reduce(1, *)).map { _ in centre + scale * next() }
            tensors.append((name, "f32", shape, values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }))
        }
        func q4(_ name: String, _ shape: [Int]) {
            var out = [UInt8]()
            for _ in 0..<(shape.reduce(1, *) / 32) {
                out += withUnsafeBytes(of: Float16(0.02 + 0.01 * next()).bitPattern.littleEndian, Array.init)
                out += (0..<16).map { _ in UInt8(truncatingIfNeeded: Int((next() + 1) * 128)) }
            }
            tensors.append((name, "q4_0", shape, out))
        }
        func u32(_ name: String, _ values: [UInt32]) {
            tensors.append((name, "u32", [values.count], values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }))
        }
        let utf8 = pieces.map { Array($0.utf8) }
        var offsets: [UInt32] = [0]
        for p in utf8 { offsets.append(offsets.last! + UInt32(p.count)) }
        u32("tokenizer.piece_offsets", offsets)
        tensors.append(("tokenizer.piece_bytes", "u8", [Int(offsets.last!)], utf8.flatMap { $0 }))
        let scores = pieces.indices.map { i -> Float in i < 4 ? 0 : -Float(i) / 4 }
        tensors.append(("tokenizer.scores", "f32", [pieces.count], scores.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }))
        let points = rules.keys.sorted()
        var ruleOffsets: [UInt32] = [0], replacements = [UInt32]()
        for p in points { replacements += rules[p]!; ruleOffsets.append(UInt32(replacements.count)) }
        u32("normaliser.codepoints", points)
        u32("normaliser.offsets", ruleOffsets)
        u32("normaliser.replacements", replacements.isEmpty ? [0] : replacements)
        q4("embeddings.word", [pieces.count, hidden])
        f32("embeddings.position", [positions, hidden])
        f32("embeddings.token_type", [2, hidden])
        f32("embeddings.norm.weight", [hidden], around: 1); f32("embeddings.norm.bias", [hidden])
        for l in 0..<layers {
            let p = "layer\(l)."
            for name in ["query", "key", "value", "attention_output"] { q4(p + name + ".weight", [hidden, hidden]); f32(p + name + ".bias", [hidden]) }
            f32(p + "attention_norm.weight", [hidden], around: 1); f32(p + "attention_norm.bias", [hidden])
            q4(p + "intermediate.weight", [intermediate, hidden]); f32(p + "intermediate.bias", [intermediate])
            q4(p + "output.weight", [hidden, intermediate]); f32(p + "output.bias", [hidden])
            f32(p + "output_norm.weight", [hidden], around: 1); f32(p + "output_norm.bias", [hidden])
        }
        f32("centring.mean", [hidden], scale: 0.05)
        var directory = [[String: Any]](), data = [UInt8]()
        for (name, type, shape, bytes) in tensors {
            data += [UInt8](repeating: 0, count: (64 - data.count % 64) % 64)
            directory.append(["name": name, "type": type, "shape": shape, "offset": data.count, "bytes": bytes.count])
            data += bytes
        }
        var header: [String: Any] = [
            "format": 1, "prefix": "query: ", "pooling": "mean",
            "architecture": ["hidden": hidden, "layers": layers, "heads": heads, "intermediate": intermediate, "vocabulary": pieces.count,
                             "positions": positions, "token_types": 2, "layer_norm_epsilon": 1e-12],
            "special_tokens": ["bos": 0, "pad": 1, "eos": 2, "unk": 3], "tensors": directory,
        ]
        for (path, value) in headerEdits { header = Self.edit(header, path[...], value) }
        let json = [UInt8](try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        var out = EncoderFile.magic + withUnsafeBytes(of: UInt32(json.count).littleEndian, Array.init) + json
        out += [UInt8](repeating: 0, count: (64 - out.count % 64) % 64)
        return out + data
    }

    private static func edit(_ object: [String: Any], _ path: ArraySlice<String>, _ value: Any?) -> [String: Any] {
        var object = object
        let key = path.first!
        if path.count == 1 { object[key] = value; return object }
        if let index = Int(path[path.startIndex + 1]), var array = object[key] as? [[String: Any]] {
            array[index] = edit(array[index], path.dropFirst(2), value)
            object[key] = array
        } else {
            object[key] = edit(object[key] as? [String: Any] ?? [:], path.dropFirst(), value)
        }
        return object
    }
}
