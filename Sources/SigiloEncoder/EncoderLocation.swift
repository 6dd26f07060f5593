import Foundation

/// Where the shipped encoder file is found when no path is given: the
/// `SIGILO_ENCODER` environment variable, then `share/sigilo/` beside an
/// installed binary (`bin/../share/sigilo/`), then `models/` in the source
/// tree the binary was built in (walking up from the executable).
public enum EncoderLocation {
    public static let shippedFileName = "e5-small-enpt-q4.sgle"

    public static func defaultPath() -> String? {
        if let path = ProcessInfo.processInfo.environment["SIGILO_ENCODER"], !path.isEmpty { return path }
        var folder = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        if let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            folder = URL(fileURLWithPath: executable).deletingLastPathComponent()
        }
        let installed = folder.deletingLastPathComponent().appendingPathComponent("share/sigilo/\(shippedFileName)").path
        if FileManager.default.fileExists(atPath: installed) { return installed }
        for _ in 0..<6 {
            let candidate = folder.appendingPathComponent("models/\(shippedFileName)").path
            if FileManager.default.fileExists(atPath: candidate) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        return nil
    }

    /// The encoder at `path`, or the shipped one (checked against its pinned
    /// digest) when `path` is nil. `expectedSHA256` pins any other file.
    public static func load(path: String?, expectedSHA256: String? = nil) throws -> Encoder {
        if let path { return try Encoder(path: path, expectedSHA256: expectedSHA256) }
        guard let found = defaultPath() else {
            throw EncoderFileError("no encoder file: pass --encoder PATH or set SIGILO_ENCODER (the shipped \(shippedFileName) is in the source tree's models/)")
        }
        return try Encoder(path: found, expectedSHA256: expectedSHA256 ?? EncoderFile.shippedSHA256)
    }
}
