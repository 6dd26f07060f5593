/// The kinds of personal data Sigilo removes before anything else sees a text.
public enum PersonalDataKind: String, CaseIterable, Sendable {
    case cpf = "CPF"
    case cnpj = "CNPJ"
    case phone = "PHONE"
    case email = "EMAIL"
    case url = "URL"
    case card = "CARD"
    case cep = "CEP"

    /// The placeholder that replaces a redacted span, e.g. `<CPF>`.
    public var placeholder: String { "<\(rawValue)>" }
}

/// Replaces personal data (CPF, CNPJ, Brazilian phone numbers, e-mail
/// addresses, URLs, payment cards, CEP) with typed placeholders.
///
/// Data minimisation happens here, before normalisation or featurisation, so
/// no feature, log line or update is ever computed from the raw identifier.
///
/// Decisions follow the *written shape* first: a number written like a CPF
/// (`123.456.789-09`) or a card (`4111 1111 1111 1112`) is personal data even
/// when its check digits are wrong (a typo is still somebody's number). Check
/// digits (CPF/CNPJ modulus 11, Luhn) only decide bare digit runs that could be
/// something else, such as an order or protocol number. Prices (`R$ 49,90`),
/// dates (`12/03/2025`), times (`10:30`), quantities and short order numbers
/// (up to 7 digits) survive.
public struct Redactor: Sendable {
    public init() {}

    /// The redacted text.
    public func redact(_ text: String) -> String {
        redactWithCounts(text).text
    }

    /// The redacted text and how many spans of each kind were replaced.
    public func redactWithCounts(_ text: String) -> (text: String, counts: [PersonalDataKind: Int]) {
        // Every kind of personal data needs a digit, "@", "." or ":"; most
        // messages have none of them and are returned without decoding.
        var hasDigit = false, hasAt = false, hasDot = false
        for byte in text.utf8 {
            switch byte {
            case 0x30...0x39: hasDigit = true
            case 0x40: hasAt = true
            case 0x2e, 0x3a: hasDot = true
            default: break
            }
        }
        guard hasDigit || hasAt || hasDot else { return (text, [:]) }
        let scalars = Array(text.unicodeScalars)
        var spans = [Span]()
        if hasAt { findEmails(scalars, into: &spans) }
        if hasDot { findURLs(scalars, into: &spans) }
        if hasDigit { findNumbers(scalars, into: &spans) }
        if spans.isEmpty { return (text, [:]) }
        spans.sort { $0.range.lowerBound < $1.range.lowerBound }

        var out = String.UnicodeScalarView()
        var counts = [PersonalDataKind: Int]()
        var cursor = 0
        for span in spans where span.range.lowerBound >= cursor {
            out.append(contentsOf: scalars[cursor..<span.range.lowerBound])
            out.append(contentsOf: span.kind.placeholder.unicodeScalars)
            counts[span.kind, default: 0] += 1
            cursor = span.range.upperBound
        }
        out.append(contentsOf: scalars[cursor...])
        return (String(out), counts)
    }

    struct Span {
        var range: Range<Int>
        var kind: PersonalDataKind
    }
}

// MARK: - Character classes

extension Unicode.Scalar {
    var isASCIIDigit: Bool { value >= 0x30 && value <= 0x39 }
    var isASCIILetter: Bool { (value | 0x20) >= 0x61 && (value | 0x20) <= 0x7a }
    var isLetterLike: Bool { isASCIILetter || (value > 0x7f && properties.isAlphabetic) }
    var isWhitespaceLike: Bool { value < 0x80 ? value == 0x20 || (value >= 0x09 && value <= 0x0d) : properties.isWhitespace }
}

// MARK: - E-mail addresses and URLs

extension Redactor {
    private static func isEmailLocal(_ s: Unicode.Scalar) -> Bool {
        s.isASCIIDigit || s.isLetterLike || "._%+-".unicodeScalars.contains(s)
    }

    private static func isDomainChar(_ s: Unicode.Scalar) -> Bool {
        s.isASCIIDigit || s.isLetterLike || s == "-" || s == "."
    }

