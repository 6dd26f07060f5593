import Dispatch
import Foundation

/// A BERT-style sentence encoder (multilingual-e5-small's shape): token,
/// position and type embeddings, post-norm transformer layers with exact GELU,
/// mean pooling over every token, L2 normalisation. Weights are stored 4-bit
/// and dequantised to floats once, at load; every matrix product then runs in
/// the SIMD kernels with the whole batch's tokens as rows, so each weight is
/// read once per batch.
public final class Encoder: Sendable {
    public let architecture: EncoderArchitecture
    public let tokenizer: UnigramTokenizer
    /// SHA-256 of the file the weights came from.
    public let digest: String
    /// The public-text mean the features are centred on (`features`), if the file has one.
    public let centringMean: [Float]?
    /// Content tokens kept per text: the positions minus `<s>` and `</s>`; longer texts are cut at the end.
    public var maximumContentTokens: Int { architecture.positions - 2 }

    private let prefix: String
    private let special: (bos: Int32, eos: Int32)
    private let words: [UInt8]
    private let positions: [Float]
    private let tokenType: [Float]
    private let embeddingNorm: (weight: [Float], bias: [Float])
    private let layers: [Layer]

    struct Layer: Sendable {
        /// Query, key and value side by side: `[hidden][3 * hidden]`.
        var qkv: [Float], qkvBias: [Float]
        var attentionOutput: [Float], attentionOutputBias: [Float]
        var attentionNorm: (weight: [Float], bias: [Float])
        var intermediate: [Float], intermediateBias: [Float]
        var output: [Float], outputBias: [Float]
        var outputNorm: (weight: [Float], bias: [Float])
    }

    public convenience init(path: String, expectedSHA256: String?) throws {
        try self.init(file: EncoderFile.load(path: path, expectedSHA256: expectedSHA256))
    }

    public init(file: EncoderFile) throws {
        try CPUFeatures.requireEncoderInstructions()
        let a = file.architecture, h = a.hidden, f = a.intermediate
        architecture = a
        digest = file.digest
        prefix = file.prefix
        special = (file.special.bos, file.special.eos)
        let offsets = try file.integers("tokenizer.piece_offsets", count: a.vocabulary + 1).map(Int.init)
        let pieceBytes = try file.raw("tokenizer.piece_bytes", .u8)
        guard offsets.first == 0, offsets.last == pieceBytes.count, zip(offsets, offsets.dropFirst()).allSatisfy(<=) else {
            throw EncoderFileError("tensor tokenizer.piece_offsets: not increasing from 0 to the bytes' length")
        }
        let base = pieceBytes.startIndex
        let pieces = (0..<a.vocabulary).map { Array(pieceBytes[base + offsets[$0]..<base + offsets[$0 + 1]]) }
        let points = try file.integers("normaliser.codepoints")
        let ruleOffsets = try file.integers("normaliser.offsets", count: points.count + 1).map(Int.init)
        let replacements = try file.integers("normaliser.replacements")
        guard ruleOffsets.first == 0, ruleOffsets.last == replacements.count, zip(ruleOffsets, ruleOffsets.dropFirst()).allSatisfy(<=) else {
            throw EncoderFileError("tensor normaliser.offsets: not increasing from 0 to the replacements' count")
        }
        var rules = [UInt32: [UInt32]]()
        for (i, point) in points.enumerated() { rules[point] = Array(replacements[ruleOffsets[i]..<ruleOffsets[i + 1]]) }
        tokenizer = try UnigramTokenizer(pieces: pieces, scores: file.floats("tokenizer.scores", [a.vocabulary]),
                                         unknown: file.special.unk, rules: rules)

        words = try file.packed("embeddings.word", rows: a.vocabulary, columns: h)
        positions = try file.floats("embeddings.position", [a.positions, h])
        tokenType = Array(try file.floats("embeddings.token_type", [a.tokenTypes, h])[0..<h])
        embeddingNorm = (try file.floats("embeddings.norm.weight", [h]), try file.floats("embeddings.norm.bias", [h]))
        layers = try (0..<a.layers).map { l in
            let p = "layer\(l)."
            func matrix(_ name: String, out: Int, in inner: Int) throws -> [Float] {
                Self.transposed(try file.dequantised(p + name, rows: out, columns: inner), rows: out, columns: inner)
            }
            let q = try matrix("query.weight", out: h, in: h), k = try matrix("key.weight", out: h, in: h)
            let v = try matrix("value.weight", out: h, in: h)
            var qkv = [Float](repeating: 0, count: 3 * h * h)
            for i in 0..<h {
                for (j, part) in [q, k, v].enumerated() { qkv.replaceSubrange((i * 3 + j) * h..<(i * 3 + j + 1) * h, with: part[i * h..<(i + 1) * h]) }
            }
            return Layer(qkv: qkv,
                         qkvBias: try file.floats(p + "query.bias", [h]) + file.floats(p + "key.bias", [h]) + file.floats(p + "value.bias", [h]),
                         attentionOutput: try matrix("attention_output.weight", out: h, in: h),
                         attentionOutputBias: try file.floats(p + "attention_output.bias", [h]),
                         attentionNorm: (try file.floats(p + "attention_norm.weight", [h]), try file.floats(p + "attention_norm.bias", [h])),
                         intermediate: try matrix("intermediate.weight", out: f, in: h),
                         intermediateBias: try file.floats(p + "intermediate.bias", [f]),
                         output: try matrix("output.weight", out: h, in: f), outputBias: try file.floats(p + "output.bias", [h]),
                         outputNorm: (try file.floats(p + "output_norm.weight", [h]), try file.floats(p + "output_norm.bias", [h])))
        }
        centringMean = file.tensors["centring.mean"] == nil ? nil : try file.floats("centring.mean", [h])
    }

