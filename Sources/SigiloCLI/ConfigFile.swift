import Foundation

/// Options read from a file (`--config FILE`), so a deployment states
/// `--state`, `--key-file`, `--listen` and the rest once for every command.
///
///     # sigilo-coordinator
///     state = /var/lib/sigilo/coordinator
///     listen = [::]:8443
///     verify-audit = true
///
/// One `name = value` per line, `name` being any option of any of the
/// program's commands without its dashes; `#` starts a comment line; a flag
/// takes `true` or `false`; a repeatable option may appear on several lines.
/// Each command takes the names it has and leaves the others, so one file
/// serves them all; a name no command has is an error naming the line. An
/// option given on the command line replaces the file's value.
public struct ConfigFile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var value: String
        public var line: Int
    }

    public let source: String
    public let entries: [Entry]

    /// Parses `text`; errors name `source` and the line.
    public init(parsing text: String, source: String) throws {
        self.source = source
        var entries = [Entry]()
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw CLIError.usage("\(source):\(index + 1): expected \"name = value\", got \"\(line)\"")
            }
            var name = line[..<equals].trimmingCharacters(in: .whitespaces)
            if name.hasPrefix("--") { name.removeFirst(2) } // pasted from a command line
            var value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
                throw CLIError.usage("\(source):\(index + 1): \"\(name)\" is not an option name")
            }
            entries.append(Entry(name: name, value: value, line: index + 1))
        }
        self.entries = entries
    }

    /// Reads the file, refusing one that others may write (it decides which state
    /// a command opens and where it listens) or that is not there.
    public init(path: String) throws {
        var info = stat()
        guard stat(path, &info) == 0 else { throw CLIError(.noInput, "cannot read --config \(path): \(String(cString: strerror(errno)))") }
        guard info.st_mode & 0o002 == 0 else {
            throw CLIError(.refused, "refusing --config \(path): anyone on this machine may write it (chmod o-w \(path))")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError(.noInput, "cannot read --config \(path)") }
        guard let text = String(data: data, encoding: .utf8) else { throw CLIError(.dataError, "--config \(path) is not UTF-8 text") }
        try self.init(parsing: text, source: path)
    }

    /// Fills in what the command line left out, for `spec`'s options; `known`
    /// are the option names of every command of the program.
    public func apply(to parsed: inout ParsedArguments, spec: CommandSpec, known: Set<String>) throws {
        var fromFile: [String: [String]] = [:]
        for entry in entries {
            guard let option = spec.options.first(where: { $0.name == entry.name }) else {
                if known.contains(entry.name) { continue } // another command's option
                let close = known.filter { editDistance($0, entry.name) <= max(1, entry.name.count / 4) }.sorted()
                let hint = close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)"
                throw CLIError.usage("\(source):\(entry.line): no command takes an option \"\(entry.name)\"\(hint)")
            }
            if option.valueName == nil {
                switch entry.value.lowercased() {
                case "true", "yes", "on": parsed.flags.insert(entry.name)
                case "false", "no", "off": break
                default: throw CLIError.usage("\(source):\(entry.line): \(entry.name) is a flag: true or false, got \"\(entry.value)\"")
                }
                continue
            }
            if fromFile[entry.name] != nil, !option.repeatable {
                throw CLIError.usage("\(source):\(entry.line): \(entry.name) given more than once")
            }
            fromFile[entry.name, default: []].append(entry.value)
        }
        for (name, values) in fromFile where parsed.values[name] == nil { parsed.values[name] = values }
    }

    /// Every option of `commands`, commented out with its help: a file to start from.
    public static func template(program: String, commands: [CommandSpec]) -> String {
        var out = """
        # \(program) configuration: pass it with --config FILE to any command.
        # One "name = value" per line; a flag is "name = true". Each command reads the options it has;
        # an option on the command line replaces the file's. Uncomment what you use.

        """
        var seen = Set<String>()
        for spec in commands {
            let fresh = spec.options.filter { seen.insert($0.name).inserted }
            guard !fresh.isEmpty else { continue }
            out += "\n# \(program) \(spec.name)\n"
            for option in fresh {
                out += "# \(option.help)\n# \(option.name) = \(option.valueName ?? "true")\n"
            }
        }
        return out
    }
}
