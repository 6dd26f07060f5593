import Foundation
import SigiloCLI
import SigiloCrypto

/// The key that seals the TOTP secrets in the coordinator's database, kept in
/// a file outside the state directory, as the tenant keeps its store key: a
/// copy of the directory, of the database file or of a backup does not carry
/// it. By default `DIR.key` beside the state directory `DIR`; `--key-file`
/// puts it elsewhere (a secrets mount, say).
enum SecretsKey {
    static let option = OptionSpec.value("key-file", "FILE",
        "The secrets key sealing the TOTP secrets (64 hex digits, mode 0600, outside the state directory; default DIR.key beside it).")

    static func location(_ args: ParsedArguments, state: URL) throws -> URL {
        let state = state.standardizedFileURL
        let url = args.string("key-file").map { URL(fileURLWithPath: $0).standardizedFileURL }
            ?? state.deletingLastPathComponent().appendingPathComponent(state.lastPathComponent + ".key")
        let inside = state.resolvingSymlinksInPath().path + "/"
        guard !url.deletingLastPathComponent().resolvingSymlinksInPath().appendingPathComponent(url.lastPathComponent).path.hasPrefix(inside) else {
            throw CLIError.usage("--key-file \(url.path) is inside the state directory; keep it outside, or a copy of the directory carries it")
        }
        return url
    }

    /// Reads the key, refusing a file other users can read.
    static func read(_ url: URL) throws -> [UInt8] {
        var info = stat()
        guard stat(url.path, &info) == 0, let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw CLIError(.noInput, "cannot read the secrets key \(url.path)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw CLIError(.refused, "the secrets key \(url.path) is open to other users (mode \(String(info.st_mode & 0o777, radix: 8))): chmod 600 \(url.path)")
        }
        guard let key = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), key.count == AES256GCM.keyBytes else {
            throw CLIError(.dataError, "\(url.path) must hold the secrets key as 64 hex digits")
        }
        return key
    }

    /// Writes a new random key (0600); refuses to replace one.
    static func create(_ url: URL) throws -> [UInt8] {
        let key = try secureRandomBytes(AES256GCM.keyBytes)
        try writePrivateFile(url.path, Hex.encode(key) + "\n", replacing: false)
        return key
    }
}