    /// `[out][in]` to `[in][out]`: the kernels walk the output dimension contiguously.
    private static func transposed(_ m: [Float], rows: Int, columns: Int) -> [Float] {
        var t = [Float](repeating: 0, count: m.count)
        for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = m[r * columns + c] } }
        return t
    }

    // MARK: Tokens

    /// The ids the encoder reads for `text`: `<s>`, the prefix and text's
    /// content tokens (at most `maximumContentTokens`), `</s>`.
    public func tokens(_ text: String) -> [Int32] {
        [special.bos] + tokenizer.tokenize(prefix + text).prefix(maximumContentTokens) + [special.eos]
    }

    // MARK: Embeddings

    /// The L2-normalised mean-pooled embedding of each text, in order. Texts
    /// are cut into batches of about `batchTokens` tokens, spread over every
    /// core when `parallel`.
    public func embed(_ texts: [String], parallel: Bool = true, batchTokens: Int = 2048) -> [[Float]] {
        let ids = texts.map(tokens)
        // Small work is cut finer, so that every core gets a share (results do not depend on the cut).
        let cores = parallel ? ProcessInfo.processInfo.activeProcessorCount : 1
        let limit = max(64, min(batchTokens, ids.reduce(0) { $0 + $1.count } / cores + 1))
        var batches = [Range<Int>](), start = 0, budget = 0
        for (i, t) in ids.enumerated() {
            if i > start, budget + t.count > limit { batches.append(start..<i); (start, budget) = (i, 0) }
            budget += t.count
        }
        if start < ids.count { batches.append(start..<ids.count) }
        let plan = batches
        var results = [[[Float]]](repeating: [], count: plan.count)
        results.withUnsafeMutableBufferPointer { slots in
            nonisolated(unsafe) let slots = slots // each batch writes its own slot
            let run: @Sendable (Int) -> Void = { i in
                var scratch = Scratch()
                slots[i] = self.forward(plan[i].map { ids[$0] }, scratch: &scratch)
            }
            if parallel { DispatchQueue.concurrentPerform(iterations: plan.count, execute: run) } else { plan.indices.forEach(run) }
        }
        return results.flatMap { $0 }
    }

    /// The feature vector a classifier reads: the embedding minus the public
    /// centring mean, scaled to unit length (the raw embeddings share one
    /// dominant direction; without centring a linear head learns slowly).
    public func features(_ texts: [String], parallel: Bool = true) -> [[Float]] {
        embed(texts, parallel: parallel).map(centred)
    }

    public func centred(_ embedding: [Float]) -> [Float] {
        guard let mean = centringMean else { return embedding }
        let v = zip(embedding, mean).map { $0 - $1 }
        let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
        return norm > 0 ? v.map { $0 / norm } : v
    }

    /// Buffers one thread reuses from batch to batch.
    struct Scratch {
        var x = [Float](), qkv = [Float](), context = [Float](), projected = [Float](), middle = [Float](), probabilities = [Float]()
        mutating func reserve(tokens: Int, hidden: Int, intermediate: Int, longest: Int) {
            func size(_ a: inout [Float], _ n: Int) { if a.count < n { a = [Float](repeating: 0, count: n) } }
            size(&x, tokens * hidden); size(&qkv, tokens * 3 * hidden); size(&context, tokens * hidden)
            size(&projected, tokens * hidden); size(&middle, tokens * intermediate); size(&probabilities, (longest + 7) / 8 * 8)
        }
    }

    /// One batch: every text's tokens as rows of one activation matrix, attention within each text.
    func forward(_ batch: [[Int32]], scratch: inout Scratch) -> [[Float]] {
        let h = architecture.hidden, f = architecture.intermediate, heads = architecture.heads, width = h / heads
        let total = batch.reduce(0) { $0 + $1.count }
        var starts = [0]
        for t in batch { starts.append(starts.last! + t.count) }
        scratch.reserve(tokens: total, hidden: h, intermediate: f, longest: batch.map(\.count).max() ?? 0)
        let epsilon = architecture.layerNormEpsilon
        return scratch.x.withUnsafeMutableBufferPointer { xb in
            let x = xb.baseAddress!
            // Embeddings: word (dequantised row) + position + type 0, then normalised.
            words.withUnsafeBytes { words in
                var row = 0
                for text in batch {
                    for (position, id) in text.enumerated() {
                        let r = x + row * h
                        Q4.dequantise(blocks: words.baseAddress! + Int(id) * (h / EncoderFile.blockWeights) * EncoderFile.blockBytes,
                                      count: h / EncoderFile.blockWeights, into: r)
                        for i in 0..<h { r[i] += positions[position * h + i] + tokenType[i] }
                        row += 1
                    }
                }
            }
            embeddingNorm.weight.withUnsafeBufferPointer { w in
                embeddingNorm.bias.withUnsafeBufferPointer { b in
                    Kernels.addAndNormalise(x, nil, rows: total, width: h, weight: w.baseAddress!, bias: b.baseAddress!, epsilon: epsilon)
                }
            }
            for layer in layers {
                scratch.qkv.withUnsafeMutableBufferPointer { qkv in
                    scratch.context.withUnsafeMutableBufferPointer { context in
                        scratch.probabilities.withUnsafeMutableBufferPointer { probabilities in
                            layer.qkv.withUnsafeBufferPointer { w in
                                layer.qkvBias.withUnsafeBufferPointer { b in
                                    Kernels.matmul(x, rows: total, inner: h, w.baseAddress!, columns: 3 * h, bias: b.baseAddress!, into: qkv.baseAddress!)
                                }
                            }
                            for (text, start) in zip(batch, starts) {
                                Self.attention(qkv.baseAddress! + start * 3 * h, tokens: text.count, hidden: h, heads: heads, width: width,
                                               probabilities: probabilities.baseAddress!, into: context.baseAddress! + start * h)
                            }
                        }
                    }
                }
                Self.dense(scratch.context, total, h, layer.attentionOutput, h, layer.attentionOutputBias, into: &scratch.projected)
                Self.normalise(x, scratch.projected, total, h, layer.attentionNorm, epsilon)
                Self.dense(UnsafePointer(x), total, h, layer.intermediate, f, layer.intermediateBias, into: &scratch.middle)
                scratch.middle.withUnsafeMutableBufferPointer { Kernels.gelu($0.baseAddress!, count: total * f) }
                Self.dense(scratch.middle, total, f, layer.output, h, layer.outputBias, into: &scratch.projected)
                Self.normalise(x, scratch.projected, total, h, layer.outputNorm, epsilon)
            }
            // Mean pooling over every token of each text, then unit length.
            return zip(batch, starts).map { text, start in
                var mean = [Float](repeating: 0, count: h)
                for t in start..<start + text.count { for i in 0..<h { mean[i] += x[t * h + i] } }
                let norm = mean.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return mean.map { $0 / max(norm, 1e-12) }
            }
        }
    }

    private static func dense(_ x: UnsafePointer<Float>, _ rows: Int, _ inner: Int, _ w: [Float], _ columns: Int, _ bias: [Float],
                              into y: inout [Float]) {
        w.withUnsafeBufferPointer { w in
            bias.withUnsafeBufferPointer { b in
                y.withUnsafeMutableBufferPointer { y in
                    Kernels.matmul(x, rows: rows, inner: inner, w.baseAddress!, columns: columns, bias: b.baseAddress!, into: y.baseAddress!)
                }
            }
        }
    }

    private static func dense(_ x: [Float], _ rows: Int, _ inner: Int, _ w: [Float], _ columns: Int, _ bias: [Float], into y: inout [Float]) {
        x.withUnsafeBufferPointer { dense($0.baseAddress!, rows, inner, w, columns, bias, into: &y) }
    }

    private static func normalise(_ x: UnsafeMutablePointer<Float>, _ residual: [Float], _ rows: Int, _ width: Int,
                                  _ norm: (weight: [Float], bias: [Float]), _ epsilon: Float) {
        residual.withUnsafeBufferPointer { r in
            norm.weight.withUnsafeBufferPointer { w in
                norm.bias.withUnsafeBufferPointer { b in
                    Kernels.addAndNormalise(x, r.baseAddress!, rows: rows, width: width, weight: w.baseAddress!, bias: b.baseAddress!, epsilon: epsilon)
                }
            }
        }
    }

    /// Scaled dot-product attention of one text: `qkv` rows are `[q | k | v]`.
    private static func attention(_ qkv: UnsafePointer<Float>, tokens: Int, hidden h: Int, heads: Int, width: Int,
                                  probabilities p: UnsafeMutablePointer<Float>, into context: UnsafeMutablePointer<Float>) {
        let scale = 1 / Float(width).squareRoot()
        for head in 0..<heads {
            for t in 0..<tokens {
                let q = qkv + t * 3 * h + head * width
                var largest = -Float.infinity
                for s in 0..<tokens {
                    let k = qkv + s * 3 * h + h + head * width
                    var dot = Kernels.Lanes()
                    for e in stride(from: 0, to: width, by: 8) { dot = dot.addingProduct(Kernels.load(q + e), Kernels.load(k + e)) }
                    p[s] = dot.sum() * scale
                    largest = max(largest, p[s])
                }
                // Eight scores at a time; the lanes past `tokens` are computed and never read.
                for s in stride(from: 0, to: tokens, by: 8) { Kernels.store(Kernels.exp(Kernels.load(p + s) - largest), p + s) }
                var sum: Float = 0
                for s in 0..<tokens { sum += p[s] }
                let c = context + t * h + head * width
                for e in stride(from: 0, to: width, by: 8) {
                    var acc = Kernels.Lanes()
                    for s in 0..<tokens { acc = acc.addingProduct(Kernels.Lanes(repeating: p[s]), Kernels.load(qkv + s * 3 * h + 2 * h + head * width + e)) }
                    Kernels.store(acc / sum, c + e)
                }
            }
        }
    }
}
