import Foundation

/// A problem with one line of a JSON Lines file, located precisely.
public struct LineError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let line: Int
    public let reason: String

    public init(file: String, line: Int, reason: String) {
        self.file = file
        self.line = line
        self.reason = reason
    }

    public var description: String { "\(file):\(line): \(reason)" }
}

/// Reads JSON Lines files: one JSON object per line, blank lines ignored.
public enum JSONLines {
    /// Longest accepted line; longer lines are reported, never parsed.
    public static let maximumLineBytes = 64 * 1024

    /// Calls `body` with each line's object and 1-based line number; collects
    /// malformed lines (and errors thrown by `body` as `LineError.reason`
    /// strings) instead of stopping at the first.
    public static func read(_ path: String,
                            _ body: (_ object: [String: Any], _ line: Int) throws -> Void) throws -> [LineError] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CLIError(.noInput, "cannot read \(path): \(error.localizedDescription)")
        }
        return try parse(data, name: path, body)
    }

    /// `read` on bytes already in memory; `name` labels the errors.
    public static func parse(_ data: Data, name path: String,
                             _ body: (_ object: [String: Any], _ line: Int) throws -> Void) rethrows -> [LineError] {
        var errors = [LineError]()
        try TextLines.forEach(in: data) { lineNumber, line in
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return }
            guard line.count <= maximumLineBytes else {
                errors.append(LineError(file: path, line: lineNumber,
                                        reason: "line is \(line.count) bytes, longer than the \(maximumLineBytes)-byte limit"))
                return
            }
            let object: Any
            do {
                object = try JSONSerialization.jsonObject(with: Data(line), options: [])
            } catch {
                errors.append(LineError(file: path, line: lineNumber, reason: "not valid JSON"))
                return
            }
            guard let dictionary = object as? [String: Any] else {
                errors.append(LineError(file: path, line: lineNumber, reason: "not a JSON object"))
                return
            }
            do {
                try body(dictionary, lineNumber)
            } catch let error as FieldError {
                errors.append(LineError(file: path, line: lineNumber, reason: error.description))
            }
        }
        return errors
    }
}

/// A field of a JSON Lines record that is missing or has the wrong form.
public struct FieldError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }

    /// The non-empty string field `name` of `object`.
    public static func requireString(_ object: [String: Any], _ name: String) throws -> String {
        guard let raw = object[name] else { throw FieldError("missing \"\(name)\"") }
        guard let value = raw as? String else { throw FieldError("\"\(name)\" must be a string") }
        guard !value.allSatisfy(\.isWhitespace) else { throw FieldError("\"\(name)\" is empty") }
        return value
    }
}

/// A labelled message, as `sigilo-eval` reads it: `{"text": ..., "intent": ...}`.
public struct LabeledExample: Sendable, Equatable {
    public var text: String
    public var intent: String

    public init(text: String, intent: String) {
        self.text = text
        self.intent = intent
    }

    /// Reads a labelled JSON Lines file; fails with every bad line listed.
    public static func load(_ path: String) throws -> [LabeledExample] {
        var examples = [LabeledExample]()
        let errors = try JSONLines.read(path) { object, _ in
            let text = try FieldError.requireString(object, "text")
            let intent = try FieldError.requireString(object, "intent")
            examples.append(LabeledExample(text: text, intent: intent))
        }
        guard errors.isEmpty else {
            let shown = errors.prefix(20).map(\.description).joined(separator: "\n  ")
            let more = errors.count > 20 ? "\n  ... and \(errors.count - 20) more" : ""
            throw CLIError(.dataError, "\(errors.count) invalid line(s):\n  \(shown)\(more)")
        }
        guard !examples.isEmpty else { throw CLIError(.dataError, "\(path): no examples") }
        return examples
    }
}

/// The lines of a text in memory, LF or CRLF, numbered from 1 (the last may lack its newline).
public enum TextLines {
    public static func forEach(in data: Data, _ body: (_ number: Int, _ line: Data.SubSequence) throws -> Void) rethrows {
        var number = 0
        var start = data.startIndex
        while start < data.endIndex {
            number += 1
            let newline = data[start...].firstIndex(of: 0x0a) ?? data.endIndex
            var line = data[start..<newline]
            start = newline < data.endIndex ? newline + 1 : newline
            if line.last == 0x0d { line = line.dropLast() }
            try body(number, line)
        }
    }
}