    func findEmails(_ t: [Unicode.Scalar], into spans: inout [Span]) {
        for at in t.indices where t[at] == "@" {
            var start = at
            while start > 0, Self.isEmailLocal(t[start - 1]) { start -= 1 }
            var end = at + 1
            while end < t.count, Self.isDomainChar(t[end]) { end += 1 }
            // Trailing dots belong to the sentence, not the domain.
            while end > at + 1, t[end - 1] == "." { end -= 1 }
            guard start < at, end > at + 1 else { continue }
            let domain = String(String.UnicodeScalarView(t[(at + 1)..<end]))
            let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
            guard labels.count >= 2, labels.allSatisfy({ !$0.isEmpty }),
                  let tld = labels.last, tld.count >= 2, tld.unicodeScalars.allSatisfy(\.isLetterLike)
            else { continue }
            spans.append(Span(range: start..<end, kind: .email))
        }
    }

    /// Top-level domains recognised in bare addresses such as `loja.com.br/x`.
    private static let bareTLDs: Set<String> = [
        "com", "br", "net", "org", "io", "gov", "edu", "app", "me", "co", "info", "biz", "ly", "link", "site",
        "shop", "store", "online", "tech", "dev",
    ]

    func findURLs(_ t: [Unicode.Scalar], into spans: inout [Span]) {
        var i = 0
        while i < t.count {
            // Work one whitespace-delimited chunk at a time.
            if t[i].isWhitespaceLike { i += 1; continue }
            var end = i
            while end < t.count, !t[end].isWhitespaceLike { end += 1 }
            let chunkStart = i
            i = end
            // Only chunks with a dot can be addresses ("https://x" has one too, or "www.").
            guard t[chunkStart..<end].contains(".") else { continue }
            // Strip punctuation that ends the sentence or wraps the link.
            var start = chunkStart
            while start < end, "([{\"'<".unicodeScalars.contains(t[start]) { start += 1 }
            var stop = end
            while stop > start, ".,;:!?)]}\"'>".unicodeScalars.contains(t[stop - 1]) { stop -= 1 }
            guard stop > start else { continue }
            let chunk = String(String.UnicodeScalarView(t[start..<stop])).lowercased()
            if chunk.hasPrefix("http://") || chunk.hasPrefix("https://") || chunk.hasPrefix("www.") {
                if chunk.count > 7 { spans.append(Span(range: start..<stop, kind: .url)) }
                continue
            }
            if chunk.contains("@") { continue } // e-mail, handled above
            // A bare domain: host labels ending in a known TLD, optional path.
            let host = chunk.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)[0]
            let labels = host.split(separator: ".", omittingEmptySubsequences: false)
            guard labels.count >= 2,
                  labels.allSatisfy({ !$0.isEmpty && $0.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "-" } }),
                  let tld = labels.last, Self.bareTLDs.contains(String(tld)),
                  labels.dropLast().contains(where: { $0.unicodeScalars.contains(where: \.isASCIILetter) })
            else { continue }
            spans.append(Span(range: start..<stop, kind: .url))
        }
    }
}

// MARK: - Numbers: CPF, CNPJ, phones, cards, CEP

extension Redactor {
    /// A run of digit groups joined by single separators, e.g. `+55 (11) 98765-4321`.
    struct NumberRun {
        struct Group {
            var range: Range<Int>       // scalar range of the digits
            var digits: [UInt8]         // 0...9
            var separatorBefore: String // raw text between the previous group and this one
            var writtenStart: Int       // where the group starts as written, "+" or "(" included
            var plus: Bool              // written with a leading "+"
        }
        var groups: [Group]
    }

    private static let separators: Set<Unicode.Scalar> = [" ", "-", ".", "/", "(", ")", "\u{00A0}"]

