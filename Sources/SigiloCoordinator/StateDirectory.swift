import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The coordinator's state directory as the operating system sees it: who may
/// read it (it holds the signing key, the TOTP secret and the running sum) and
/// which process serves it.
enum StateDirectory {
    static let lockName = "serve.lock"

    /// Files created by this process are private (0600, directories 0700): SQLite's
    /// WAL and shared-memory files appear while serving, and must not be left readable.
    static func restrictNewFiles() { umask(0o077) }

    /// Makes the directory 0700 and what is in it 0600 (`init`, also into a directory that existed).
    static func makePrivate(_ url: URL) throws {
        let fm = FileManager.default
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: url.path)
        for name in try fm.contentsOfDirectory(atPath: url.path) {
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: url.appendingPathComponent(name).path)
        }
    }

    /// What others may reach: the directory or a file in it open to group or
    /// others, with the command that fixes it; nil when private.
    static func exposure(_ url: URL) -> String? {
        func mode(_ path: String) -> mode_t? {
            var info = stat()
            return stat(path, &info) == 0 ? info.st_mode & 0o777 : nil
        }
        if let m = mode(url.path), m & 0o077 != 0 {
            return "\(url.path) is open to other users (mode \(String(m, radix: 8))): chmod 700 \(url.path)"
        }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? [] {
            let path = url.appendingPathComponent(name).path
            if let m = mode(path), m & 0o077 != 0 {
                return "\(path) is open to other users (mode \(String(m, radix: 8))): chmod 600 \(path)"
            }
        }
        return nil
    }

    /// Why the directory cannot be served, or a lock held until the process
    /// exits: one `serve` per state, and none while a command changes it.
    static func lockForServing(_ url: URL) throws -> Int32 {
        let fd = try lock(url, LOCK_EX) { holder in
            "\(url.path) is in use by \(holder): one 'serve' per state directory, and none while a command changes it"
        }
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return fd
    }

    /// Held while a command changes what a running server keeps in memory (a
    /// revocation ends its round, a plan its model): refused while `serve` runs.
    static func lockForChange(_ url: URL, command: String, instead: String) throws -> Int32 {
        try lock(url, LOCK_SH) { holder in
            "\(command): \(url.path) is being served by \(holder); its memory would not see this change. Use \(instead), or stop the server first"
        }
    }

    /// Takes `operation` (LOCK_EX or LOCK_SH) on the lock file without waiting; refused with `refusal(holder)`.
    private static func lock(_ url: URL, _ operation: Int32, refusal: (String) -> String) throws -> Int32 {
        let path = url.appendingPathComponent(lockName).path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StateLocked("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, operation | LOCK_NB) == 0 else {
            let holder = holderDescription(fd)
            close(fd)
            throw StateLocked(refusal(holder))
        }
        return fd
    }

    private static func holderDescription(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, buffer.count, 0)
        let pid = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
        return pid.isEmpty ? "another process" : "'sigilo-coordinator serve' (pid \(pid))"
    }
}

/// The state directory is locked by another process.
struct StateLocked: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
