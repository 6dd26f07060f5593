import Foundation
import SigiloCrypto

/// A coordinator backup file (protocol/SECURITY.md, "Backups"): the signing
/// key and a consistent copy of the database, checksummed as a whole.
///
///     "SGLBACKP" | u32 version (1) | u32 key length | key | u64 database length | database | SHA-256 of all before
///
/// Integers are big-endian. The key is the coordinator's private key: the
/// file is written 0600 and must be stored like the state directory itself.
public struct BackupArchive: Equatable, Sendable {
    static let magic = Array("SGLBACKP".utf8)
    static let version: UInt32 = 1
    public var signingKey: [UInt8]
    public var database: [UInt8]

    public init(signingKey: [UInt8], database: [UInt8]) {
        self.signingKey = signingKey
        self.database = database
    }

    public func encoded() -> [UInt8] {
        var out = Self.magic
        func append(_ value: UInt64, bytes: Int) { for i in (0..<bytes).reversed() { out.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) } }
        append(UInt64(Self.version), bytes: 4)
        append(UInt64(signingKey.count), bytes: 4)
        out += signingKey
        append(UInt64(database.count), bytes: 8)
        out += database
        out += SHA256.hash(out)
        return out
    }

    /// Decodes, naming what is wrong: magic, version, lengths, checksum.
    public static func decode(_ bytes: [UInt8]) throws -> BackupArchive {
        func fail(_ message: String) -> CoordinatorError { CoordinatorError(400, "bad_backup", message) }
        guard bytes.count >= magic.count + 4 + 4 + 8 + 32 else { throw fail("file is too short to be a Sigilo backup (\(bytes.count) bytes)") }
        guard Array(bytes[0..<8]) == magic else { throw fail("not a Sigilo backup (magic is not SGLBACKP)") }
        guard SHA256.hash(bytes[0..<(bytes.count - 32)]) == Array(bytes[(bytes.count - 32)...]) else {
            throw fail("checksum mismatch: the file is truncated or corrupted")
        }
        var offset = 8
        func read(_ count: Int) -> UInt64 {
            defer { offset += count }
            return bytes[offset..<(offset + count)].reduce(0) { $0 << 8 | UInt64($1) }
        }
        let version = read(4)
        guard version == UInt64(Self.version) else { throw fail("backup format version \(version) is not supported (this build reads 1)") }
        let keyLength = Int(read(4))
        guard keyLength <= 256, offset + keyLength + 8 <= bytes.count - 32 else { throw fail("key length \(keyLength) is out of range") }
        let key = Array(bytes[offset..<(offset + keyLength)])
        offset += keyLength
        let databaseLength = read(8)
        guard databaseLength == UInt64(bytes.count - 32 - offset) else { throw fail("database length \(databaseLength) does not match the file") }
        return BackupArchive(signingKey: key, database: Array(bytes[offset..<(bytes.count - 32)]))
    }
}

extension CoordinatorService {
    /// Writes a consistent backup while serving (SQLite's online backup of a
    /// WAL database reads one snapshot). The backup is recorded in the audit
    /// log first, so the copy contains its own record.
    public func backup(to url: URL, now: Double) throws -> (bytes: Int, sha256: String) {
        try recordOperatorAction("backup.create", object: url.lastPathComponent, now: now)
        let scratch = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(getpid()).sqlite")
        defer { try? FileManager.default.removeItem(at: scratch) }
        try locked { try database.backup(to: scratch.path) }
        let archive = BackupArchive(signingKey: Array(Hex.encode(signingKey.privateKey).utf8), database: Array(try Data(contentsOf: scratch))).encoded()
        let temporary = url.appendingPathExtension("partial")
        guard FileManager.default.createFile(atPath: temporary.path, contents: Data(archive), attributes: [.posixPermissions: 0o600]) else {
            throw CoordinatorError(500, "backup_failed", "cannot write \(temporary.path)")
        }
        guard rename(temporary.path, url.path) == 0 else { throw CoordinatorError(500, "backup_failed", "cannot move the backup to \(url.path)") }
        return (archive.count, Hex.encode(SHA256.hash(archive)))
    }

    /// Restores a backup into `directory`, which must be empty or absent, and
    /// verifies the audit chain of what was restored.
    public static func restore(from archive: BackupArchive, into directory: URL, now: Double) throws -> CoordinatorService {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.path) {
            guard (try fm.contentsOfDirectory(atPath: directory.path)).isEmpty else {
                throw CoordinatorError(409, "not_empty", "\(directory.path) is not empty; restore only into an empty or new directory")
            }
        } else {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        guard fm.createFile(atPath: directory.appendingPathComponent(signingKeyName).path, contents: Data(archive.signingKey), attributes: [.posixPermissions: 0o600]),
              fm.createFile(atPath: directory.appendingPathComponent(databaseName).path, contents: Data(archive.database), attributes: [.posixPermissions: 0o600])
        else { throw CoordinatorError(500, "restore_failed", "cannot write into \(directory.path)") }
        let service = try CoordinatorService(directory: directory)
        if let problem = try service.verifyAudit() {
            throw CoordinatorError(422, "audit_broken", "the restored audit log is not intact: \(problem)")
        }
        try service.recordOperatorAction("backup.restore", object: directory.lastPathComponent, now: now)
        return service
    }
}
