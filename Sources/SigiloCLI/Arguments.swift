/// One option of a command: `--name VALUE`, or a flag `--name`.
public struct OptionSpec: Sendable {
    public let name: String
    public let valueName: String?
    public let help: String
    public let repeatable: Bool

    /// An option taking a value (`valueName` shows in the help).
    public static func value(_ name: String, _ valueName: String, _ help: String, repeatable: Bool = false) -> OptionSpec {
        OptionSpec(name: name, valueName: valueName, help: help, repeatable: repeatable)
    }

    /// A flag without value.
    public static func flag(_ name: String, _ help: String) -> OptionSpec {
        OptionSpec(name: name, valueName: nil, help: help, repeatable: false)
    }
}

/// A (sub)command: its options and the help text generated from them.
public struct CommandSpec: Sendable {
    public let name: String
    public let summary: String
    public let usage: String
    public let options: [OptionSpec]
    public let discussion: String

    public init(name: String, summary: String, usage: String, options: [OptionSpec], discussion: String = "") {
        self.name = name
        self.summary = summary
        self.usage = usage
        self.options = options
        self.discussion = discussion
    }

    public var help: String {
        var out = "\(summary)\n\nUsage: \(usage)\n"
        if !options.isEmpty {
            out += "\nOptions:\n"
            let rows = options.map { o in ("--\(o.name)" + (o.valueName.map { " \($0)" } ?? ""), o.help) }
                + [("--config FILE", "Read these options from FILE (name = value lines); the command line wins."), ("--help", "Show this help.")]
            let width = min(34, rows.map(\.0.count).max() ?? 0)
            for (left, right) in rows {
                let pad = left.count < width ? String(repeating: " ", count: width - left.count) : ""
                out += "  \(left)\(pad)  \(right)\n"
            }
        }
        if !discussion.isEmpty { out += "\n\(discussion)\n" }
        return out
    }

    /// Parses `arguments` (without the command name). Throws `CLIError.usage`
    /// with the offending argument; returns nil when help was requested.
    public func parse(_ arguments: [String]) throws -> ParsedArguments? {
        var parsed = ParsedArguments(command: name)
        var i = 0
        while i < arguments.count {
            let argument = arguments[i]
            i += 1
            if argument == "--help" || argument == "-h" { return nil }
            if argument == "--" { parsed.positional.append(contentsOf: arguments[i...]); break }
            guard argument.hasPrefix("--") else { parsed.positional.append(argument); continue }
            var name = String(argument.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            guard let spec = options.first(where: { $0.name == name }) else {
                let close = options.map(\.name).filter { $0.hasPrefix(String(name.prefix(3))) }
                let hint = close.isEmpty ? "" : " (did you mean \(close.map { "--\($0)" }.joined(separator: ", "))?)"
                throw CLIError.usage("\(self.name): unknown option --\(name)\(hint); see --help")
            }
            if spec.valueName == nil {
                guard inlineValue == nil else { throw CLIError.usage("\(self.name): --\(name) takes no value") }
                parsed.flags.insert(name)
                continue
            }
            let value: String
            if let inlineValue { value = inlineValue } else {
                guard i < arguments.count else {
                    throw CLIError.usage("\(self.name): --\(name) needs a value \(spec.valueName!)")
                }
                value = arguments[i]
                i += 1
            }
            if !spec.repeatable, parsed.values[name] != nil {
                throw CLIError.usage("\(self.name): --\(name) given more than once")
            }
            parsed.values[name, default: []].append(value)
        }
        return parsed
    }
}

/// The result of parsing: typed accessors whose errors name the option.
public struct ParsedArguments: Sendable {
    public let command: String
    public var values: [String: [String]] = [:]
    public var flags: Set<String> = []
    public var positional: [String] = []

    public init(command: String) { self.command = command }

    public func flag(_ name: String) -> Bool { flags.contains(name) }

    public func string(_ name: String) -> String? { values[name]?.last }

    public func strings(_ name: String) -> [String] { values[name] ?? [] }

    public func required(_ name: String) throws -> String {
        guard let value = string(name) else { throw CLIError.usage("\(command): missing required option --\(name)") }
        return value
    }

    public func int(_ name: String, range: ClosedRange<Int>? = nil) throws -> Int? {
        guard let raw = string(name) else { return nil }
        guard let value = Int(raw) else { throw CLIError.usage("\(command): --\(name) expects an integer, got \"\(raw)\"") }
        if let range, !range.contains(value) {
            throw CLIError.usage("\(command): --\(name) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
        return value
    }

    public func double(_ name: String, where valid: (Double) -> Bool = { _ in true }, expectation: String = "a finite number") throws -> Double? {
        guard let raw = string(name) else { return nil }
        guard let value = Double(raw), value.isFinite, valid(value) else {
            throw CLIError.usage("\(command): --\(name) expects \(expectation), got \"\(raw)\"")
        }
        return value
    }

    public func rejectPositional() throws {
        if let first = positional.first { throw CLIError.usage("\(command): unexpected argument \"\(first)\"") }
    }
}
