import Foundation
internal import CSQLite

/// A database failure, with SQLite's own message.
public struct DatabaseError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A thin, strict SQLite wrapper: WAL journal, `synchronous=FULL` (an
/// acknowledged update survives a crash or a power cut), bound parameters
/// only, explicit transactions. Not thread-safe: the owner serialises access.
public final class Database {
    private var handle: OpaquePointer?

    /// Opens (creating if needed) the database at `path`. `pageSize` applies
    /// only when the file is created (SQLite cannot change it in WAL mode).
    public init(path: String, pageSize: Int? = nil) throws {
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        guard sqlite3_open_v2(path, &handle, flags, nil) == SQLITE_OK else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close(handle)
            throw DatabaseError("cannot open \(path): \(message)")
        }
        sqlite3_busy_timeout(handle, 5000)
        if let pageSize { try execute("PRAGMA page_size=\(pageSize)") }
        try execute("PRAGMA journal_mode=WAL")
        try execute("PRAGMA synchronous=FULL")
        try execute("PRAGMA foreign_keys=ON")
    }

    deinit { sqlite3_close_v2(handle) }

    /// Runs SQL without parameters (schema, pragmas).
    public func execute(_ sql: String) throws {
        var error: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &error) == SQLITE_OK else {
            let message = error.map { String(cString: $0) } ?? "unknown error"
            sqlite3_free(error)
            throw DatabaseError("\(message) (in: \(sql.prefix(60)))")
        }
    }

    /// One SQL statement with bound parameters; rows are read with `Row`.
    @discardableResult
    public func run(_ sql: String, _ parameters: [Value] = [], row: ((Row) throws -> Void)? = nil) throws -> Int {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK else {
            throw DatabaseError("\(String(cString: sqlite3_errmsg(handle))) (in: \(sql.prefix(60)))")
        }
        defer { sqlite3_finalize(statement) }
        for (i, value) in parameters.enumerated() {
            let index = Int32(i + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(statement, index)
            case .integer(let v): rc = sqlite3_bind_int64(statement, index, v)
            case .real(let v): rc = sqlite3_bind_double(statement, index, v)
            case .text(let v): rc = sqlite3_bind_text(statement, index, v, -1, Self.transient)
            case .blob(let v) where v.isEmpty: rc = sqlite3_bind_zeroblob64(statement, index, 0) // a null pointer would bind NULL
            case .blob(let v): rc = v.withUnsafeBytes { sqlite3_bind_blob64(statement, index, $0.baseAddress, UInt64($0.count), Self.transient) }
            case .zeroBlob(let count): rc = sqlite3_bind_zeroblob64(statement, index, UInt64(count))
            }
            guard rc == SQLITE_OK else { throw DatabaseError("cannot bind parameter \(index): \(String(cString: sqlite3_errmsg(handle)))") }
        }
        while true {
            let rc = sqlite3_step(statement)
            if rc == SQLITE_DONE { break }
            guard rc == SQLITE_ROW else { throw DatabaseError("\(String(cString: sqlite3_errmsg(handle))) (in: \(sql.prefix(60)))") }
            try row?(Row(statement: statement))
        }
        return Int(sqlite3_changes(handle))
    }

    /// Runs `body` in one IMMEDIATE transaction: all of it commits, or none.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            try? execute("ROLLBACK")
            throw error
        }
    }

    /// Overwrites, in place, the whole blob in `column` of `table`'s row
    /// `rowid`, which must already have exactly `bytes.count` bytes (from a
    /// `zeroBlob`, say). Unlike an UPDATE, the bytes are not copied into
    /// SQLite's heap first and the row's pages are not freed and reallocated.
    public func overwriteBlob(table: String, column: String, rowid: Int64, with bytes: UnsafeRawBufferPointer) throws {
        var blob: OpaquePointer?
        guard sqlite3_blob_open(handle, "main", table, column, rowid, 1, &blob) == SQLITE_OK else {
            let message = String(cString: sqlite3_errmsg(handle))
            sqlite3_blob_close(blob)
            throw DatabaseError("cannot open \(table).\(column) of row \(rowid): \(message)")
        }
        defer { sqlite3_blob_close(blob) }
        let stored = Int(sqlite3_blob_bytes(blob))
        guard stored == bytes.count, bytes.count <= Int(Int32.max) else {
            throw DatabaseError("\(table).\(column) of row \(rowid) holds \(stored) bytes, not \(bytes.count)")
        }
        guard bytes.isEmpty || sqlite3_blob_write(blob, bytes.baseAddress, Int32(bytes.count), 0) == SQLITE_OK else {
            throw DatabaseError("cannot write \(table).\(column) of row \(rowid): \(String(cString: sqlite3_errmsg(handle)))")
        }
    }

    /// True inside `transaction` (SQLite is not in autocommit mode).
    public var inTransaction: Bool { sqlite3_get_autocommit(handle) == 0 }

    /// The schema version (`PRAGMA user_version`).
    public var userVersion: Int {
        get throws {
            var version = 0
            try run("PRAGMA user_version") { version = Int($0.integer(0)) }
            return version
        }
    }

    /// A consistent copy of the database into `path` (online backup API).
    public func backup(to path: String) throws {
        var destination: OpaquePointer?
        guard sqlite3_open(path, &destination) == SQLITE_OK else { throw DatabaseError("cannot create \(path)") }
        defer { sqlite3_close(destination) }
        guard let backup = sqlite3_backup_init(destination, "main", handle, "main") else {
            throw DatabaseError("backup: \(String(cString: sqlite3_errmsg(destination)))")
        }
        sqlite3_backup_step(backup, -1)
        guard sqlite3_backup_finish(backup) == SQLITE_OK else { throw DatabaseError("backup failed") }
    }

    public enum Value {
        case null
        case integer(Int64)
        case real(Double)
        case text(String)
        case blob([UInt8])
        /// `count` zero bytes, reserved without building them in memory.
        case zeroBlob(Int)
    }

    public struct Row {
        let statement: OpaquePointer?
        public var columnCount: Int32 { sqlite3_column_count(statement) }
        public func integer(_ column: Int32) -> Int64 { sqlite3_column_int64(statement, column) }
        public func real(_ column: Int32) -> Double { sqlite3_column_double(statement, column) }
        public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(statement, column) == SQLITE_NULL }
        public func text(_ column: Int32) -> String {
            guard let p = sqlite3_column_text(statement, column) else { return "" }
            return String(cString: p)
        }
        public func blob(_ column: Int32) -> [UInt8] {
            let count = Int(sqlite3_column_bytes(statement, column))
            guard count > 0, let p = sqlite3_column_blob(statement, column) else { return [] }
            return Array(UnsafeRawBufferPointer(start: p, count: count))
        }
    }

    /// SQLite copies bound values before returning (SQLITE_TRANSIENT, a macro Swift cannot import).
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
}
