/// What requests and responses share on the wire: a head of CRLF-separated
/// lines ending in an empty line, header fields, and Content-Length framing.
/// Both parsers use these, so both read headers by the same rules.
enum MessageHead {
    /// A head that breaks the syntax, and why.
    struct Malformed: Error, Equatable {
        let message: String
        init(_ message: String) { self.message = message }
    }

    enum FieldFailure: Error, Equatable {
        case tooMany
        case malformed(Malformed)
    }

    /// Index of the CRLFCRLF that ends the head, looking at most `limit` bytes in.
    static func end(of buffer: [UInt8], limit: Int) -> Int? {
        guard buffer.count >= 4 else { return nil }
        var i = 0
        let last = min(buffer.count - 3, limit + 1)
        while i < last {
            if buffer[i] == 13, buffer[i + 1] == 10, buffer[i + 2] == 13, buffer[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    /// The head's lines; a CR or LF on its own is an error (request smuggling starts there).
    static func lines(_ head: [UInt8], of kind: String) -> Result<[ArraySlice<UInt8>], Malformed> {
        var lines = [ArraySlice<UInt8>]()
        var start = 0
        var i = 0
        while i < head.count {
            if head[i] == 13 {
                guard i + 1 < head.count, head[i + 1] == 10 else { return .failure(Malformed("bare CR in \(kind) head")) }
                lines.append(head[start..<i]); i += 2; start = i; continue
            }
            if head[i] == 10 { return .failure(Malformed("bare LF in \(kind) head")) }
            i += 1
        }
        lines.append(head[start..<head.count])
        return .success(lines)
    }

    /// Header fields, names lower-cased, values trimmed of spaces and tabs.
    static func fields(_ lines: ArraySlice<ArraySlice<UInt8>>, maximumCount: Int) -> Result<[(name: String, value: String)], FieldFailure> {
        var fields = [(name: String, value: String)]()
        for line in lines {
            guard fields.count < maximumCount else { return .failure(.tooMany) }
            guard let colon = line.firstIndex(of: 0x3a), colon > line.startIndex, line[line.startIndex..<colon].allSatisfy(isToken) else {
                return .failure(.malformed(Malformed("malformed header line")))
            }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).lowercased()
            var value = line[(colon + 1)...]
            while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
            while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
            guard value.allSatisfy({ $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7f) }) else { return .failure(.malformed(Malformed("control character in header \(name)"))) }
            fields.append((name, String(decoding: value, as: UTF8.self)))
        }
        return .success(fields)
    }

    /// The declared body length: nil when absent; an error when repeated with
    /// different values, empty, signed or not a plain decimal number.
    static func contentLength(_ fields: [(name: String, value: String)]) -> Result<Int?, Malformed> {
        let lengths = fields.filter { $0.name == "content-length" }.map(\.value)
        guard let first = lengths.first else { return .success(nil) }
        guard Set(lengths).count == 1, !first.isEmpty, first.utf8.count <= 12, first.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let length = Int(first) else {
            return .failure(Malformed("invalid Content-Length"))
        }
        return .success(length)
    }

    /// RFC 9110 tchar.
    static func isToken(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: return true
        default: return "!#$%&'*+-.^_`|~".utf8.contains(b)
        }
    }
}
