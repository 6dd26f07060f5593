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
    func chainHash(previous: [UInt8]) -> [UInt8] { SHA256.hash(previous + canonicalBytes()) }
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

        public init(signedHead: Head?) { self.signedHead = signedHead }

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

    /// The message the coordinator signs for a head.
    static func headMessage(_ head: Head) -> [UInt8] { Array("sigilo-audit-head-v1\n\(head.sequence)\n\(Hex.encode(head.hash))".utf8) }
}

/// The audit log inside the coordinator's database, and its signed head in
/// `audit.head` beside it. Callers serialise access (the service's lock).
struct AuditStore {
    static let headName = "audit.head"
    let database: Database
    let headURL: URL
    let key: Ed25519.KeyPair

    static let schema = """
        CREATE TABLE audit_log(sequence INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
            action TEXT NOT NULL, object TEXT NOT NULL, outcome TEXT NOT NULL, address TEXT NOT NULL, detail TEXT NOT NULL,
            hash BLOB NOT NULL);
        """

    func head() throws -> AuditChain.Head {
        var head = AuditChain.Head(sequence: 0, hash: AuditChain.genesis)
        try database.run("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1") {
            head = AuditChain.Head(sequence: $0.integer(0), hash: $0.blob(1))
        }
        return head
    }

    /// Appends within the caller's transaction, or in one of its own: reading
    /// the head and inserting after it must be atomic, since the CLI and the
    /// server may append from two processes.
    @discardableResult
    func append(_ entry: AuditEntry) throws -> AuditChain.Head {
        guard database.inTransaction else { return try database.transaction { try append(entry) } }
        let previous = try head()
        var entry = entry
        entry.sequence = previous.sequence + 1
        let hash = entry.chainHash(previous: previous.hash)
        try database.run("""
            INSERT INTO audit_log(sequence, time, actor, role, action, object, outcome, address, detail, hash)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.integer(entry.sequence), .real(entry.time), .text(entry.actor), .text(entry.role), .text(entry.action),
                  .text(entry.object), .text(entry.outcome), .text(entry.address), .text(entry.detail), .blob(hash)])
        return AuditChain.Head(sequence: entry.sequence, hash: hash)
    }

    /// Signs the committed head into `audit.head` (written aside and renamed).
    func checkpoint() throws {
        let head = try head()
        let signature = try key.sign(AuditChain.headMessage(head))
        let text = "\(head.sequence) \(Hex.encode(head.hash)) \(Hex.encode(signature))\n"
        let temporary = headURL.appendingPathExtension("tmp")
        guard FileManager.default.createFile(atPath: temporary.path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CoordinatorError(500, "audit_head", "cannot write \(temporary.path)")
        }
        guard rename(temporary.path, headURL.path) == 0 else { throw CoordinatorError(500, "audit_head", "cannot replace \(headURL.path)") }
    }

    /// The head as last signed, or nil when none was written; throws when the file is forged or garbled.
    func signedHead() throws -> AuditChain.Head? {
        guard let text = try? String(contentsOf: headURL, encoding: .utf8) else { return nil }
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 3, let sequence = Int64(fields[0]), let hash = Hex.decode(String(fields[1])), hash.count == 32,
              let signature = Hex.decode(String(fields[2])) else {
            throw CoordinatorError(500, "audit_head", "\(headURL.path) is garbled")
        }
        let head = AuditChain.Head(sequence: sequence, hash: hash)
        guard Ed25519.verify(signature: signature, message: AuditChain.headMessage(head), publicKey: key.publicKey) else {
            throw CoordinatorError(500, "audit_head", "\(headURL.path) is not signed by this coordinator's key")
        }
        return head
    }

    /// Entries with sequence > `after`, at most `limit`, in order.
    func entries(after: Int64 = 0, limit: Int = Int.max) throws -> [(entry: AuditEntry, hash: [UInt8])] {
        var out = [(entry: AuditEntry, hash: [UInt8])]()
        try database.run("""
            SELECT sequence, time, actor, role, action, object, outcome, address, detail, hash FROM audit_log
            WHERE sequence > ? ORDER BY sequence LIMIT ?
            """, [.integer(after), .integer(Int64(min(limit, Int(Int64.max))))]) {
            out.append((Self.entry($0), $0.blob(9)))
        }
        return out
    }

    /// Verifies the whole chain against the signed head: nil when intact.
    func verify() throws -> String? {
        let head: AuditChain.Head?
        do { head = try signedHead() } catch let e as CoordinatorError { return e.message }
        var verifier = AuditChain.Verifier(signedHead: head)
        try database.run("""
            SELECT sequence, time, actor, role, action, object, outcome, address, detail, hash FROM audit_log ORDER BY sequence
            """) { verifier.feed(Self.entry($0), hash: $0.blob(9)) }
        return verifier.finish()
    }

    static func entry(_ row: Database.Row) -> AuditEntry {
        AuditEntry(sequence: row.integer(0), time: row.real(1), actor: row.text(2), role: row.text(3), action: row.text(4),
                   object: row.text(5), outcome: row.text(6), address: row.text(7), detail: row.text(8))
    }
}
