import Foundation

/// Folds a (redacted) message into the canonical form features are computed
/// from: NFC, lower case, accents removed, letter elongations collapsed
/// ("oiiiii" -> "oi", "muuuito" -> "muito"), apostrophes inside words dropped
/// ("d'agua" -> "dagua"), and whitespace runs collapsed to one space.
///
/// Version 1 of the pipeline; `FeatureConfiguration.textPipelineVersion` names
/// it in model files so a model is never applied to differently normalised text.
public struct TextNormalizer: Sendable {
    public init() {}

    /// The normalised text as a `String`.
    public func normalize(_ text: String) -> String {
        String(decoding: normalizedUTF8(text), as: UTF8.self)
    }

    /// The normalised text as UTF-8 bytes (what the tokenizer reads).
    public func normalizedUTF8(_ text: String) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count)
        if text.utf8.allSatisfy({ $0 < 0x80 }) {
            // Fast path: ASCII needs no Unicode tables.
            var previous: UInt8 = 0x20
            var runLength = 0
            let bytes = Array(text.utf8)
            for (index, raw) in bytes.enumerated() {
                var byte = raw
                if byte >= 0x41 && byte <= 0x5a { byte |= 0x20 }
                if byte == 0x27 { // apostrophe between two letters is dropped
                    if index > 0, index + 1 < bytes.count, Self.isASCIILetter(bytes[index - 1]), Self.isASCIILetter(bytes[index + 1]) { continue }
                }
                append(byte, to: &out, previous: &previous, runLength: &runLength, isLetter: Self.isASCIILetter(byte),
                       isSpace: byte == 0x20 || (byte >= 0x09 && byte <= 0x0d))
            }
        } else {
            var previous: UInt8 = 0x20
            var runLength = 0
            var lastScalar: Unicode.Scalar = " "
            var scratch = [UInt8]()
            let folded = Array(text.precomposedStringWithCanonicalMapping.lowercased().decomposedStringWithCanonicalMapping.unicodeScalars)
            for (index, scalar) in folded.enumerated() {
                let properties = scalar.properties
                if properties.generalCategory == .nonspacingMark { continue } // accents
                if scalar == "'" || scalar == "\u{2019}" {
                    let before = index > 0 ? folded[index - 1] : " "
                    let after = index + 1 < folded.count ? folded[index + 1] : " "
                    if before.properties.isAlphabetic, after.properties.isAlphabetic { continue }
                }
                if properties.isWhitespace {
                    append(0x20, to: &out, previous: &previous, runLength: &runLength, isLetter: false, isSpace: true)
                    lastScalar = " "
                    continue
                }
                if scalar.isASCII {
                    append(UInt8(scalar.value), to: &out, previous: &previous, runLength: &runLength,
                           isLetter: Self.isASCIILetter(UInt8(scalar.value)), isSpace: false)
                    lastScalar = scalar
                    continue
                }
                // Non-ASCII letters: collapse elongations of the same scalar too.
                if scalar == lastScalar, properties.isAlphabetic {
                    runLength += 1
                    if runLength == 2 { removeLastScalar(from: &out) }
                    if runLength >= 2 { continue }
                } else {
                    runLength = 0
                }
                scratch.removeAll(keepingCapacity: true)
                scratch.append(contentsOf: String(scalar).utf8)
                out.append(contentsOf: scratch)
                previous = 0xff
                lastScalar = scalar
            }
        }
        while out.last == 0x20 { out.removeLast() }
        return out
    }

    static func isASCIILetter(_ byte: UInt8) -> Bool { (byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7a }

    /// Appends one ASCII byte, collapsing whitespace and runs of three or more
    /// equal letters into one letter (two equal letters are kept: "carro", "voo").
    private func append(_ byte: UInt8, to out: inout [UInt8], previous: inout UInt8, runLength: inout Int,
                        isLetter: Bool, isSpace: Bool) {
        if isSpace {
            if out.isEmpty || out.last == 0x20 { return }
            out.append(0x20); previous = 0x20; runLength = 0
            return
        }
        if isLetter, byte == previous {
            runLength += 1
            if runLength == 1 { out.append(byte) } // a double letter is Portuguese ("carro", "voo")
            if runLength == 2 { out.removeLast() } // a third means elongation: keep one
            return
        }
        runLength = 0
        out.append(byte)
        previous = byte
    }

    private func removeLastScalar(from out: inout [UInt8]) {
        while let last = out.popLast(), last & 0xc0 == 0x80 {}
    }
}