    func findNumbers(_ t: [Unicode.Scalar], into spans: inout [Span]) {
        var i = 0
        while i < t.count {
            let opensNumber = t[i].isASCIIDigit
                || ((t[i] == "+" || t[i] == "(") && i + 1 < t.count && (t[i + 1].isASCIIDigit || t[i + 1] == "("))
            guard opensNumber else { i += 1; continue }
            // A number glued to a letter ("AB1234", "x123") is a code, not personal data.
            if i > 0, t[i - 1].isLetterLike || t[i - 1].isASCIIDigit { i += 1; continue }
            var j = i
            var plus = false
            while j < t.count, t[j] == "+" || t[j] == "(" { plus = plus || t[j] == "+"; j += 1 }
            guard j < t.count, t[j].isASCIIDigit else { i = j + 1; continue }
            var groups = [NumberRun.Group]()
            var separator = ""
            var writtenStart = i
            while j < t.count, t[j].isASCIIDigit {
                let start = j
                var digits = [UInt8]()
                while j < t.count, t[j].isASCIIDigit { digits.append(UInt8(t[j].value - 0x30)); j += 1 }
                groups.append(.init(range: start..<j, digits: digits, separatorBefore: separator,
                                    writtenStart: writtenStart, plus: plus))
                // Up to three separator characters (") ", " (", " - ") join two groups.
                var k = j
                var sep = ""
                while k < t.count, k - j < 3, Self.separators.contains(t[k]) { sep.unicodeScalars.append(t[k]); k += 1 }
                guard k < t.count, t[k].isASCIIDigit, Self.isJoiningSeparator(sep) else { break }
                separator = sep
                writtenStart = sep.hasSuffix("(") ? k - 1 : k
                plus = false
                j = k
            }
            // A run glued to a following letter is a code as well ("123abc").
            let end = groups[groups.count - 1].range.upperBound
            if end < t.count, t[end].isLetterLike { i = end; continue }
            classify(NumberRun(groups: groups), text: t, into: &spans)
            i = end
        }
    }

    private static func isJoiningSeparator(_ sep: String) -> Bool {
        switch sep {
        case " ", "-", ".", "/", ") ", ")", " (", "(", " - ", "\u{00A0}", ")-": return true
        default: return false
        }
    }

    /// Splits a run into maximal personal-data matches, longest first.
    func classify(_ run: NumberRun, text: [Unicode.Scalar], into spans: inout [Span]) {
        let groups = run.groups
        var start = 0
        while start < groups.count {
            let context = keyword(before: groups[start].writtenStart, in: text)
            let end = stride(from: groups.count - 1, through: start, by: -1).first { end in
                Self.match(Array(groups[start...end]), context: context) != nil
            }
            guard let end, let kind = Self.match(Array(groups[start...end]), context: context) else {
                start += 1; continue
            }
            // Take the "+" or "(" written before the number along, but an opening
            // parenthesis only when the matched number also closes it.
            let first = groups[start]
            let opensParen = first.writtenStart < first.range.lowerBound && text[first.range.lowerBound - 1] == "("
            let closesParen = end > start && groups[start + 1].separatorBefore.contains(")")
            let lower = opensParen && !closesParen ? first.range.lowerBound : first.writtenStart
            spans.append(Span(range: lower..<groups[end].range.upperBound, kind: kind))
            start = end + 1
        }
    }

    /// Words that announce what a bare number is ("CPF 12345678909", "meu cel 987654321").
    enum Keyword { case cpf, cnpj, cep, phone, card }

    private static let keywords: [(String, Keyword)] = [
        ("cpf", .cpf), ("cnpj", .cnpj), ("cep", .cep),
        ("tel", .phone), ("telefone", .phone), ("fone", .phone), ("cel", .phone), ("celular", .phone),
        ("whats", .phone), ("whatsapp", .phone), ("zap", .phone), ("contato", .phone), ("ligar", .phone), ("ligue", .phone),
        ("cartao", .card), ("cartão", .card), ("card", .card),
    ]

