import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloFederation
import SigiloPrivacy
import SigiloSQLite

/// The tenant's local state: its conversation store, consent and erasure
/// records, privacy ledger, cached models and settings, in a directory only
/// the operator may read.
///
/// Message texts and customer identifiers are stored sealed with AES-256-GCM
/// under the operator's key (the customer's keyed hash is authenticated with
/// each ciphertext, so sealed values cannot be moved between customers).
/// Customers and messages are found by HMAC-SHA256 of their identifiers under
/// a key derived from the same secret: the store never holds an identifier in
/// the clear, and without the key it cannot be linked to anyone.
public final class TenantStore {
    public static let databaseName = "tenant.sqlite"
    public static let identityName = "identity.key"
    static let schemaVersion = 7
    static let keyCheckPlaintext = Array("sigilo-tenant-key-check-v1".utf8)

    let directory: URL
    let database: Database
    let cipher: AES256GCM
    let lookupKey: [UInt8]

    /// Opens an existing state directory with the operator's 32-byte key.
    public init(directory: URL, key: [UInt8]) throws {
        self.directory = directory
        try Self.checkPermissions(directory)
        guard FileManager.default.fileExists(atPath: directory.appendingPathComponent(Self.databaseName).path) else {
            throw CLIError(.noInput, "\(directory.path) holds no tenant state; run 'sigilo-tenant init --state \(directory.path) --key-file FILE' first")
        }
        cipher = try AES256GCM(key: key)
        lookupKey = HMACSHA256.authenticate(Array("sigilo-lookup-v1".utf8), key: key)
        do { database = try Database(path: directory.appendingPathComponent(Self.databaseName).path) } catch {
            throw CLIError(.dataError, "tenant store in \(directory.path) cannot be opened (corrupted?): \(error)")
        }
        try migrate()
        var check: [UInt8]?
        do {
            try database.run("SELECT sealed FROM key_check WHERE id = 1") { check = $0.blob(0) }
        } catch { throw CLIError(.dataError, "tenant store in \(directory.path) is corrupted: \(error)") }
        guard let check else { throw CLIError(.dataError, "tenant store in \(directory.path) has no key check: corrupted") }
        guard (try? cipher.open(check)) == Self.keyCheckPlaintext else {
            throw CLIError(.refused, "wrong encryption key for the tenant store in \(directory.path)")
        }
    }

