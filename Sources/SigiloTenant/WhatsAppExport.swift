import Foundation
import SigiloCLI

/// WhatsApp's "export chat" text files, as Android and iOS write them in
/// Portuguese or English:
///
///     12/03/2024 14:05 - Maria Silva: Oi, boa tarde           (Android, pt)
///     3/12/24, 2:05 PM - Maria Silva: Hi                       (Android, en)
///     [12/03/2024, 14:05:32] Maria Silva: Oi, boa tarde        (iOS, pt)
///     [3/12/24, 2:05:32 PM] Maria Silva: Hi                    (iOS, en)
///
/// A line without such a prefix continues the message before it. System
/// lines (Android: no author; iOS: a body that starts with U+200E), media
/// placeholders and deleted-message notices are skipped, not imported.
public enum WhatsAppExport {
    public struct Message: Equatable, Sendable {
        /// The line the message starts on (1-based).
        public var line: Int
        /// "2024-03-12T14:05" (":SS" when the export has seconds), local time as written.
        public var time: String
        public var author: String
        public var text: String
    }

    public enum DateOrder: String, Sendable { case dayFirst = "dmy", monthFirst = "mdy" }

    public struct Parsed: Sendable {
        public var messages: [Message] = []
        public var skipped = 0
        public var errors: [LineError] = []
        public var dateOrder: DateOrder = .dayFirst
    }

    /// A message line's prefix, before its date is given an order.
    struct Header {
        var first: Int, second: Int, year: Int
        var hour: Int, minute: Int, second_: Int?
        var meridiem: Character? // "a" or "p"
        var rest: Substring
        var iOS: Bool
    }

    /// Parses a whole export; `order` forces the date order, else it is
    /// inferred from the file (a first field above 12 means day first, a second
    /// above 12 month first, else 24-hour times mean day first).
    public static func parse(_ data: Data, file: String, order: DateOrder? = nil, maximumTextBytes: Int = 4096) -> Parsed {
        var parsed = Parsed()
        var lines = [(number: Int, text: Substring, header: Header?)]()
        TextLines.forEach(in: data) { number, bytes in
            guard let text = String(validating: bytes, as: UTF8.self) else {
                parsed.errors.append(LineError(file: file, line: number, reason: "not valid UTF-8"))
                return
            }
            let cleaned = Substring(normalisedSpaces(text))
            lines.append((number, cleaned, header(cleaned)))
        }
        parsed.dateOrder = order ?? inferOrder(lines.compactMap(\.header))

        var current: Message?
        var currentSkipped = false
        func finish() {
            guard let message = current else { return }
            current = nil
            if message.text.utf8.count > maximumTextBytes {
                parsed.errors.append(LineError(file: file, line: message.line, reason: "message longer than \(maximumTextBytes) bytes"))
            } else {
                parsed.messages.append(message)
            }
        }
        for (number, text, header) in lines {
            guard let header else {
                if current != nil {
                    current!.text += "\n" + text
                } else if !currentSkipped, !text.allSatisfy(\.isWhitespace) {
                    parsed.errors.append(LineError(file: file, line: number, reason: "text before the first dated message line"))
                }
                continue
            }
            finish()
            currentSkipped = true
            let time: String
            do { time = try timestamp(header, order: parsed.dateOrder) } catch {
                parsed.errors.append(LineError(file: file, line: number, reason: "\(error)"))
                continue
            }
            // "Author: text"; Android system lines have no author, iOS ones a body marked U+200E.
            guard let colon = header.rest.range(of: ": ") else { parsed.skipped += 1; continue }
            let author = header.rest[..<colon.lowerBound].trimmingCharacters(in: .whitespaces)
            var body = header.rest[colon.upperBound...]
            if body.first == "\u{200E}" { parsed.skipped += 1; continue }
            body = Substring(stripEditedMarker(body))
            if isPlaceholder(body) { parsed.skipped += 1; continue }
            current = Message(line: number, time: time, author: author, text: String(body))
            currentSkipped = false
        }
        finish()
        return parsed
    }

    /// Exports write U+202F or U+00A0 before "PM" and U+200E/U+200F around iOS lines.
    static func normalisedSpaces(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        var leading = true
        for scalar in text.unicodeScalars {
            if leading, scalar == "\u{200E}" || scalar == "\u{200F}" || scalar == "\u{FEFF}" { continue }
            leading = false
            out.append(scalar == "\u{202F}" || scalar == "\u{00A0}" ? " " : scalar)
        }
        return String(out)
    }