    /// The keyword, if any, among the two words before `index`.
    func keyword(before index: Int, in t: [Unicode.Scalar]) -> Keyword? {
        var i = index - 1
        for _ in 0..<2 {
            while i >= 0, !t[i].isLetterLike { if t[i].isASCIIDigit { return nil }; i -= 1 }
            let end = i + 1
            while i >= 0, t[i].isLetterLike { i -= 1 }
            guard end > i + 1 else { return nil }
            let word = String(String.UnicodeScalarView(t[(i + 1)..<end])).lowercased()
            if let hit = Self.keywords.first(where: { $0.0 == word }) { return hit.1 }
        }
        return nil
    }

    /// The kind of personal data written as exactly these groups, or nil.
    static func match(_ groups: [NumberRun.Group], context: Keyword?) -> PersonalDataKind? {
        let lengths = groups.map(\.digits.count)
        let digits = groups.flatMap(\.digits)
        let seps = groups.dropFirst().map(\.separatorBefore)
        let n = digits.count
        let plus = groups[0].plus

        // Written shapes: decided by the form, whatever the check digits say.
        if lengths == [2, 3, 3, 4, 2] || (lengths == [8, 4, 2] && seps.first == "/") || (lengths == [2, 3, 3, 6] && seps.last == "/") {
            if seps.contains("/") || seps.allSatisfy({ $0 == "." || $0 == "-" }) { return .cnpj }
        }
        if n == 14, seps.contains("/") { return .cnpj }
        if lengths == [3, 3, 3, 2], seps.allSatisfy({ $0 == "." || $0 == "-" || $0 == " " }) { return .cpf }
        if lengths == [9, 2], seps == ["-"] { return .cpf }
        if lengths == [5, 3], seps == ["-"] { return .cep }
        if lengths == [2, 3, 3], seps == [".", "-"] { return .cep }
        if isCardShape(lengths, seps: seps) { return .card }
        // A bare run with valid check digits is that document, even if it could be dialled.
        if groups.count == 1, !plus, n == 11, isValidCPF(digits) { return .cpf }
        if groups.count == 1, !plus, n == 14, isValidCNPJ(digits) { return .cnpj }
        if let phone = phoneShape(groups, plus: plus, context: context) { return phone }

        // Bare runs: check digits and context decide.
        guard groups.count == 1 else { return nil }
        switch context {
        case .cpf? where n == 11: return .cpf
        case .cnpj? where n == 14: return .cnpj
        case .cep? where n == 8: return .cep
        case .card? where (13...19).contains(n): return .card
        case .phone? where (8...13).contains(n): return .phone
        default: break
        }
        if (13...19).contains(n), luhnValid(digits) { return .card }
        return nil
    }

    /// Groups of four (the last may be shorter), or the 4-6-5 / 4-6-4 forms of
    /// Amex and Diners, joined by spaces or dashes, 13 to 19 digits in all.
    static func isCardShape(_ lengths: [Int], seps: [String]) -> Bool {
        let total = lengths.reduce(0, +)
        guard (13...19).contains(total), lengths.count >= 3, seps.allSatisfy({ $0 == " " || $0 == "-" }),
              Set(seps).count == 1 else { return false }
        if lengths == [4, 6, 5] || lengths == [4, 6, 4] { return true }
        return lengths.dropLast().allSatisfy { $0 == 4 } && (1...4).contains(lengths.last!)
    }

