import Foundation
import SigiloCrypto
import SigiloSQLite

/// One audit record: who (actor, role, address) did what (action) to what
/// (object), with which outcome, when. Never a secret, never update contents.
public struct AuditEntry: Sendable, Equatable {
    public var sequence: Int64
    public var time: Double
    public var actor: String
    public var role: String
    public var action: String
    public var object: String
    public var outcome: String
    public var address: String
    public var detail: String

    public init(sequence: Int64 = 0, time: Double, actor: String, role: String, action: String, object: String = "",
                outcome: String = "ok", address: String = "", detail: String = "") {
        self.sequence = sequence
        self.time = time
        self.actor = actor
        self.role = role
        self.action = action
        self.object = object
        self.outcome = outcome
        self.address = address
        self.detail = detail
    }

    /// Length-prefixed fields after a domain tag (protocol/AUDIT.md): no two
    /// different entries encode alike, whatever their text contains.
    func canonicalBytes() -> [UInt8] {
        var out = Array("sigilo-audit-v1".utf8)
        func append64(_ v: UInt64) { for i in (0..<8).reversed() { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        append64(UInt64(bitPattern: sequence))
        append64(time.bitPattern)
        for field in [actor, role, action, object, outcome, address, detail] {
            let bytes = Array(field.utf8)
            for i in (0..<4).reversed() { out.append(UInt8(truncatingIfNeeded: bytes.count >> (8 * i))) }
            out += bytes
        }
        return out
    }

    /// The chain link: SHA-256(previous hash || canonical bytes).
    public func chainHash(previous: [UInt8]) -> [UInt8] { SHA256.hash(previous + canonicalBytes()) }
}

/// The hash chain's rules, apart from storage: each entry's hash covers the
/// previous hash, so editing, deleting or reordering any entry breaks every
/// link after it; the signed head (the last sequence and hash, signed by the
/// coordinator's key) catches deletions at the end.
public enum AuditChain {
    public static let genesis = [UInt8](repeating: 0, count: 32)

    public struct Head: Sendable, Equatable {
        public var sequence: Int64
        public var hash: [UInt8]
    }

    /// Checks entries fed in sequence order; streaming, so a long log needs no memory.
    public struct Verifier {
        let signedHead: Head?
        private var previous = AuditChain.genesis
        private var expected: Int64 = 1
        private var headMatches = false
        public private(set) var problem: String?

        /// `start`: where the entries fed continue the chain (a signed cut, or
        /// the end of the previous archived segment); nil for the first entry.
        public init(signedHead: Head?, start: Head? = nil) {
            self.signedHead = signedHead
            if let start {
                previous = start.hash
                expected = start.sequence + 1
            }
        }

        /// The last entry checked (or the start).
        public var last: Head { Head(sequence: expected - 1, hash: previous) }

        public mutating func feed(_ entry: AuditEntry, hash recorded: [UInt8]) {
            guard problem == nil else { return }
            guard entry.sequence == expected else {
                problem = entry.sequence > expected
                    ? "entry \(expected) is missing (the next entry is \(entry.sequence))"
                    : "entry \(entry.sequence) is out of order (expected \(expected))"
                return
            }
            let computed = entry.chainHash(previous: previous)
            guard computed == recorded else {
                problem = "entry \(entry.sequence) was altered (its hash does not match its contents and predecessor)"
                return
            }
            if entry.sequence == signedHead?.sequence { headMatches = computed == signedHead?.hash }
            previous = computed
            expected += 1
        }

        /// The first problem, naming the entry, or nil when the chain is intact.
        public func finish() -> String? {
            if let problem { return problem }
            guard let signedHead, signedHead.sequence > 0 else { return nil }
            guard signedHead.sequence < expected else {
                return "entries \(expected)...\(signedHead.sequence) were deleted (the signed head records \(signedHead.sequence) entries)"
            }
            return headMatches ? nil : "entry \(signedHead.sequence) does not match the signed head"
        }
    }

    /// A signed head as an auditor keeps it: the entry count, the last hash
    /// and the coordinator's signature over both. A later log that still
    /// holds that entry with that hash extends it (no rollback, no rewrite of
    /// what the checkpoint covered: Certificate Transparency's consistency idea
    /// on a hash chain).
    public struct Checkpoint: Sendable, Equatable {
        public var head: Head
        public var signature: [UInt8]

        public func isSigned(by publicKey: [UInt8]) -> Bool {
            Ed25519.verify(signature: signature, message: AuditChain.headMessage(head), publicKey: publicKey)
        }

        /// `{"sequence": N, "hash": "hex", "signature": "hex"}`, one line.
        public var json: String {
            "{\"sequence\":\(head.sequence),\"hash\":\"\(Hex.encode(head.hash))\",\"signature\":\"\(Hex.encode(signature))\"}"
        }

        public init(head: Head, signature: [UInt8]) {
            self.head = head
            self.signature = signature
        }

        /// Reads `json`'s form; nil names nothing, so callers say which file.
        public init?(json data: Data) {
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let sequence = (object["sequence"] as? NSNumber)?.int64Value, sequence >= 0,
                  let hash = (object["hash"] as? String).flatMap(Hex.decode), hash.count == 32,
                  let signature = (object["signature"] as? String).flatMap(Hex.decode), signature.count == 64 else { return nil }
            self.init(head: Head(sequence: sequence, hash: hash), signature: signature)
        }
    }

    /// The message the coordinator signs for a head.
    static func headMessage(_ head: Head) -> [UInt8] { Array("sigilo-audit-head-v1\n\(head.sequence)\n\(Hex.encode(head.hash))".utf8) }

    /// The message the coordinator signs for a cut: the last entry archived out of the table.
    static func cutMessage(_ cut: Head) -> [UInt8] { Array("sigilo-audit-cut-v1\n\(cut.sequence)\n\(Hex.encode(cut.hash))".utf8) }
}

/// The audit log inside the coordinator's database, with its signed head in
/// the same database, written in the same transaction as the entries it
/// covers: no crash leaves an entry beyond the signed head, so one there was
/// added by someone without the coordinator's key, and nothing is appended
/// after it. Callers serialise access (the service's lock); a final class for
/// the one head this process signed last.
final class AuditStore {
    /// Where states before schema 6 kept the signed head (a file beside the database).
    static let legacyHeadName = "audit.head"
    let database: Database
    let key: Ed25519.KeyPair
    /// The head this process signed last: a stored head equal to it needs no
    /// signature check before the next append.
    private var lastSigned: AuditChain.Head?

    init(database: Database, key: Ed25519.KeyPair) {
        self.database = database
        self.key = key
    }

    static let schema = """
        CREATE TABLE audit_log(sequence INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
            action TEXT NOT NULL, object TEXT NOT NULL, outcome TEXT NOT NULL, address TEXT NOT NULL, detail TEXT NOT NULL,
            hash BLOB NOT NULL);
        """

    /// Where archived entries were cut from the table (retention): the last
    /// archived entry's sequence and hash, signed by the coordinator's key.
    static let cutSchema = "CREATE TABLE audit_cut(id INTEGER PRIMARY KEY CHECK(id = 1), sequence INTEGER NOT NULL, hash BLOB NOT NULL, signature BLOB NOT NULL);"

    /// The last entry's sequence and hash, signed by the coordinator's key (schema 6).
    static let headSchema = "CREATE TABLE audit_head(id INTEGER PRIMARY KEY CHECK(id = 1), sequence INTEGER NOT NULL, hash BLOB NOT NULL, signature BLOB NOT NULL);"

    /// The last entry: in the table, or the cut when everything was archived, or the genesis.
    func head() throws -> AuditChain.Head {
        var head: AuditChain.Head?
        try database.run("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1") {
            head = AuditChain.Head(sequence: $0.integer(0), hash: $0.blob(1))
        }
        return try head ?? cut() ?? AuditChain.Head(sequence: 0, hash: AuditChain.genesis)
    }

    /// The signed cut, or nil when nothing was archived; throws when its signature does not verify.
    func cut() throws -> AuditChain.Head? {
        var row: (AuditChain.Head, [UInt8])?
        try database.run("SELECT sequence, hash, signature FROM audit_cut WHERE id = 1") {
            row = (AuditChain.Head(sequence: $0.integer(0), hash: $0.blob(1)), $0.blob(2))
        }
        guard let (cut, signature) = row else { return nil }
        guard Ed25519.verify(signature: signature, message: AuditChain.cutMessage(cut), publicKey: key.publicKey) else {
            throw CoordinatorError(500, "audit_cut", "the audit log's cut point (entry \(cut.sequence)) is not signed by this coordinator's key")
        }
        return cut
    }

    /// Moves entries up to `head` out of the table (the caller wrote them to a
    /// segment and holds a transaction): records the signed cut, then deletes them.
    func cut(through head: AuditChain.Head) throws {
        let signature = try key.sign(AuditChain.cutMessage(head))
        try database.run("INSERT OR REPLACE INTO audit_cut(id, sequence, hash, signature) VALUES (1, ?, ?, ?)",
                         [.integer(head.sequence), .blob(head.hash), .blob(signature)])
        try database.run("DELETE FROM audit_log WHERE sequence <= ?", [.integer(head.sequence)])
    }

    /// The stored signed head, unverified; nil before the first entry.
    private func storedCheckpoint() throws -> AuditChain.Checkpoint? {
        var checkpoint: AuditChain.Checkpoint?
        try database.run("SELECT sequence, hash, signature FROM audit_head WHERE id = 1") {
            checkpoint = AuditChain.Checkpoint(head: AuditChain.Head(sequence: $0.integer(0), hash: $0.blob(1)), signature: $0.blob(2))
        }
        return checkpoint
    }

    /// The signed head, or nil when the log was never written; throws when its signature does not verify.
    func checkpoint() throws -> AuditChain.Checkpoint? {
        guard let checkpoint = try storedCheckpoint() else { return nil }
        guard checkpoint.isSigned(by: key.publicKey) else {
            throw CoordinatorError(500, "audit_head", "the audit log's signed head (entry \(checkpoint.head.sequence)) is not signed by this coordinator's key")
        }
        return checkpoint
    }

    /// Signs `head` as the log's head, in the caller's transaction.
    func sign(_ head: AuditChain.Head) throws {
        try database.run("INSERT OR REPLACE INTO audit_head(id, sequence, hash, signature) VALUES (1, ?, ?, ?)",
                         [.integer(head.sequence), .blob(head.hash), .blob(try key.sign(AuditChain.headMessage(head)))])
        lastSigned = head
    }

    /// Appends in the caller's transaction, or in one of their own, and signs
    /// the new head in the same transaction. Refuses when the log does not end
    /// at its signed head: entries there were not written by this coordinator,
    /// and signing over them would vouch for them.
    @discardableResult
    func append(_ entries: [AuditEntry]) throws -> AuditChain.Head {
        guard database.inTransaction else { return try database.transaction { try append(entries) } }
        var head = try head()
        let stored = try storedCheckpoint()
        if head.sequence > 0 || stored != nil {
            guard let stored, stored.head == head else {
                throw CoordinatorError(500, "audit_unsigned", "the audit log does not end at its signed head (\(Self.describe(head, stored?.head))); "
                                       + "nothing more is appended: run 'sigilo-coordinator audit verify'")
            }
            if stored.head != lastSigned, !stored.isSigned(by: key.publicKey) {
                throw CoordinatorError(500, "audit_head", "the audit log's signed head (entry \(stored.head.sequence)) is not signed by this coordinator's key")
            }
        }
        for var entry in entries {
            entry.sequence = head.sequence + 1
            let hash = entry.chainHash(previous: head.hash)
            try database.run("""
                INSERT INTO audit_log(sequence, time, actor, role, action, object, outcome, address, detail, hash)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, [.integer(entry.sequence), .real(entry.time), .text(entry.actor), .text(entry.role), .text(entry.action),
                      .text(entry.object), .text(entry.outcome), .text(entry.address), .text(entry.detail), .blob(hash)])
            head = AuditChain.Head(sequence: entry.sequence, hash: hash)
        }
        try sign(head)
        return head
    }

    static func describe(_ head: AuditChain.Head, _ signed: AuditChain.Head?) -> String {
        guard let signed else { return "entries 1...\(head.sequence) and no signed head" }
        if head.sequence > signed.sequence { return "entries \(signed.sequence + 1)...\(head.sequence) follow the signed head, entry \(signed.sequence)" }
        if head.sequence < signed.sequence { return "the log ends at entry \(head.sequence), the signed head is entry \(signed.sequence)" }
        return "entry \(head.sequence) does not match the signed head"
    }

    /// Schema 6: the signed head moves from `audit.head` into the database.
    /// The old file was signed after each commit, so a crash could leave an
    /// unsigned tail, which the old start-up accepted when it chained; the
    /// move accepts the same (after checking the whole chain once) and signs
    /// the head in the database. Returns the legacy file to delete after commit.
    func adoptLegacyHead(in directory: URL) throws -> URL? {
        let url = directory.appendingPathComponent(Self.legacyHeadName)
        var legacy: AuditChain.Head?
        if let text = try? String(contentsOf: url, encoding: .utf8) {
            let fields = text.split(whereSeparator: \.isWhitespace)
            guard fields.count == 3, let sequence = Int64(fields[0]), let hash = Hex.decode(String(fields[1])), hash.count == 32,
                  let signature = Hex.decode(String(fields[2])),
                  Ed25519.verify(signature: signature, message: AuditChain.headMessage(AuditChain.Head(sequence: sequence, hash: hash)),
                                 publicKey: key.publicKey) else {
                throw CoordinatorError(500, "audit_head", "\(url.path) is garbled or not signed by this coordinator's key; the audit log cannot be upgraded")
            }
            legacy = AuditChain.Head(sequence: sequence, hash: hash)
        }
        let start = try cut()
        var verifier = AuditChain.Verifier(signedHead: legacy, start: start)
        try forEach(after: start?.sequence ?? 0) { verifier.feed($0, hash: $1) }
        if let problem = verifier.finish() {
            throw CoordinatorError(500, "audit_broken", "the audit log is not intact (\(problem)); it cannot be upgraded")
        }
        let head = try head()
        if head.sequence > 0 { try sign(head) }
        return legacy == nil ? nil : url
    }

    /// Entries with sequence > `after`, at most `limit`, in order.
    func entries(after: Int64 = 0, limit: Int = Int.max) throws -> [(entry: AuditEntry, hash: [UInt8])] {
        var out = [(entry: AuditEntry, hash: [UInt8])]()
        try forEach(after: after, limit: limit) { out.append(($0, $1)) }
        return out
    }

    /// Streams entries with sequence > `after` (at most `limit`), in order, without holding them.
    func forEach(after: Int64 = 0, limit: Int = Int.max, _ body: (AuditEntry, [UInt8]) throws -> Void) throws {
        try withoutActuallyEscaping(body) { body in
            try database.run("""
                SELECT sequence, time, actor, role, action, object, outcome, address, detail, hash FROM audit_log
                WHERE sequence > ? ORDER BY sequence LIMIT ?
                """, [.integer(after), .integer(Int64(min(limit, Int(Int64.max))))]) {
                try body(Self.entry($0), $0.blob(9))
            }
        }
    }

    /// The signed head and the signed cut, or the first whose signature fails.
    private func signedEnds() throws -> Result<(head: AuditChain.Head?, cut: AuditChain.Head?), CoordinatorError> {
        do { return .success((try checkpoint()?.head, try cut())) } catch let e as CoordinatorError { return .failure(e) }
    }

    /// Verifies the whole chain in the table, from the signed cut (or the
    /// first entry) to the signed head, and that nothing follows the signed
    /// head: nil when intact. Streams: memory does not grow with the log.
    func verify() throws -> String? {
        let signed: AuditChain.Head?, start: AuditChain.Head?
        switch try signedEnds() {
        case .failure(let problem): return problem.message
        case .success(let ends): (signed, start) = ends
        }
        var verifier = AuditChain.Verifier(signedHead: signed, start: start)
        try forEach(after: start?.sequence ?? 0) { verifier.feed($0, hash: $1) }
        if let problem = verifier.finish() { return problem }
        return beyond(signed, last: verifier.last)
    }

    /// Entries after the signed head (or any entry with none) were appended without the key.
    private func beyond(_ signed: AuditChain.Head?, last: AuditChain.Head) -> String? {
        guard last.sequence > (signed?.sequence ?? 0) else { return nil }
        return "\(Self.describe(last, signed)): they were appended without the coordinator's key"
    }

    /// What `serve` checks at start, in time independent of the log's length:
    /// the cut's and the head's signatures, the first entry after the cut, the
    /// stored entry at the signed head, and that nothing follows it. The whole
    /// chain is `verify()`'s job.
    func verifyEnds() throws -> String? {
        let signed: AuditChain.Head?, start: AuditChain.Head?
        switch try signedEnds() {
        case .failure(let problem): return problem.message
        case .success(let ends): (signed, start) = ends
        }
        guard let head = signed else { return try verify() } // never signed: an empty log, or entries nobody signed
        var first = AuditChain.Verifier(signedHead: nil, start: start)
        try forEach(after: start?.sequence ?? 0, limit: 1) { first.feed($0, hash: $1) }
        if let problem = first.problem { return problem }
        if head.sequence > (start?.sequence ?? 0) {
            // The head entry's hash recomputed from its contents and its predecessor's recorded hash.
            var predecessor = start ?? AuditChain.Head(sequence: 0, hash: AuditChain.genesis)
            if head.sequence - 1 > predecessor.sequence {
                try database.run("SELECT hash FROM audit_log WHERE sequence = ?", [.integer(head.sequence - 1)]) {
                    predecessor = AuditChain.Head(sequence: head.sequence - 1, hash: $0.blob(0))
                }
            }
            var atHead = AuditChain.Verifier(signedHead: head, start: predecessor)
            try forEach(after: head.sequence - 1, limit: 1) { atHead.feed($0, hash: $1) }
            guard atHead.last.sequence == head.sequence else { return "entry \(head.sequence), the signed head, is missing" }
            if let problem = atHead.finish() { return problem }
        } else if head != start {
            return "the signed head (entry \(head.sequence)) is not the cut point (entry \(start?.sequence ?? 0))"
        }
        return beyond(head, last: try self.head())
    }

    /// The recorded hash of entry `sequence` while it is in the table.
    func recordedHash(of sequence: Int64) throws -> [UInt8]? {
        var hash: [UInt8]?
        try database.run("SELECT hash FROM audit_log WHERE sequence = ?", [.integer(sequence)]) { hash = $0.blob(0) }
        return hash
    }

    static func entry(_ row: Database.Row) -> AuditEntry {
        AuditEntry(sequence: row.integer(0), time: row.real(1), actor: row.text(2), role: row.text(3), action: row.text(4),
                   object: row.text(5), outcome: row.text(6), address: row.text(7), detail: row.text(8))
    }
}

/// Archived segments and exports: JSON Lines, one entry per line with its
/// chain hash (CoordinatorRoutes.auditJSON), read back for verification.
public enum AuditSegment {
    /// One line back as an entry and its recorded hash; the error names the field.
    static func parse(_ line: String) throws -> (AuditEntry, [UInt8]) {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
            throw CoordinatorError(400, "bad_segment", "not a JSON object")
        }
        func text(_ name: String) throws -> String {
            guard let value = object[name] as? String else { throw CoordinatorError(400, "bad_segment", "\"\(name)\" must be a string") }
            return value
        }
        guard let sequence = object["sequence"] as? Int, sequence > 0 else { throw CoordinatorError(400, "bad_segment", "\"sequence\" must be an integer > 0") }
        // The chain covers the time's exact bits: read its digits with Double(String), which round-trips what
        // JSON.format wrote (Foundation's JSON numbers do not always come back bit for bit).
        guard object["time"] is NSNumber, let time = literal(of: "time", in: line).flatMap(Double.init) else {
            throw CoordinatorError(400, "bad_segment", "\"time\" must be a number")
        }
        guard let hash = Hex.decode(try text("hash")), hash.count == 32 else { throw CoordinatorError(400, "bad_segment", "\"hash\" must be 64 hex digits") }
        let entry = AuditEntry(sequence: Int64(sequence), time: time, actor: try text("actor"), role: try text("role"), action: try text("action"),
                               object: try text("object"), outcome: try text("outcome"), address: try text("address"), detail: try text("detail"))
        return (entry, hash)
    }

    /// The text of a top-level number field in a line that JSON.rendered wrote ("name":DIGITS).
    static func literal(of name: String, in line: String) -> String? {
        guard let key = line.range(of: "\"\(name)\":") else { return nil }
        let rest = line[key.upperBound...]
        return String(rest.prefix { $0 != "," && $0 != "}" }).trimmingCharacters(in: .whitespaces)
    }

    /// Verifies segment files in order as one chain from the first entry, and
    /// that it ends exactly at `cut` (where the table's chain begins). Reads line
    /// by line. Nil when intact, else the file, line and problem.
    /// `visit` sees each entry that chained (its sequence and recorded hash).
    public static func verify(_ paths: [String], endingAt cut: AuditChain.Head?,
                              visit: (AuditChain.Head) -> Void = { _ in }) throws -> String? {
        var last: AuditChain.Head?
        for path in paths {
            guard let handle = FileHandle(forReadingAtPath: path) else { return "\(path): cannot be read" }
            defer { try? handle.close() }
            var verifier = AuditChain.Verifier(signedHead: nil, start: last)
            var lineNumber = 0, pending = Data()
            func feed(_ line: Data) throws -> String? {
                lineNumber += 1
                guard !line.isEmpty else { return nil }
                let (entry, hash) = try parse(String(decoding: line, as: UTF8.self))
                verifier.feed(entry, hash: hash)
                if let problem = verifier.problem { return "\(path):\(lineNumber): \(problem)" }
                visit(AuditChain.Head(sequence: entry.sequence, hash: hash))
                return nil
            }
            do {
                while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                    pending.append(chunk)
                    while let newline = pending.firstIndex(of: 0x0a) {
                        if let problem = try feed(pending[pending.startIndex..<newline]) { return problem }
                        pending = pending[(newline + 1)...]
                    }
                }
                if let problem = try feed(pending) { return problem }
            } catch let e as CoordinatorError {
                return "\(path):\(lineNumber): \(e.message)"
            }
            last = verifier.last
        }
        guard let cut else { return last == nil ? nil : "segments were given but the log has no cut point: nothing was archived from it" }
        guard let last, last == cut else {
            return "the segments end at entry \(last?.sequence ?? 0), but the log was cut at entry \(cut.sequence): a segment is missing or is not this log's"
        }
        return nil
    }
}
