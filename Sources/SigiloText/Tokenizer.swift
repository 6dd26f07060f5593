/// Splits normalised UTF-8 text into tokens (byte ranges):
/// - words: runs of letters and digits ("vc", "2kg", "b2b");
/// - numbers keep inner separators between digits ("49,90", "10:30", "12/03");
/// - placeholders left by the redactor ("<cpf>") are single tokens;
/// - every emoji is a token of its own (modifiers, joiners and variation
///   selectors are dropped), so "😡" carries signal without fusing with words;
/// - everything else (punctuation, symbols) separates tokens.
public enum Tokenizer {
    /// Token byte ranges into `bytes`.
    public static func tokenize(_ bytes: [UInt8]) -> [Range<Int>] {
        var tokens = [Range<Int>]()
        bytes.withUnsafeBufferPointer { tokenize($0, into: &tokens) }
        return tokens
    }

    /// Token byte ranges into `bytes`, appended to `tokens`.
    public static func tokenize(_ bytes: UnsafeBufferPointer<UInt8>, into tokens: inout [Range<Int>]) {
        let count = bytes.count
        var i = 0
        while i < count {
            let (scalar, length) = decode(bytes, at: i)
            // Placeholder "<kind>".
            if scalar == "<" {
                var j = i + 1
                while j < count, bytes[j] >= 0x61 && bytes[j] <= 0x7a { j += 1 }
                if j < count, j > i + 1, bytes[j] == 0x3e {
                    tokens.append(i..<(j + 1)); i = j + 1; continue
                }
            }
            if isWordScalar(scalar) {
                let start = i
                var j = i
                while j < count {
                    let (s, l) = decode(bytes, at: j)
                    if isWordScalar(s) { j += l; continue }
                    // Keep "49,90", "10:30", "12/03" together: separator between digits.
                    if (s == "," || s == "." || s == ":" || s == "/"), j > start, isDigit(bytes[j - 1]),
                       j + 1 < count, isDigit(bytes[j + 1]) { j += 1; continue }
                    break
                }
                tokens.append(start..<j); i = j; continue
            }
            if isEmoji(scalar) {
                tokens.append(i..<(i + length))
            }
            i += length
        }
    }

    @inline(__always) static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    @inline(__always) static func isWordScalar(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if v < 0x80 { return (v >= 0x61 && v <= 0x7a) || (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5a) }
        let p = s.properties
        return p.isAlphabetic || p.numericType != nil
    }

    @inline(__always) static func isEmoji(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        guard v >= 0x2190 else { return false } // digits, '#', '*' are "emoji" only with VS16
        if v == 0x200d || v == 0xfe0f || (0x1f3fb...0x1f3ff).contains(v) { return false }
        return s.properties.isEmoji
    }

    /// Decodes one scalar of valid UTF-8 (bytes come from a Swift `String`).
    @inline(__always) static func decode(_ b: UnsafeBufferPointer<UInt8>, at i: Int) -> (Unicode.Scalar, Int) {
        let b0 = UInt32(b[i])
        if b0 < 0x80 { return (Unicode.Scalar(UInt8(b0)), 1) }
        if b0 < 0xe0, i + 1 < b.count {
            return (Unicode.Scalar(((b0 & 0x1f) << 6) | (UInt32(b[i + 1]) & 0x3f)) ?? " ", 2)
        }
        if b0 < 0xf0, i + 2 < b.count {
            let v = ((b0 & 0x0f) << 12) | ((UInt32(b[i + 1]) & 0x3f) << 6) | (UInt32(b[i + 2]) & 0x3f)
            return (Unicode.Scalar(v) ?? " ", 3)
        }
        if i + 3 < b.count {
            let v = ((b0 & 0x07) << 18) | ((UInt32(b[i + 1]) & 0x3f) << 12) | ((UInt32(b[i + 2]) & 0x3f) << 6) | (UInt32(b[i + 3]) & 0x3f)
            return (Unicode.Scalar(v) ?? " ", 4)
        }
        return (" ", 1)
    }
}
