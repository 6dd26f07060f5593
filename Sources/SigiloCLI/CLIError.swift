/// Exit codes with a meaning (BSD sysexits), shared by every Sigilo program.
public enum ExitCode: Int32, Sendable {
    case success = 0
    /// A generic failure of the work itself.
    case failure = 1
    /// Wrong command line: unknown option, missing or malformed value.
    case usage = 64
    /// Input data is malformed (a JSONL line, a model file).
    case dataError = 65
    /// An input file does not exist or cannot be opened.
    case noInput = 66
    /// Writing output failed.
    case ioError = 74
    /// Nothing to do now; try again later (e.g. no round open).
    case tempFail = 75
    /// A refusal on policy grounds (e.g. privacy budget).
    case refused = 77
}

/// An error a command reports to its user and turns into an exit code.
public struct CLIError: Error, CustomStringConvertible, Sendable {
    public let exitCode: ExitCode
    public let description: String

    public init(_ exitCode: ExitCode, _ description: String) {
        self.exitCode = exitCode
        self.description = description
    }

    public static func usage(_ message: String) -> CLIError { CLIError(.usage, message) }
}
