import Foundation

/// Buffered writing to standard output and standard error.
///
/// Output is collected and written in large chunks (classification at tens of
/// thousands of lines per second), but flushed after every line when a person
/// is typing at a terminal.
public final class OutputStream: @unchecked Sendable {
    private let fd: Int32
    private var buffer = [UInt8]()
    private let lineBuffered: Bool

    public static let standardOutput = OutputStream(fd: 1, lineBuffered: isatty(0) != 0)

    init(fd: Int32, lineBuffered: Bool) {
        self.fd = fd
        self.lineBuffered = lineBuffered
        buffer.reserveCapacity(1 << 16)
    }

    public func write(_ text: String) {
        buffer.append(contentsOf: text.utf8)
        if lineBuffered || buffer.count >= 1 << 16 { flush() }
    }

    public func write(bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if lineBuffered || buffer.count >= 1 << 16 { flush() }
    }

    public func flush() {
        var offset = 0
        while offset < buffer.count {
            let n = buffer.withUnsafeBytes { Foundation.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                buffer.removeAll(keepingCapacity: true)
                return
            }
            offset += n
        }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Writes `text` to `path` as a file only its owner can read (0600), synced
/// before this returns: for keys, which must survive a crash once announced.
/// Without `replacing`, an existing file is refused rather than overwritten.
public func writePrivateFile(_ path: String, _ text: String, replacing: Bool) throws {
    let fd = open(path, O_WRONLY | O_CREAT | (replacing ? O_TRUNC : O_EXCL), 0o600)
    guard fd >= 0 else { throw CLIError(.ioError, "cannot create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    guard write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
        throw CLIError(.ioError, "cannot write \(path): \(String(cString: strerror(errno)))")
    }
}

/// Writes a line to standard error (diagnostics and progress, never data).
public func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// Runs a command's body, printing its error and exiting with its code.
public func runCommand(_ body: () throws -> Void) -> Never {
    LargeBufferReuse.enable() // before any thread exists
    do {
        try body()
        OutputStream.standardOutput.flush()
        exit(ExitCode.success.rawValue)
    } catch let error as CLIError {
        OutputStream.standardOutput.flush()
        printError("error: \(error.description)")
        exit(error.exitCode.rawValue)
    } catch {
        OutputStream.standardOutput.flush()
        printError("error: \(error)")
        exit(ExitCode.failure.rawValue)
    }
}

/// Reads standard input line by line (LF or CRLF), without the terminator.
public func forEachStandardInputLine(_ body: (String) throws -> Void) rethrows {
    while let line = readLine(strippingNewline: true) {
        try body(line.hasSuffix("\r") ? String(line.dropLast()) : line)
    }
}

/// Dispatches `arguments[0]` to one of `commands`; prints the overview on
/// `--help`, no arguments, or an unknown command.
public func dispatch(program: String, summary: String, arguments: [String],
                     commands: [(spec: CommandSpec, run: (ParsedArguments) throws -> Void)]) throws {
    func overview() -> String {
        var out = "\(summary)\n\nUsage: \(program) <command> [options]\n\nCommands:\n"
        let width = commands.map(\.spec.name.count).max() ?? 0
        for command in commands {
            out += "  \(command.spec.name)" + String(repeating: " ", count: width - command.spec.name.count)
                + "  \(command.spec.summary)\n"
        }
        out += "\nRun '\(program) <command> --help' for a command's options, '\(program) config' for a configuration file to start from.\n"
        return out
    }
    guard let name = arguments.first else {
        printError(overview())
        throw CLIError.usage("\(program): no command given")
    }
    if name == "--help" || name == "-h" || name == "help" {
        OutputStream.standardOutput.write(overview())
        return
    }
    if name == "config", !commands.contains(where: { $0.spec.name == "config" }) {
        OutputStream.standardOutput.write(ConfigFile.template(program: program, commands: commands.map(\.spec)))
        return
    }
    guard let command = commands.first(where: { $0.spec.name == name }) else {
        // A group word ("plan", "tenant"): its commands, as help or as the usage error.
        let group = commands.filter { $0.spec.name.hasPrefix(name + " ") }
        if !group.isEmpty {
            let width = group.map(\.spec.name.count).max() ?? 0
            let listing = group.map { "  \($0.spec.name)" + String(repeating: " ", count: width - $0.spec.name.count) + "  \($0.spec.summary)" }
                .joined(separator: "\n")
            if arguments.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
                OutputStream.standardOutput.write("Commands of \(program) \(name):\n\(listing)\n\nRun '\(program) \(name) <command> --help' for a command's options.\n")
                return
            }
            throw CLIError.usage("\(program): \"\(name)\" needs a command:\n\(listing)")
        }
        // Whole names and group words ("tenat" is close to "tenant", not to "tenant invite").
        var candidates = [String]()
        for word in commands.map(\.spec.name) + commands.compactMap({ $0.spec.name.split(separator: " ").first.map(String.init) })
        where !candidates.contains(word) { candidates.append(word) }
        let close = candidates.filter { editDistance($0, name) <= max(1, name.count / 3) }
        let hint = close.isEmpty ? "" : " (did you mean \(close.joined(separator: ", "))?)"
        throw CLIError.usage("\(program): unknown command \"\(name)\"\(hint); commands: \(commands.map(\.spec.name).joined(separator: ", "))")
    }
    var rest = Array(arguments.dropFirst()), configPath: String?
    if let at = rest.firstIndex(where: { $0 == "--config" || $0.hasPrefix("--config=") }) {
        if rest[at] == "--config" {
            guard at + 1 < rest.count else { throw CLIError.usage("\(name): --config needs a value FILE") }
            configPath = rest[at + 1]
            rest.removeSubrange(at...(at + 1))
        } else {
            configPath = String(rest[at].dropFirst("--config=".count))
            rest.remove(at: at)
        }
    }
    guard var parsed = try command.spec.parse(rest) else {
        OutputStream.standardOutput.write(command.spec.help)
        return
    }
    if let configPath {
        try ConfigFile(path: configPath).apply(to: &parsed, spec: command.spec, known: Set(commands.flatMap { $0.spec.options.map(\.name) }))
    }
    try command.run(parsed)
}

/// Levenshtein distance, for "did you mean" on a mistyped command.
func editDistance(_ a: String, _ b: String) -> Int {
    let b = Array(b)
    var row = Array(0...b.count) // distances from the prefix of `a` read so far to each prefix of `b`
    for (i, x) in a.enumerated() {
        var diagonal = row[0]
        row[0] = i + 1
        for (j, y) in b.enumerated() {
            let above = row[j + 1]
            row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x == y ? 0 : 1))
            diagonal = above
        }
    }
    return row[b.count]
}

/// An epsilon for people: three decimals at most, no trailing zeros
/// (7.784663219099718 reads 7.785, a budget of 8 reads 8). JSON keeps every digit.
public func formatEpsilon(_ epsilon: Double) -> String {
    guard epsilon.isFinite else { return "\(epsilon)" }
    var text = String(format: "%.3f", epsilon)
    while text.hasSuffix("0") { text.removeLast() }
    if text.hasSuffix(".") { text.removeLast() }
    return text
}