    /// The date-and-time prefix of a message line, if the line has one.
    static func header(_ line: Substring) -> Header? {
        var s = line[...]
        let iOS = s.first == "["
        if iOS { s = s.dropFirst() }
        func number(maxDigits: Int) -> Int? {
            let digits = s.prefix(while: { $0.isASCII && $0.isNumber }).prefix(maxDigits + 1)
            guard !digits.isEmpty, digits.count <= maxDigits else { return nil }
            s = s.dropFirst(digits.count)
            return Int(digits)
        }
        func take(_ text: String) -> Bool {
            guard s.hasPrefix(text) else { return false }
            s = s.dropFirst(text.count)
            return true
        }
        guard let a = number(maxDigits: 2), take("/"), let b = number(maxDigits: 2), take("/") else { return nil }
        let yearDigits = s.prefix(while: { $0.isASCII && $0.isNumber }).count
        guard yearDigits == 2 || yearDigits == 4, let y = number(maxDigits: 4) else { return nil }
        _ = take(",")
        guard take(" "), let hour = number(maxDigits: 2), take(":"), let minute = number(maxDigits: 2) else { return nil }
        var seconds: Int?
        if take(":") { guard let sec = number(maxDigits: 2) else { return nil }; seconds = sec }
        var meridiem: Character?
        let beforeMeridiem = s
        _ = take(" ")
        if let m = s.first?.lowercased().first, m == "a" || m == "p" {
            var t = s.dropFirst()
            if t.first == "." { t = t.dropFirst() }
            if t.first == " " { t = t.dropFirst() }
            if t.first?.lowercased() == "m" {
                t = t.dropFirst()
                if t.first == "." { t = t.dropFirst() }
                meridiem = m
                s = t
            } else { s = beforeMeridiem }
        } else { s = beforeMeridiem }
        if iOS { guard take("] ") else { return nil } } else { guard take(" - ") else { return nil } }
        return Header(first: a, second: b, year: y < 100 ? 2000 + y : y, hour: hour, minute: minute, second_: seconds,
                      meridiem: meridiem, rest: s, iOS: iOS)
    }

    static func inferOrder(_ headers: [Header]) -> DateOrder {
        if headers.contains(where: { $0.first > 12 }) { return .dayFirst }
        if headers.contains(where: { $0.second > 12 }) { return .monthFirst }
        return headers.contains(where: { $0.meridiem != nil }) ? .monthFirst : .dayFirst
    }

    struct InvalidDate: Error, CustomStringConvertible { let description: String }

    static func timestamp(_ h: Header, order: DateOrder) throws -> String {
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let (day, month) = order == .dayFirst ? (h.first, h.second) : (h.second, h.first)
        guard (2000...2099).contains(h.year) else { throw InvalidDate(description: "year \(h.year) is outside 2000-2099") }
        guard (1...12).contains(month) else { throw InvalidDate(description: "month \(month) does not exist (date order \(order.rawValue); see --date-order)") }
        let days = [31, h.year % 4 == 0 && (h.year % 100 != 0 || h.year % 400 == 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        guard (1...days).contains(day) else { throw InvalidDate(description: "day \(day) does not exist in month \(month) of \(h.year)") }
        var hour = h.hour
        if let m = h.meridiem {
            guard (1...12).contains(hour) else { throw InvalidDate(description: "hour \(hour) with AM/PM") }
            hour = hour % 12 + (m == "p" ? 12 : 0)
        }
        guard (0...23).contains(hour), (0...59).contains(h.minute), (h.second_ ?? 0) <= 59 else {
            throw InvalidDate(description: "time \(two(h.hour)):\(two(h.minute)) does not exist")
        }
        return "\(h.year)-\(two(month))-\(two(day))T\(two(hour)):\(two(h.minute))" + (h.second_.map { ":\(two($0))" } ?? "")
    }

    /// "<Mídia oculta>", "<Media omitted>", iOS's "imagem ocultada"/"image omitted", deleted messages.
    static func isPlaceholder(_ body: Substring) -> Bool {
        let text = body.trimmingCharacters(in: .whitespaces).lowercased()
        if placeholders.contains(text) { return true }
        if text.hasPrefix("<anexado:") || text.hasPrefix("<attached:") { return true }
        let words = text.split(separator: " ")
        return words.count == 2 && ["omitted", "ocultada", "ocultado"].contains(words[1])
    }

    static let placeholders: Set<String> = [
        "<mídia oculta>", "<media omitted>", "<arquivo de mídia oculto>",
        "esta mensagem foi apagada", "mensagem apagada", "você apagou esta mensagem",
        "this message was deleted", "you deleted this message", "null",
    ]

    /// Newer exports end an edited message with "<Esta mensagem foi editada>" or "<This message was edited>".
    static func stripEditedMarker(_ body: Substring) -> String {
        for marker in ["<Esta mensagem foi editada>", "<This message was edited>", "<Mensagem editada>"] where body.hasSuffix(marker) {
            return body.dropLast(marker.count).trimmingCharacters(in: .whitespaces)
        }
        return String(body)
    }
}
