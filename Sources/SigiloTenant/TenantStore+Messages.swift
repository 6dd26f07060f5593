import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloPrivacy

/// Where a stored message came from.
public enum MessageSource: String, Sendable {
    /// A JSON Lines export (`import`), labelled.
    case export = "import"
    /// A WhatsApp chat export (`import --format whatsapp-export`), unlabelled.
    case chatExport = "whatsapp-export"
    /// `POST /v1/classify` on the live service, unlabelled until feedback.
    case service
    /// The WhatsApp Business Platform webhook, unlabelled until feedback.
    case webhook
}

extension TenantStore {
    /// What happened to a message offered to the store.
    public enum Admission: Equatable, Sendable {
        case stored
        /// The same message (same id) with no new label: nothing changed.
        case duplicate
        /// A stored message got its first label.
        case labelled
        /// A stored message's label was replaced.
        case corrected(previous: String)
        /// The customer has not consented (or withdrew): nothing kept.
        case noConsent
        /// The customer was forgotten: nothing kept until consent is granted again.
        case erased
    }

    /// Offers one redacted message to the store under the consent rules, in
    /// the caller's transaction if there is one.
    ///
    /// `consentStated`: what an export says of this customer's consent (an
    /// unknown customer stated as consenting is recorded so); nil for live
    /// messages, which are kept only for a customer whose consent is on record.
    /// `key` names the message (its id, or what identifies it in an export):
    /// the same key with another label is a correction.
    func admit(key: String, customer: String, redactedText: String, intent: String?, source: MessageSource,
               consentStated: Bool?, now: Double) throws -> Admission {
        let c = handle(customer: customer)
        let state = try customerState(c)
        if state?.erased == true { return .erased }
        guard state?.consent ?? consentStated ?? false, consentStated != false else { return .noConsent }
        let m = handle(message: key)
        var stored: (exists: Bool, intent: String?) = (false, nil)
        try database.run("SELECT intent FROM messages WHERE handle = ?", [.blob(m)]) { stored = (true, $0.isNull(0) ? nil : $0.text(0)) }
        if stored.exists {
            guard let intent, intent != stored.intent else { return .duplicate }
            try database.run("UPDATE messages SET intent = ?, labelled_at = ? WHERE handle = ?", [.text(intent), .real(now), .blob(m)])
            return stored.intent.map { .corrected(previous: $0) } ?? .labelled
        }
        if state == nil {
            try database.run("INSERT INTO customers(handle, sealed_id, consent, updated_at) VALUES (?, ?, 1, ?)",
                             [.blob(c), .blob(try cipher.seal(Array(customer.utf8), context: c)), .real(now)])
        }
        try database.run("INSERT INTO messages(handle, customer, sealed_text, intent, source, imported_at, labelled_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [.blob(m), .blob(c), .blob(try cipher.seal(Array(redactedText.utf8), context: c)),
                          intent.map { .text($0) } ?? .null, .text(source.rawValue), .real(now), intent == nil ? .null : .real(now)])
        return .stored
    }

    /// The outcome of an attendant's label for a message id.
    public enum Feedback: Equatable, Sendable {
        case labelled
        case corrected(previous: String)
        case unchanged
        /// No such message is stored: never kept (the customer did not consent,
        /// withdrew, was forgotten, or the unlabelled message expired).
        case notStored
    }

    /// Labels a stored message, only while its customer consents and is not erased.
    func label(key: String, intent: String, now: Double) throws -> Feedback {
        let m = handle(message: key)
        var stored: (exists: Bool, intent: String?) = (false, nil)
        try database.run("""
        SELECT m.intent FROM messages m JOIN customers c ON c.handle = m.customer
        WHERE m.handle = ? AND c.consent = 1 AND c.erased_at IS NULL
        """, [.blob(m)]) { stored = (true, $0.isNull(0) ? nil : $0.text(0)) }
        guard stored.exists else { return .notStored }
        guard stored.intent != intent else { return .unchanged }
        try database.run("UPDATE messages SET intent = ?, labelled_at = ? WHERE handle = ?", [.text(intent), .real(now), .blob(m)])
        return stored.intent.map { .corrected(previous: $0) } ?? .labelled
    }

    /// Deletes messages that waited for a label since before `cutoff`; returns how many.
    func deleteUnlabelled(before cutoff: Double) throws -> Int {
        try database.run("DELETE FROM messages WHERE intent IS NULL AND imported_at < ?", [.real(cutoff)])
    }

    // MARK: - Counters

    /// Adds `amount` to a counter kept across restarts (feedback discarded, say).
    func increment(_ counter: String, by amount: Int = 1) throws {
        try database.run("INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                         [.text(counter), .integer(Int64(amount))])
    }

    func counter(_ name: String) throws -> Int {
        var value = 0
        try database.run("SELECT value FROM counters WHERE name = ?", [.text(name)]) { value = Int($0.integer(0)) }
        return value
    }

    // MARK: - Agent tokens

    public struct AgentToken: Equatable, Sendable {
        public var name: String
        public var createdAt: Double
        public var revokedAt: Double?
    }

    /// Issues a bearer token for an agent calling `serve`: returned once, only its SHA-256 is kept.
    func createAgentToken(name: String, now: Double) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 64, name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw CLIError.usage("agent-token: NAME must be 1 to 64 printable ASCII characters without spaces")
        }
        var exists = false
        try database.run("SELECT 1 FROM agent_tokens WHERE name = ?", [.text(name)]) { _ in exists = true }
        guard !exists else { throw CLIError(.failure, "agent-token: a token named \"\(name)\" exists already (revoked tokens keep their name on record)") }
        let random = SecureRandom()
        var secret = [UInt8]()
        for _ in 0..<4 { withUnsafeBytes(of: random.next()) { secret += $0 } }
        let token = "sga_" + Hex.encode(secret)
        try database.run("INSERT INTO agent_tokens(name, digest, created_at) VALUES (?, ?, ?)",
                         [.text(name), .blob(SHA256.hash(Array(token.utf8))), .real(now)])
        return token
    }

    /// Revokes a token; false when there is no such live token.
    func revokeAgentToken(name: String, now: Double) throws -> Bool {
        try database.run("UPDATE agent_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", [.real(now), .text(name)]) > 0
    }

    func agentTokens() throws -> [AgentToken] {
        var out = [AgentToken]()
        try database.run("SELECT name, created_at, revoked_at FROM agent_tokens ORDER BY created_at") {
            out.append(AgentToken(name: $0.text(0), createdAt: $0.real(1), revokedAt: $0.isNull(2) ? nil : $0.real(2)))
        }
        return out
    }

    /// The live tokens' digests, by digest: what `serve` checks a bearer token against.
    func liveAgentTokenDigests() throws -> [[UInt8]: String] {
        var out = [[UInt8]: String]()
        try database.run("SELECT digest, name FROM agent_tokens WHERE revoked_at IS NULL") { out[$0.blob(0)] = $0.text(1) }
        return out
    }

    /// Changes whenever another connection (another command) committed: cheap enough to poll.
    func dataVersion() throws -> Int {
        var version = 0
        try database.run("PRAGMA data_version") { version = Int($0.integer(0)) }
        return version
    }
}