    /// Brazilian telephone numbers: optional +55 (or a leading 0 carrier
    /// prefix), optional area code (DDD, two digits 11-99 without zeros, in
    /// parentheses or not), then an 8-digit landline or 9-digit mobile number
    /// written as 4-4, 5-4, 1-4-4 or unbroken.
    static func phoneShape(_ groups: [NumberRun.Group], plus: Bool, context: Keyword?) -> PersonalDataKind? {
        var rest = groups[...]
        var hadCountry = false
        var hadArea = false
        // Country code, as its own group ("+55 11 ...") or glued ("+5511987654321").
        if let first = rest.first, first.digits == [5, 5], rest.count > 1, plus || rest.count >= 3 {
            rest = rest.dropFirst(); hadCountry = true
        }
        // Area code group "11", "(11)" or "011".
        if let first = rest.first, rest.count > 1 {
            var ddd = first.digits
            if ddd.count == 3, ddd[0] == 0 { ddd.removeFirst() }
            if ddd.count == 2, isAreaCode(ddd) { rest = rest.dropFirst(); hadArea = true }
        }
        var local = rest.flatMap(\.digits)
        let lengths = rest.map(\.digits.count)
        let seps = rest.dropFirst().map(\.separatorBefore)
        guard seps.allSatisfy({ $0 == " " || $0 == "-" || $0 == "." || $0 == " - " }) else { return nil }

        if lengths.count == 1 {
            // One unbroken group after the prefixes: may hold the DDD (and 55) too.
            if !hadArea {
                if plus || hadCountry, local.count >= 12, local.starts(with: [5, 5]) { local.removeFirst(2); hadCountry = true }
                if local.count == 12, local[0] == 0 { local.removeFirst() }
                if local.count == 10 || local.count == 11, isAreaCode(Array(local.prefix(2))) {
                    local.removeFirst(2); hadArea = true
                } else if hadCountry { return nil }
            }
            guard isLocalNumber(local) else { return nil }
            // A bare 8-digit run could be an order number: only an area code, a
            // country code or a keyword make it a phone. Nine digits starting
            // with 9 is the shape of every Brazilian mobile number.
            return hadArea || hadCountry || context == .phone || local.count == 9 ? .phone : nil
        }
        guard [[4, 4], [5, 4], [1, 4, 4]].contains(lengths), isLocalNumber(local) else { return nil }
        // "2023-2024" is a span of years, not a landline.
        if !hadArea, !hadCountry, lengths == [4, 4], isYear(Array(local[0..<4])), isYear(Array(local[4..<8])) { return nil }
        return .phone
    }

    static func isAreaCode(_ d: [UInt8]) -> Bool {
        d.count == 2 && d[0] >= 1 && d[1] >= 1
    }

    /// An 8-digit number starting 2-9 or a 9-digit mobile number starting with 9.
    static func isLocalNumber(_ d: [UInt8]) -> Bool {
        (d.count == 8 && d[0] >= 2) || (d.count == 9 && d[0] == 9)
    }

    static func isYear(_ d: [UInt8]) -> Bool {
        let value = d.reduce(0) { $0 * 10 + Int($1) }
        return (1900...2099).contains(value)
    }

    /// CPF check digits (modulus 11); all-equal sequences are invalid.
    public static func isValidCPF(_ d: [UInt8]) -> Bool {
        guard d.count == 11, Set(d).count > 1 else { return false }
        func check(_ count: Int) -> UInt8 {
            var sum = 0
            for i in 0..<count { sum += Int(d[i]) * (count + 1 - i) }
            let r = (sum * 10) % 11
            return UInt8(r == 10 ? 0 : r)
        }
        return check(9) == d[9] && check(10) == d[10]
    }

    /// CNPJ check digits (modulus 11 with weights 2-9).
    public static func isValidCNPJ(_ d: [UInt8]) -> Bool {
        guard d.count == 14, Set(d).count > 1 else { return false }
        func check(_ count: Int) -> UInt8 {
            var sum = 0
            var weight = 2
            for i in stride(from: count - 1, through: 0, by: -1) {
                sum += Int(d[i]) * weight
                weight = weight == 9 ? 2 : weight + 1
            }
            let r = sum % 11
            return UInt8(r < 2 ? 0 : 11 - r)
        }
        return check(12) == d[12] && check(13) == d[13]
    }

    /// The Luhn checksum used by payment cards.
    public static func luhnValid(_ d: [UInt8]) -> Bool {
        guard !d.isEmpty else { return false }
        var sum = 0
        for (offset, digit) in d.reversed().enumerated() {
            var v = Int(digit)
            if offset % 2 == 1 { v *= 2; if v > 9 { v -= 9 } }
            sum += v
        }
        return sum % 10 == 0
    }
}