    /// Creates a state directory (mode 0700) with a new Ed25519 identity (0600) and an empty store.
    public static func create(directory: URL, key: [UInt8], maximumEpsilon: Double) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.appendingPathComponent(databaseName).path) {
            throw CLIError(.failure, "\(directory.path) already holds tenant state; refusing to overwrite it")
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try fm.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory.path)
        let identity = try Ed25519.KeyPair.generate()
        let identityURL = directory.appendingPathComponent(identityName)
        guard fm.createFile(atPath: identityURL.path, contents: Data(Hex.encode(identity.privateKey).utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CLIError(.ioError, "cannot write \(identityURL.path)")
        }
        let store = try TenantStore(directory: directory, key: key, creating: true)
        try store.database.run("INSERT INTO key_check(id, sealed) VALUES (1, ?)", [.blob(try store.cipher.seal(keyCheckPlaintext))])
        try store.setSetting("max_epsilon", String(maximumEpsilon))
        for file in try fm.contentsOfDirectory(atPath: directory.path) {
            try fm.setAttributes([.posixPermissions: 0o600], ofItemAtPath: directory.appendingPathComponent(file).path)
        }
    }

    private init(directory: URL, key: [UInt8], creating: Bool) throws {
        self.directory = directory
        cipher = try AES256GCM(key: key)
        lookupKey = HMACSHA256.authenticate(Array("sigilo-lookup-v1".utf8), key: key)
        database = try Database(path: directory.appendingPathComponent(Self.databaseName).path)
        try migrate()
    }

    /// Refuses a directory (or identity file) that group or others can access.
    static func checkPermissions(_ directory: URL) throws {
        func mode(_ path: String) -> Int? {
            (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int
        }
        guard let dirMode = mode(directory.path) else { throw CLIError(.noInput, "no tenant state directory at \(directory.path)") }
        guard dirMode & 0o077 == 0 else {
            throw CLIError(.refused, "\(directory.path) is accessible by group or others (mode \(String(dirMode, radix: 8))); run: chmod 700 \(directory.path)")
        }
        let identity = directory.appendingPathComponent(identityName).path
        if let m = mode(identity), m & 0o077 != 0 {
            throw CLIError(.refused, "\(identity) is accessible by group or others (mode \(String(m, radix: 8))); run: chmod 600 \(identity)")
        }
    }

    private func migrate() throws {
        let version = try database.userVersion
        guard version <= Self.schemaVersion else { throw CLIError(.dataError, "tenant store was written by a newer Sigilo (schema \(version))") }
        if version < 1 { try createSchema() }
        if version < 2 {
            // The exact bytes of the last update sent, so a retry resends them instead of a second, fresh release.
            try database.transaction {
                try database.execute("CREATE TABLE sent_updates(round TEXT PRIMARY KEY, bytes BLOB NOT NULL); PRAGMA user_version = 2;")
            }
        }
        if version < 3 {
            // The personalised model (`sigilo-tenant personalise`), sealed: it was trained on messages without noise.
            try database.transaction {
                try database.execute("""
                CREATE TABLE personal_model(id INTEGER PRIMARY KEY CHECK(id = 1), global_version INTEGER NOT NULL,
                    sealed BLOB NOT NULL, created_at REAL NOT NULL);
                PRAGMA user_version = 3;
                """)
            }
        }
        if version < 4 {
            // A secure round's own secrets (sealed) and the survivor list it unmasked for, while the round lasts.
            try database.transaction {
                try database.execute("""
                CREATE TABLE secure_rounds(round TEXT PRIMARY KEY, sealed_secrets BLOB NOT NULL, unmasked_for TEXT);
                PRAGMA user_version = 4;
                """)
            }
        }
        if version < 5 {
            // A secure round's charge stays pending until the round reached its unmask stage (kept) or is known
            // to have been abandoned before it (withdrawn: no sum including this tenant's input could be unmasked).
            try database.transaction {
                try database.execute("""
                ALTER TABLE ledger ADD COLUMN secure_pending INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE ledger ADD COLUMN withdrawn_at REAL;
                ALTER TABLE ledger ADD COLUMN withdrawn_why TEXT;
                PRAGMA user_version = 5;
                """)
            }
        }
        if version < 6 {
            // The live service (`serve`): messages may wait unlabelled for an attendant's feedback, and say where
            // they came from; agents authenticate with tokens the tenant issues (only their SHA-256 is kept).
            try database.transaction {
                try database.execute("""
                CREATE TABLE messages_v6(handle BLOB PRIMARY KEY, customer BLOB NOT NULL REFERENCES customers(handle),
                    sealed_text BLOB NOT NULL, intent TEXT, source TEXT NOT NULL, imported_at REAL NOT NULL, labelled_at REAL);
                INSERT INTO messages_v6 SELECT handle, customer, sealed_text, intent, 'import', imported_at, imported_at FROM messages;
                DROP TABLE messages;
                ALTER TABLE messages_v6 RENAME TO messages;
                CREATE INDEX messages_by_customer ON messages(customer);
                CREATE INDEX messages_unlabelled ON messages(imported_at) WHERE intent IS NULL;
                CREATE TABLE agent_tokens(name TEXT PRIMARY KEY, digest BLOB NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL);
                CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                PRAGMA user_version = 6;
                """)
            }
        }
        if version < 7 {
            // Encoder features: each message's embedding, computed once and sealed like its text. It is derived
            // from the message, so it goes with it: the trigger covers every way a message is deleted.
            try database.transaction {
                try database.execute("""
                CREATE TABLE embeddings(message BLOB NOT NULL, encoder BLOB NOT NULL, sealed BLOB NOT NULL, PRIMARY KEY(message, encoder));
                CREATE TRIGGER messages_take_their_embeddings AFTER DELETE ON messages
                    BEGIN DELETE FROM embeddings WHERE message = old.handle; END;
                PRAGMA user_version = 7;
                """)
            }
        }
    }

    private func createSchema() throws {
        try database.transaction {
            try database.execute("""
            CREATE TABLE key_check(id INTEGER PRIMARY KEY CHECK(id = 1), sealed BLOB NOT NULL);
            CREATE TABLE settings(name TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE customers(handle BLOB PRIMARY KEY, sealed_id BLOB NOT NULL, consent INTEGER NOT NULL,
                erased_at REAL, updated_at REAL NOT NULL);
            CREATE TABLE messages(handle BLOB PRIMARY KEY, customer BLOB NOT NULL REFERENCES customers(handle),
                sealed_text BLOB NOT NULL, intent TEXT NOT NULL, imported_at REAL NOT NULL);
            CREATE INDEX messages_by_customer ON messages(customer);
            CREATE TABLE receipts(id INTEGER PRIMARY KEY, customer BLOB NOT NULL, sealed_id BLOB NOT NULL, erased_at REAL NOT NULL,
                messages INTEGER NOT NULL);
            CREATE TABLE ledger(round TEXT PRIMARY KEY, sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, delta REAL NOT NULL,
                charged_at REAL NOT NULL);
            CREATE TABLE models(version INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, file BLOB NOT NULL);
            PRAGMA user_version = 1;
            """)
        }
    }

    // MARK: - Identity and settings

    /// The tenant's Ed25519 key pair.
    public func identity() throws -> Ed25519.KeyPair {
        let url = directory.appendingPathComponent(Self.identityName)
        guard let text = try? String(contentsOf: url, encoding: .utf8),
              let seed = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), seed.count == 32 else {
            throw CLIError(.dataError, "\(url.path) does not hold a 32-byte Ed25519 key in hex")
        }
        return try Ed25519.KeyPair(privateKey: seed)
    }

    /// A new identity key staged by `rotate-key` before asking the coordinator
    /// to take it: if the answer is lost, the next attempt finds out which key
    /// the coordinator holds instead of locking the tenant out.
    var pendingIdentityURL: URL { directory.appendingPathComponent(Self.identityName + ".next") }

    func pendingIdentity() throws -> Ed25519.KeyPair? {
        guard let text = try? String(contentsOf: pendingIdentityURL, encoding: .utf8) else { return nil }
        guard let seed = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), seed.count == 32 else {
            throw CLIError(.dataError, "\(pendingIdentityURL.path) does not hold a 32-byte Ed25519 key in hex")
        }
        return try Ed25519.KeyPair(privateKey: seed)
    }

    /// Writes the staged key durably (0600) before anyone is told of it.
    func stagePendingIdentity(_ key: Ed25519.KeyPair) throws {
        try writePrivateFile(pendingIdentityURL.path, Hex.encode(key.privateKey), replacing: true)
    }

    /// The staged key becomes the identity (one rename, then the directory synced).
    func promotePendingIdentity() throws {
        guard rename(pendingIdentityURL.path, directory.appendingPathComponent(Self.identityName).path) == 0 else {
            throw CLIError(.ioError, "cannot replace \(Self.identityName) with \(pendingIdentityURL.lastPathComponent)")
        }
        let fd = open(directory.path, O_RDONLY)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }

    public func setting(_ name: String) throws -> String? {
        var value: String?
        try database.run("SELECT value FROM settings WHERE name = ?", [.text(name)]) { value = $0.text(0) }
        return value
    }

    public func setSetting(_ name: String, _ value: String) throws {
        try database.run("INSERT INTO settings(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value", [.text(name), .text(value)])
    }

    // MARK: - Secure rounds

    /// This tenant's secrets for a secure round (sealed with the store key),
    /// created on first use. Only the current round's are kept: a new round's
    /// replace any older ones, whose round is over.
    func roundSecrets(round: String, create: Bool) throws -> SecureAggregation.RoundSecrets? {
        let context = Array("secure_round:\(round)".utf8)
        var sealed: [UInt8]?
        try database.run("SELECT sealed_secrets FROM secure_rounds WHERE round = ?", [.text(round)]) { sealed = $0.blob(0) }
        if let sealed {
            guard let secrets = try? SecureAggregation.RoundSecrets(encoded: cipher.open(sealed, context: context)) else {
                throw CLIError(.dataError, "the tenant store's secrets for secure round \(round) are corrupted")
            }
            return secrets
        }
        guard create else { return nil }
        let secrets = try SecureAggregation.RoundSecrets.generate()
        try database.transaction {
            try database.run("DELETE FROM secure_rounds")
            try database.run("INSERT INTO secure_rounds(round, sealed_secrets) VALUES (?, ?)", [.text(round), .blob(try cipher.seal(secrets.encoded, context: context))])
        }
        return secrets
    }

    /// The survivor list this tenant already revealed shares for in `round`, if it did.
    func unmaskedFor(round: String) throws -> Set<String>? {
        var list: String?
        try database.run("SELECT unmasked_for FROM secure_rounds WHERE round = ? AND unmasked_for IS NOT NULL", [.text(round)]) { list = $0.text(0) }
        return list.map { Set($0.split(separator: "\n").map(String.init)) }
    }

    /// Kept before the shares leave: whatever it is told later, it answers no other list for this round.
    /// It also settles the round's charge: its input is in a sum that will be unmasked.
    func recordUnmask(round: String, survivors: Set<String>) throws {
        try database.transaction {
            try database.run("UPDATE secure_rounds SET unmasked_for = ? WHERE round = ?", [.text(survivors.sorted().joined(separator: "\n")), .text(round)])
            try database.run("UPDATE ledger SET secure_pending = 0 WHERE round = ?", [.text(round)])
        }
    }

    /// Secure rounds charged whose outcome this tenant does not know yet: it
    /// sent its masked input and never saw the unmask stage.
    func pendingSecureCharges() throws -> [String] {
        var rounds = [String]()
        try database.run("SELECT round FROM ledger WHERE secure_pending = 1 ORDER BY charged_at") { rounds.append($0.text(0)) }
        return rounds
    }

    /// The outcome of a pending secure round is known: its charge stays, or
    /// (`withdrawn`: why) leaves the ledger's sum while its row stays on record.
    func settleSecureCharge(round: String, withdrawn why: String?, now: Double) throws {
        if let why {
            try database.run("UPDATE ledger SET secure_pending = 0, withdrawn_at = ?, withdrawn_why = ? WHERE round = ? AND secure_pending = 1",
                             [.real(now), .text(why), .text(round)])
        } else {
            try database.run("UPDATE ledger SET secure_pending = 0 WHERE round = ?", [.text(round)])
        }
    }

    /// What this tenant's ledger says of a round it sent to, in words: charged, withdrawn (why), or pending a secure round's outcome.
    func chargeState(round: String) throws -> String {
        var state = "holds no charge for it"
        try database.run("SELECT secure_pending, withdrawn_why FROM ledger WHERE round = ?", [.text(round)]) {
            state = !$0.isNull(1) ? "withdrew its charge (\($0.text(1)))"
                : $0.integer(0) != 0 ? "holds its charge until the round's outcome is settled" : "keeps its charge: the update had left this tenant"
        }
        return state
    }

    /// Charges withdrawn, oldest first: which round, when, and why.
    func withdrawnCharges() throws -> [(round: String, at: Double, why: String)] {
        var rows = [(String, Double, String)]()
        try database.run("SELECT round, withdrawn_at, withdrawn_why FROM ledger WHERE withdrawn_at IS NOT NULL ORDER BY charged_at") {
            rows.append(($0.text(0), $0.real(1), $0.text(2)))
        }
        return rows
    }

    func handle(customer: String) -> [UInt8] { HMACSHA256.authenticate(Array("c:\(customer)".utf8), key: lookupKey) }

    func handle(message key: String) -> [UInt8] { HMACSHA256.authenticate(Array("m:\(key)".utf8), key: lookupKey) }

    /// A customer's consent and tombstone, if the store knows the customer.
    func customerState(_ handle: [UInt8]) throws -> (consent: Bool, erased: Bool)? {
        var state: (Bool, Bool)?
        try database.run("SELECT consent, erased_at FROM customers WHERE handle = ?", [.blob(handle)]) { state = ($0.integer(0) == 1, !$0.isNull(1)) }
        return state
    }

    /// What recording a consent event changed.
    public struct ConsentChange: Equatable, Sendable {
        /// The store had never seen this customer (a typo, or consent ahead of any message).
        public var newCustomer: Bool
        /// Messages deleted with a withdrawn consent.
        public var messagesDeleted: Int
        public var personalModelDeleted: Bool
    }

    /// Records consent given or withdrawn (granting again lifts an erasure
    /// tombstone). A withdrawal deletes the customer's messages, labelled or
    /// not, and the personalised model that learnt from them: the store keeps
    /// nothing of a customer it may no longer use.
    @discardableResult
    public func setConsent(customer: String, granted: Bool, now: Double) throws -> ConsentChange {
        let h = handle(customer: customer)
        return try database.transaction {
            let before = try customerState(h)
            if before == nil {
                try database.run("INSERT INTO customers(handle, sealed_id, consent, updated_at) VALUES (?, ?, ?, ?)",
                                 [.blob(h), .blob(try cipher.seal(Array(customer.utf8), context: h)), .integer(granted ? 1 : 0), .real(now)])
            } else if granted {
                try database.run("UPDATE customers SET consent = 1, erased_at = NULL, updated_at = ? WHERE handle = ?", [.real(now), .blob(h)])
            } else {
                try database.run("UPDATE customers SET consent = 0, updated_at = ? WHERE handle = ?", [.real(now), .blob(h)])
            }
            var change = ConsentChange(newCustomer: before == nil, messagesDeleted: 0, personalModelDeleted: false)
            if !granted {
                change.messagesDeleted = try database.run("DELETE FROM messages WHERE customer = ?", [.blob(h)])
                change.personalModelDeleted = before?.consent == true ? try deletePersonalModel() : false
            }
            return change
        }
    }

    /// Deletes every message of a customer, leaves a tombstone and a receipt;
    /// returns the count, whether the personalised model went with them, and
    /// whether the store had ever seen the customer.
    public func forget(customer: String, now: Double) throws -> (messages: Int, personalModelDeleted: Bool, knownCustomer: Bool) {
        let h = handle(customer: customer)
        return try database.transaction {
            let known = try customerState(h) != nil
            var count = 0
            try database.run("SELECT COUNT(*) FROM messages WHERE customer = ?", [.blob(h)]) { count = Int($0.integer(0)) }
            try database.run("DELETE FROM messages WHERE customer = ?", [.blob(h)])
            let sealed = try cipher.seal(Array(customer.utf8), context: h)
            if try customerState(h) == nil {
                try database.run("INSERT INTO customers(handle, sealed_id, consent, erased_at, updated_at) VALUES (?, ?, 0, ?, ?)",
                                 [.blob(h), .blob(sealed), .real(now), .real(now)])
            } else {
                try database.run("UPDATE customers SET consent = 0, erased_at = ?, updated_at = ? WHERE handle = ?", [.real(now), .real(now), .blob(h)])
            }
            try database.run("INSERT INTO receipts(customer, sealed_id, erased_at, messages) VALUES (?, ?, ?, ?)",
                             [.blob(h), .blob(sealed), .real(now), .integer(Int64(count))])
            return (count, count > 0 ? try deletePersonalModel() : false, known)
        }
    }

    /// Customers that may be sampled: consent recorded and not erased.
    public func consentedCustomers() throws -> [[UInt8]] {
        var out = [[UInt8]]()
        try database.run("SELECT handle FROM customers WHERE consent = 1 AND erased_at IS NULL") { out.append($0.blob(0)) }
        return out
    }

    /// A stored message, decrypted. `handle` finds it (and its embedding) again.
    public struct StoredMessage: Sendable {
        public var handle: [UInt8]
        public var text: String
        public var intent: String
    }

    /// A customer's labelled messages (redacted text, intent), decrypted:
    /// what trains. Messages still waiting for an attendant's label do not.
    public func messages(of customer: [UInt8]) throws -> [StoredMessage] {
        var sealed = [([UInt8], [UInt8], String)]()
        try database.run("SELECT handle, sealed_text, intent FROM messages WHERE customer = ? AND intent IS NOT NULL", [.blob(customer)]) {
            sealed.append(($0.blob(0), $0.blob(1), $0.text(2)))
        }
        return try sealed.map { handle, blob, intent in
            StoredMessage(handle: handle, text: try openText(blob, customer: customer), intent: intent)
        }
    }

    func openText(_ sealed: [UInt8], customer: [UInt8]) throws -> String {
        do { return String(decoding: try cipher.open(sealed, context: customer), as: UTF8.self) } catch {
            throw CLIError(.dataError, "a stored message failed authentication: the store is corrupted or was tampered with")
        }
    }

    public struct Counts: Equatable, Sendable {
        /// Labelled messages (they train) and messages waiting for a label.
        public var messages = 0
        public var unlabelledMessages = 0
        public var customersConsented = 0
        public var customersWithoutConsent = 0
        public var customersErased = 0
    }

    public func counts() throws -> Counts {
        var c = Counts()
        try database.run("SELECT intent IS NULL, COUNT(*) FROM messages GROUP BY 1") {
            if $0.integer(0) == 1 { c.unlabelledMessages = Int($0.integer(1)) } else { c.messages = Int($0.integer(1)) }
        }
        try database.run("SELECT (erased_at IS NOT NULL), consent, COUNT(*) FROM customers GROUP BY 1, 2") {
            if $0.integer(0) == 1 { c.customersErased += Int($0.integer(2)) }
            else if $0.integer(1) == 1 { c.customersConsented += Int($0.integer(2)) }
            else { c.customersWithoutConsent += Int($0.integer(2)) }
        }
        return c
    }

    public struct Receipt: Equatable, Sendable {
        public var customer: String
        public var erasedAt: Double
        public var messages: Int
    }

    public func receipts() throws -> [Receipt] {
        var rows = [([UInt8], [UInt8], Double, Int)]()
        try database.run("SELECT customer, sealed_id, erased_at, messages FROM receipts ORDER BY id") { rows.append(($0.blob(0), $0.blob(1), $0.real(2), Int($0.integer(3)))) }
        return try rows.map { h, sealed, at, count in
            Receipt(customer: String(decoding: try cipher.open(sealed, context: h), as: UTF8.self), erasedAt: at, messages: count)
        }
    }

    // MARK: - Ledger and models

    /// This tenant's customers' ledger (rounds actually joined).
    public func ledger(delta: Double) throws -> PrivacyLedger {
        var ledger = try PrivacyLedger(delta: delta)
        var rows = [(String, Double, Double, Double)]()
        try database.run("SELECT round, sample_rate, noise_multiplier, charged_at FROM ledger WHERE withdrawn_at IS NULL ORDER BY charged_at") { rows.append(($0.text(0), $0.real(1), $0.real(2), $0.real(3))) }
        for (round, q, z, at) in rows {
            try ledger.charge(round: round, SubsampledGaussian(sampleRate: q, noiseMultiplier: z), at: Date(timeIntervalSince1970: at))
        }
        return ledger
    }

    /// Charges the round and keeps the bytes about to be sent (sealed, like
    /// the messages), in one transaction: once they may have left, the round
    /// is paid for, and until the coordinator acknowledges them a retry
    /// resends these bytes (`sentUpdate`) rather than a fresh release.
    /// `secure`: a masked input, whose charge stays pending until the round's outcome is known.
    func charge(round: String, _ mechanism: SubsampledGaussian, delta: Double, now: Double, sending bytes: [UInt8], secure: Bool = false) throws {
        let sealed = try cipher.seal(bytes, context: Self.sentUpdateContext(round))
        try database.transaction {
            try database.run("INSERT INTO ledger(round, sample_rate, noise_multiplier, delta, charged_at, secure_pending) VALUES (?, ?, ?, ?, ?, ?)",
                             [.text(round), .real(mechanism.sampleRate), .real(mechanism.noiseMultiplier), .real(delta), .real(now), .integer(secure ? 1 : 0)])
            try database.run("DELETE FROM sent_updates")
            try database.run("INSERT INTO sent_updates(round, bytes) VALUES (?, ?)", [.text(round), .blob(sealed)])
        }
    }

    /// Binds a kept update to its round: sealed bytes cannot be replayed for another.
    static func sentUpdateContext(_ round: String) -> [UInt8] { Array("sent_update:\(round)".utf8) }

    /// The bytes charged for `round` and not yet acknowledged, if any.
    func sentUpdate(round: String) throws -> [UInt8]? {
        var sealed: [UInt8]?
        try database.run("SELECT bytes FROM sent_updates WHERE round = ?", [.text(round)]) { sealed = $0.blob(0) }
        guard let sealed else { return nil }
        do { return try cipher.open(sealed, context: Self.sentUpdateContext(round)) } catch {
            throw CLIError(.dataError, "the update kept for \(round) is corrupted")
        }
    }

    /// The coordinator acknowledged the update: nothing is kept any longer.
    func updateAcknowledged() throws {
        try database.run("DELETE FROM sent_updates")
    }

    func cacheModel(version: UInt64, file: [UInt8]) throws {
        try database.run("INSERT OR REPLACE INTO models(version, sha256, file) VALUES (?, ?, ?)",
                         [.integer(Int64(version)), .text(Hex.encode(SHA256.hash(file))), .blob(file)])
    }

    /// The newest cached global model's version, without reading its file.
    public func latestModelVersion() throws -> UInt64? {
        var version: UInt64?
        try database.run("SELECT MAX(version) FROM models") { if !$0.isNull(0) { version = UInt64($0.integer(0)) } }
        return version
    }

    /// The newest cached global model file.
    public func latestModel() throws -> (version: UInt64, file: [UInt8])? {
        var result: (UInt64, [UInt8])?
        try database.run("SELECT version, file FROM models ORDER BY version DESC LIMIT 1") { result = (UInt64($0.integer(0)), $0.blob(1)) }
        return result
    }

    // MARK: - Personalised model

    static let personalModelContext = Array("personal_model".utf8)

    /// Keeps `file` as the tenant's personalised model, sealed like the
    /// messages it was trained on, replacing any earlier one.
    public func savePersonalModel(file: [UInt8], globalVersion: UInt64, now: Double) throws {
        try database.run("INSERT OR REPLACE INTO personal_model(id, global_version, sealed, created_at) VALUES (1, ?, ?, ?)",
                         [.integer(Int64(globalVersion)), .blob(try cipher.seal(file, context: Self.personalModelContext)), .real(now)])
    }

    /// The personalised model file, unsealed (`personalModelOrigin` says where it came from).
    public func personalModel() throws -> [UInt8]? {
        var sealed: [UInt8]?
        try database.run("SELECT sealed FROM personal_model WHERE id = 1") { sealed = $0.blob(0) }
        guard let sealed else { return nil }
        do { return try cipher.open(sealed, context: Self.personalModelContext) } catch {
            throw CLIError(.dataError, "the personalised model in the store failed authentication: corrupted or tampered with")
        }
    }

    /// When the personalised model was made, and from which global version, without unsealing it.
    public func personalModelOrigin() throws -> (globalVersion: UInt64, createdAt: Double)? {
        var row: (UInt64, Double)?
        try database.run("SELECT global_version, created_at FROM personal_model WHERE id = 1") { row = (UInt64($0.integer(0)), $0.real(1)) }
        return row
    }

    /// A personalised model learnt from every consented customer without
    /// noise, so an erasure or a withdrawn consent must not outlive it.
    func deletePersonalModel() throws -> Bool {
        try database.run("DELETE FROM personal_model") > 0
    }
}
