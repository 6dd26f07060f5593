import Foundation

/// The operator's log of a long-running command (`serve`, `run`): one line per
/// event on standard error, timestamped (UTC, milliseconds) and levelled,
/// either for people or as JSON objects for a log shipper.
///
///     2026-12-05T18:44:18.120Z warning round.abandon round 7: 2 of 3 cohort tenants submitted; missing: t-9f2c
///     {"time":"2026-12-05T18:44:18.120Z","level":"warning","event":"round.abandon","message":"round 7: ..."}
///
/// `event` is a stable, dotted name to filter on (the audit log's action where
/// there is one); `message` is for people and never holds a secret.
public final class Log: Sendable {
    public enum Level: Int, Comparable, Sendable, CaseIterable {
        case debug, info, warning, error

        public var name: String { ["debug", "info", "warning", "error"][rawValue] }
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    public enum Format: String, Sendable, CaseIterable { case human, json }

    public let format: Format
    public let minimum: Level
    private let clock: @Sendable () -> Double
    private let write: @Sendable (String) -> Void

    public init(format: Format = .human, minimum: Level = .info,
                clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                write: @escaping @Sendable (String) -> Void = { line in
                    // One write(2) per line: lines from several threads never interleave.
                    let bytes = Array(line.utf8)
                    _ = bytes.withUnsafeBytes { Foundation.write(2, $0.baseAddress, $0.count) }
                }) {
        self.format = format
        self.minimum = minimum
        self.clock = clock
        self.write = write
    }

    /// The shared command-line options of every command that logs.
    public static let options: [OptionSpec] = [
        .value("log-format", "human|json", "Log lines on standard error for people (default) or as one JSON object per line."),
        .value("log-level", "LEVEL", "Least level written: debug, info (default), warning or error."),
    ]

    /// The log the command line asks for (`options`).
    public convenience init(_ args: ParsedArguments) throws {
        let format = try args.string("log-format").map { raw in
            guard let f = Format(rawValue: raw) else { throw CLIError.usage("\(args.command): --log-format expects human or json, got \"\(raw)\"") }
            return f
        } ?? .human
        let minimum = try args.string("log-level").map { raw in
            guard let l = Level.allCases.first(where: { $0.name == raw }) else {
                throw CLIError.usage("\(args.command): --log-level expects debug, info, warning or error, got \"\(raw)\"")
            }
            return l
        } ?? .info
        self.init(format: format, minimum: minimum)
    }

    public func callAsFunction(_ level: Level, _ event: String, _ message: String) {
        guard level >= minimum else { return }
        write(line(level, event, message, at: clock()))
    }

    public func debug(_ event: String, _ message: String) { self(.debug, event, message) }
    public func info(_ event: String, _ message: String) { self(.info, event, message) }
    public func warning(_ event: String, _ message: String) { self(.warning, event, message) }
    public func error(_ event: String, _ message: String) { self(.error, event, message) }

    func line(_ level: Level, _ event: String, _ message: String, at time: Double) -> String {
        let stamp = Log.timestamp(time)
        switch format {
        case .human:
            // One event, one line: a message's own line breaks would read as further events.
            return "\(stamp) \(level.name) \(event) \(message.replacingOccurrences(of: "\n", with: " "))\n"
        case .json:
            return JSON.object([("time", .string(stamp)), ("level", .string(level.name)), ("event", .string(event)),
                                ("message", .string(message))]).rendered() + "\n"
        }
    }

    /// RFC 3339 in UTC with milliseconds, e.g. 2026-12-05T18:44:18.120Z.
    public static func timestamp(_ time: Double) -> String {
        var seconds = time_t(floor(time))
        let millis = min(999, Int((time - floor(time)) * 1000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
    }
}
