/// XLM-RoBERTa's SentencePiece tokenizer (unigram model) as the encoder file
/// carries it: a per-code-point normaliser, then metaspace pre-tokenisation,
/// then the most probable segmentation into vocabulary pieces (Viterbi over
/// the pieces' log-probabilities).
///
/// The pipeline, step by step (models/ENCODER.md):
/// 1. each code point with a normaliser rule is replaced by the rule's code
///    points (none: it is dropped; control characters and the like);
/// 2. runs of spaces become one space;
/// 3. `▁` (U+2581) is put in front unless the text starts with a space, and
///    every space becomes `▁`;
/// 4. Viterbi over code-point positions: a piece may span any run of code
///    points whose UTF-8 bytes are a vocabulary entry; a single code point
///    that no piece covers is `<unk>`, scored ten below the least likely piece.
public struct UnigramTokenizer: Sendable {
    private let pieceBytes: [UInt8]
    private let pieceOffsets: [Int]
    private let scores: [Float]
    /// Piece index by FNV-1a 64 of its bytes (collisions are checked at build).
    private let index: [UInt64: Int32]
    private let rules: [UInt32: Range<Int>]
    private let replacements: [UInt32]
    private let unknown: Int32
    private let unknownScore: Float
    private let longestPiece: Int

    public init(pieces: [[UInt8]], scores: [Float], unknown: Int32, rules: [UInt32: [UInt32]]) throws {
        guard pieces.count == scores.count, !pieces.isEmpty, Int(unknown) < pieces.count else {
            throw EncoderFileError("tokenizer: \(pieces.count) pieces, \(scores.count) scores, unknown id \(unknown)")
        }
        guard scores.allSatisfy(\.isFinite) else { throw EncoderFileError("tokenizer.scores: not every score is finite") }
        var bytes = [UInt8](), offsets = [0], index = [UInt64: Int32]()
        for (i, piece) in pieces.enumerated() {
            bytes += piece
            offsets.append(bytes.count)
            guard !piece.isEmpty, Int32(i) != unknown else { continue }
            let key = Self.hash(piece[...])
            if let other = index[key] {
                guard pieces[Int(other)] == piece else { throw EncoderFileError("tokenizer: pieces \(other) and \(i) share a hash") }
                continue // a duplicate piece: the first wins, as in a dictionary lookup
            }
            index[key] = Int32(i)
        }
        var flat = [UInt32](), ranges = [UInt32: Range<Int>]()
        for (codePoint, replacement) in rules {
            ranges[codePoint] = flat.count..<flat.count + replacement.count
            flat += replacement
        }
        (pieceBytes, pieceOffsets, self.scores, self.index) = (bytes, offsets, scores, index)
        (self.rules, replacements, self.unknown) = (ranges, flat, unknown)
        unknownScore = scores.min()! - 10
        longestPiece = pieces.map(\.count).max()!
    }

    /// The content token ids of `text` (no `<s>` or `</s>`).
    public func tokenize(_ text: String) -> [Int32] {
        // Steps 1 and 2: normalise code point by code point, collapse spaces.
        var points = [UInt32]()
        points.reserveCapacity(text.unicodeScalars.count + 1)
        func append(_ point: UInt32) {
            if point == 0x20, points.last == 0x20 { return }
            points.append(point)
        }
        for scalar in text.unicodeScalars {
            if let range = rules[scalar.value] {
                for point in replacements[range] { append(point) }
            } else {
                append(scalar.value)
            }
        }
        // Step 3: metaspace. `bounds[i]` is where code point i starts in `bytes`.
        if points.first != 0x20 { points.insert(0x2581, at: 0) }
        var bytes = [UInt8](), bounds = [Int]()
        bytes.reserveCapacity(points.count * 3)
        for point in points {
            bounds.append(bytes.count)
            Self.appendUTF8(point == 0x20 ? 0x2581 : point, to: &bytes)
        }
        bounds.append(bytes.count)
        // Step 4: Viterbi. best[e] is the score of the best segmentation of the first e code points.
        let n = points.count
        var best = [Float](repeating: -.infinity, count: n + 1), piece = [Int32](repeating: -1, count: n + 1)
        var from = [Int](repeating: 0, count: n + 1)
        best[0] = 0
        bytes.withUnsafeBufferPointer { bytes in
            for start in 0..<n where best[start] > -.infinity {
                var hash = Self.offsetBasis
                var end = start + 1, byte = bounds[start]
                while end <= n, bounds[end] - bounds[start] <= longestPiece {
                    while byte < bounds[end] { hash = (hash ^ UInt64(bytes[byte])) &* Self.prime; byte += 1 }
                    if let id = index[hash], matches(id, bytes[bounds[start]..<bounds[end]]) {
                        let score = best[start] + scores[Int(id)]
                        if score > best[end] { (best[end], piece[end], from[end]) = (score, id, start) }
                    }
                    end += 1
                }
                let unknownPath = best[start] + unknownScore
                if unknownPath > best[start + 1] { (best[start + 1], piece[start + 1], from[start + 1]) = (unknownPath, -1, start) }
            }
        }
        var ids = [Int32]()
        var at = n
        while at > 0 {
            ids.append(piece[at] < 0 ? unknown : piece[at])
            at = from[at]
        }
        return ids.reversed()
    }

    private func matches(_ id: Int32, _ candidate: Slice<UnsafeBufferPointer<UInt8>>) -> Bool {
        let start = pieceOffsets[Int(id)], end = pieceOffsets[Int(id) + 1]
        return end - start == candidate.count && pieceBytes[start..<end].elementsEqual(candidate)
    }

    private static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    private static let prime: UInt64 = 0x100_0000_01b3

    private static func hash(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        bytes.reduce(offsetBasis) { ($0 ^ UInt64($1)) &* prime }
    }

    private static func appendUTF8(_ point: UInt32, to bytes: inout [UInt8]) {
        UTF8.encode(Unicode.Scalar(point) ?? "\u{FFFD}") { bytes.append($0) }
    }
}
