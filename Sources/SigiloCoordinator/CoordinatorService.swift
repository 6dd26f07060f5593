import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloFederation
import SigiloModel
import SigiloPrivacy
import SigiloProtocol
import SigiloSQLite
import SigiloText

/// A refusal by the coordinator: the HTTP status, a stable code and a message.
public struct CoordinatorError: Error, CustomStringConvertible, Equatable, Sendable {
    public let status: Int
    public let code: String
    public let message: String
    /// Seconds before a retry can succeed (429 answers carry it as Retry-After).
    public var retryAfter: Int?

    public init(_ status: Int, _ code: String, _ message: String, retryAfter: Int? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.retryAfter = retryAfter
    }

    public var description: String { "\(code): \(message)" }

    /// A protocol-level refusal (malformed header, bad signature, bad update) as the coordinator answers it.
    init(_ error: ProtocolError) { self.init(error.httpStatus, error.code.rawValue, error.message) }
}

/// The coordinator's state and rules, independent of HTTP: enrolment, plan,
/// rounds, validation and aggregation of updates, model versions, ledger.
///
/// Every state change is one SQLite transaction; an update is acknowledged
/// only after its contribution to the running sum is committed. Individual
/// updates are never stored: only the sum and a digest for de-duplication.
/// One lock serialises all access (SQLite is used single-threaded).
public final class CoordinatorService: @unchecked Sendable {
    static let schemaVersion = 12
    public static let databaseName = "coordinator.sqlite"

    let database: Database
    /// The coordinator's own key: signs model metadata so tenants can check provenance.
    let signingKey: Ed25519.KeyPair
    public static let signingKeyName = "coordinator.key"
    private let lock = NSLock()
    var machine = RoundMachine()
    /// The open secure round's k, which bounds its share and unmask bodies.
    var secureDegree: Int? { locked { secureParameters?.degree } }
    /// The open round's running sum, mirrored in the database.
    private var sum: RoundSum?
    /// Secure placement's running sum of masked updates, in place of `sum`.
    var maskedSum: SecureAggregation.MaskedSum?
    /// Secure placement: the open round's public parameters (cohort, t, k, graph).
    var secureParameters: SecureAggregation.RoundParameters?
    /// Its tenants' signed round keys, as advertised (mirrors the database, for the poll path).
    var secureAdvertisements: [String: SecureAggregation.Advertisement] = [:]
    /// Unmask stage: how many shares of each tenant's secret have been revealed (mirrors the database).
    var revealedShares: [String: Int] = [:]
    /// Arrays updates are decoded into, reused (4 x d bytes each, faulted in
    /// once): one per submission decoding at a time, which the worker pool bounds.
    private let decodeBuffers = BufferPool<Float>(keeping: 4)
    /// Group commit: updates folded into the running sum but not yet durable,
    /// numbered by ticket; committed together, in one transaction, by
    /// whichever waiting submitter gets to `commitGate` first.
    private var pending: [PendingSubmission] = []
    private var nextTicket: UInt64 = 1
    private var durableThrough: UInt64 = 0
    private var failedTickets: [UInt64: any Error] = [:]
    private let commitGate = NSLock()
    /// Signalled when a round closes or is abandoned, so the caller of
    /// `maintain` can open the next one at once instead of at its next tick.
    public let roundFinished = DispatchSemaphore(value: 0)
    /// Counts rounds opened and secure stages begun: long-polls wait on it instead of polling the lock.
    private let roundOpening = NSCondition()
    private var roundsOpened = 0
    /// ε of the ledger's compositions, each computed once (see EpsilonMemo).
    let epsilons = EpsilonMemo()
    /// What a signature claiming an unknown tenant id is checked against, so that it fails exactly as a
    /// wrong signature for a real tenant does: who is enrolled is not told to anyone who cannot sign as them.
    let unknownTenantKey = (try? Ed25519.KeyPair.generate().publicKey) ?? [UInt8](repeating: 1, count: 32)
    /// The latest model file, as served (published models never change).
    private var servedModel: (version: UInt64, file: [UInt8], sha256: String)?
    let maximumDimension: Int
    let audit: AuditStore
    /// Where `serve` writes the events an operator should see as they happen (nil: nowhere).
    public var eventLog: Log?
    /// Events recorded in the current locked section, announced once committed.
    var pendingEvents: [(AuditEntry, [UInt8])] = []
    /// Why the last maintenance tick opened no round (no plan, budget spent, waiting for tenants).
    var idleReason: String?
    /// When `maintain` last checkpointed the WAL (0: not yet in this process).
    var lastCheckpoint: Double = 0
    /// Tenants that missed the plan's `dormantAfterMissedRounds` rounds in a row (mirrors the database, for the poll path).
    var dormant = Set<String>()
    /// Seals the TOTP secrets in the database (AES-256-GCM) with a key kept
    /// outside the state directory: a copied database or backup does not reveal
    /// them. Nil in commands that never read a secret.
    let secrets: AES256GCM?
    /// Nonces of signed requests accepted since the last audit batch ("key\nnonce": time seen);
    /// written with that batch, which every answer to such a request waits for, except a poll's
    /// (not audited; its nonce is written by the next batch or maintenance tick, and held here till then).
    var pendingNonces: [String: Double] = [:]
    /// Request records on their way to the audit log, in batches.
    let requestRecords = AuditBatcher()
    /// Failed authentications per claimed identity and per source address.
    var identityFailures: FailureLimiter
    var addressFailures: FailureLimiter
    /// Repeated validation failures per tenant: an alert at `limit` within `window`, then quiet for `lockout`.
    var validationFailures = FailureLimiter(policy: .init(limit: 3, window: 3600, lockout: 3600))
    let metrics = Metrics()

    /// Opens (creating and migrating if needed) the state in `directory`.
    public init(directory: URL, maximumDimension: Int = 1 << 24,
                identityLockout: FailureLimiter.Policy = .init(limit: 5, window: 600, lockout: 900),
                addressLockout: FailureLimiter.Policy = .init(limit: 20, window: 600, lockout: 900),
                secretsKey: [UInt8]? = nil) throws {
        self.maximumDimension = maximumDimension
        secrets = try secretsKey.map { try AES256GCM(key: $0) }
        identityFailures = FailureLimiter(policy: identityLockout)
        addressFailures = FailureLimiter(policy: addressLockout)
        // Each acknowledged update rewrites the running sum (4 x d bytes) in
        // place and commits it: 64 KiB pages make that 16x fewer WAL frames to
        // write (commit of a 4 MB sum: 54 -> 28 ms), and checkpointing every
        // 64 MB of WAL copies each page of the sum into the database once per
        // few updates, not once per update. (The page cache is sized to the
        // sum when a round opens.)
        database = try Database(path: directory.appendingPathComponent(Self.databaseName).path, pageSize: 1 << 16)
        var pageSize = 4096 // states created before 64 KiB pages keep theirs
        try database.run("PRAGMA page_size") { pageSize = Int($0.integer(0)) }
        try database.execute("PRAGMA wal_autocheckpoint = \((64 << 20) / pageSize)")
        signingKey = try Self.loadOrCreateSigningKey(directory.appendingPathComponent(Self.signingKeyName))
        audit = AuditStore(database: database, key: signingKey)
        try migrate(directory)
        if secrets != nil { try sealSecrets() }
        dormant = Set(try dormantTenants())
        try restoreOpenRound()
        requestRecords.commit = { [unowned self] in commitRequestRecords($0) }
    }

    private static func loadOrCreateSigningKey(_ url: URL) throws -> Ed25519.KeyPair {
        if let text = try? String(contentsOf: url, encoding: .utf8) {
            guard let seed = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), seed.count == 32 else {
                throw CoordinatorError(500, "bad_key", "\(url.path) does not hold a 32-byte Ed25519 key in hex")
            }
            return try Ed25519.KeyPair(privateKey: seed)
        }
        let key = try Ed25519.KeyPair.generate()
        guard FileManager.default.createFile(atPath: url.path, contents: Data(Hex.encode(key.privateKey).utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CoordinatorError(500, "bad_key", "cannot write \(url.path)")
        }
        return key
    }

    /// The coordinator's public key (hex), given to tenants at enrolment.
    public var publicKeyHex: String { Hex.encode(signingKey.publicKey) }

    /// How round `id` ended (open, closed or abandoned), the last secure
    /// stage it began, and the coordinator's signature over both; nil for a
    /// round that never opened.
    public func roundOutcome(_ id: UInt64) throws -> (state: String, stage: String?, signature: String)? {
        try locked {
            var found: (String, String?)?
            try database.run("SELECT state, secure_stage FROM rounds WHERE id = ?", [.integer(Int64(bitPattern: id))]) {
                found = ($0.text(0), $0.isNull(1) ? nil : $0.text(1))
            }
            return try found.map { ($0.0, $0.1, Hex.encode(try signingKey.sign(RoundOutcome.message(round: id, state: $0.0, stage: $0.1)))) }
        }
    }

    /// The signature over a model version and its SHA-256 (protocol/PROTOCOL.md, "Model provenance").
    public func modelSignature(version: UInt64, sha256: String) throws -> String {
        Hex.encode(try signingKey.sign(ModelProvenance.message(version: version, sha256: sha256)))
    }

    private func migrate(_ directory: URL) throws {
        let version = try database.userVersion
        guard version <= Self.schemaVersion else {
            throw DatabaseError("state was written by a newer Sigilo (schema \(version); this build knows \(Self.schemaVersion))")
        }
        if version < 1 {
            try database.transaction {
                try database.execute("""
                CREATE TABLE tenants(id TEXT PRIMARY KEY, name TEXT NOT NULL, public_key BLOB NOT NULL UNIQUE,
                    status TEXT NOT NULL CHECK(status IN ('active', 'revoked')), enrolled_at REAL NOT NULL, revoked_at REAL);
                CREATE TABLE enrollment_tokens(token_hash BLOB PRIMARY KEY, tenant_name TEXT NOT NULL, created_at REAL NOT NULL,
                    expires_at REAL NOT NULL, used_at REAL);
                CREATE TABLE plans(id INTEGER PRIMARY KEY, body TEXT NOT NULL, created_at REAL NOT NULL);
                CREATE TABLE models(version INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, parent INTEGER, round INTEGER,
                    epsilon REAL NOT NULL, created_at REAL NOT NULL, file BLOB NOT NULL);
                CREATE TABLE rounds(id INTEGER PRIMARY KEY, model_version INTEGER NOT NULL,
                    state TEXT NOT NULL CHECK(state IN ('open', 'closed', 'abandoned')), opened_at REAL NOT NULL,
                    deadline REAL NOT NULL, closed_at REAL, expected TEXT NOT NULL, minimum_tenants INTEGER NOT NULL,
                    sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL, sum BLOB, weight REAL NOT NULL DEFAULT 0,
                    updates INTEGER NOT NULL DEFAULT 0);
                CREATE TABLE submissions(round_id INTEGER NOT NULL REFERENCES rounds(id), tenant_id TEXT NOT NULL,
                    digest TEXT NOT NULL, accepted_at REAL NOT NULL, PRIMARY KEY(round_id, tenant_id));
                CREATE TABLE ledger(round_id INTEGER PRIMARY KEY, sample_rate REAL NOT NULL, noise_multiplier REAL NOT NULL,
                    charged_at REAL NOT NULL);
                CREATE TABLE nonces(key_id TEXT NOT NULL, nonce TEXT NOT NULL, seen_at REAL NOT NULL, PRIMARY KEY(key_id, nonce));
                CREATE TABLE optimizer(id INTEGER PRIMARY KEY CHECK(id = 1), momentum BLOB NOT NULL, second BLOB NOT NULL);
                PRAGMA user_version = 1;
                """)
            }
        }
        if version < 2 {
            try database.transaction {
                try database.execute(AuditStore.schema + """
                CREATE TABLE credentials(id TEXT PRIMARY KEY, role TEXT NOT NULL CHECK(role IN ('admin', 'auditor')), name TEXT NOT NULL,
                    secret_hash BLOB NOT NULL, totp_secret BLOB, totp_last_step INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
                    revoked_at REAL);
                CREATE TABLE sessions(token_hash BLOB PRIMARY KEY, credential_id TEXT NOT NULL, expires_at REAL NOT NULL);
                ALTER TABLE tenants ADD COLUMN last_address TEXT;
                ALTER TABLE submissions ADD COLUMN score REAL;
                CREATE INDEX nonces_by_time ON nonces(seen_at);
                PRAGMA user_version = 2;
                """)
            }
        }
        if version < 3 {
            // Secure placement: each tenant's X25519 key for the pairwise masks (tenants enrolled before have none).
            try database.transaction {
                try database.execute("ALTER TABLE tenants ADD COLUMN agreement_key BLOB; PRAGMA user_version = 3;")
            }
        }
        if version < 4 {
            // Audit retention: where archived entries were cut from the table.
            try database.transaction { try database.execute(AuditStore.cutSchema + " PRAGMA user_version = 4;") }
        }
        if version < 5 {
            // A tenant's cap on its declared weight (absent: the plan's), set at invite or later.
            try database.transaction {
                try database.execute("ALTER TABLE tenants ADD COLUMN weight_cap REAL; ALTER TABLE enrollment_tokens ADD COLUMN weight_cap REAL; PRAGMA user_version = 5;")
            }
        }
        if version < 6 {
            // The audit log's signed head moves into the database, written with the entries it covers.
            let legacy = try database.transaction {
                try database.execute(AuditStore.headSchema)
                let legacy = try audit.adoptLegacyHead(in: directory)
                try database.execute("PRAGMA user_version = 6;")
                return legacy
            }
            if let legacy { try? FileManager.default.removeItem(at: legacy) }
        }
        if version < 7 {
            // TOTP secrets sealed with the secrets key (those stored before stay plain until a command holding the key opens the state).
            try database.transaction {
                try database.execute("ALTER TABLE credentials ADD COLUMN totp_sealed INTEGER NOT NULL DEFAULT 0; PRAGMA user_version = 7;")
            }
        }
        if version < 8 {
            // Consecutive rounds a tenant was expected in and did not answer (dormant from `dormantAfterMissedRounds`).
            try database.transaction {
                try database.execute("ALTER TABLE tenants ADD COLUMN missed_rounds INTEGER NOT NULL DEFAULT 0; PRAGMA user_version = 8;")
            }
        }
        if version < 9 {
            // Dropout-robust secure rounds: their parameters and stage, and what tenants relay through the coordinator.
            try database.transaction { try database.execute(Self.secureSchema + " PRAGMA user_version = 9;") }
        }
        if version < 10 {
            // When each tenant last made a signed request and the last round that took its update, for `status`
            // (last_seen is written with the request's audit batch).
            try database.transaction {
                try database.execute("""
                    ALTER TABLE tenants ADD COLUMN last_seen REAL;
                    CREATE INDEX submissions_by_tenant ON submissions(tenant_id, round_id);
                    PRAGMA user_version = 10;
                    """)
            }
        }
        if version < 11 {
            // A plan set while a round was open, waiting for that round to end.
            try database.transaction {
                try database.execute("""
                    CREATE TABLE IF NOT EXISTS pending_plan(id INTEGER PRIMARY KEY CHECK(id = 1), body TEXT NOT NULL, actor TEXT NOT NULL,
                        role TEXT NOT NULL, created_at REAL NOT NULL);
                    PRAGMA user_version = 11;
                    """)
            }
        }
        if version < 12 {
            // The open round's running sum in a row of its own. In the round's row, every change to another
            // column (the weight at each commit, a secure round's stage) made SQLite read the whole record and
            // write it again with the sum: 4 x d bytes read and written beside the sum's own in-place write.
            try database.transaction {
                try database.execute("""
                    CREATE TABLE round_sums(round_id INTEGER PRIMARY KEY REFERENCES rounds(id), sum BLOB NOT NULL);
                    INSERT INTO round_sums(round_id, sum) SELECT id, sum FROM rounds WHERE state = 'open' AND sum IS NOT NULL;
                    ALTER TABLE rounds DROP COLUMN sum;
                    PRAGMA user_version = 12;
                    """)
            }
        }
    }

    /// After a restart, the open round continues with exactly the committed updates.
    private func restoreOpenRound() throws {
        // The plan cannot change while a round is open: it tells how the sum is kept.
        var restored: (round: RoundMachine.Round, blob: [UInt8], weight: Double, count: Int)?
        var secure: (threshold: Int, degree: Int, seed: [UInt8], stage: String)?
        try database.run("""
            SELECT id, model_version, opened_at, deadline, expected, minimum_tenants, round_sums.sum, weight, updates,
                secure_threshold, secure_degree, graph_seed, secure_stage FROM rounds JOIN round_sums ON round_sums.round_id = rounds.id
                WHERE state = 'open'
            """) { row in
            let expected = Set(row.text(4).split(separator: ",").map(String.init))
            let round = RoundMachine.Round(id: UInt64(row.integer(0)), modelVersion: UInt64(row.integer(1)), openedAt: row.real(2),
                                           deadline: row.real(3), expected: expected, submitted: [], minimumTenants: Int(row.integer(5)))
            restored = (round, row.blob(6), row.real(7), Int(row.integer(8)))
            if !row.isNull(9) { secure = (Int(row.integer(9)), Int(row.integer(10)), row.blob(11), row.text(12)) }
        }
        guard let restored else { return }
        var round = restored.round
        try database.run("SELECT tenant_id FROM submissions WHERE round_id = ?", [.integer(Int64(round.id))]) { round.submitted.insert($0.text(0)) }
        if let secure { try restoreSecureRound(&round, threshold: secure.threshold, degree: secure.degree, graphSeed: secure.seed, stage: secure.stage) }
        machine = RoundMachine(state: .open(round))
        if secure != nil {
            maskedSum = SecureAggregation.MaskedSum(values: Self.values(restored.blob), weight: restored.weight, count: restored.count)
            sum = nil
        } else {
            sum = RoundSum(values: Self.values(restored.blob), weight: restored.weight, count: restored.count)
            maskedSum = nil
        }
        try cacheRunningSum(bytes: restored.blob.count)
    }

    /// A page cache that holds the running sum (plus 2 MB for the rest), so
    /// rewriting it does not first read every page back from disk.
    private func cacheRunningSum(bytes: Int) throws {
        try database.execute("PRAGMA cache_size = -\(bytes / 1024 + 2048)")
    }

    // MARK: - Tenants

    /// A one-time enrolment token for a new tenant, valid for `lifetime` seconds.
    /// Only its SHA-256 is stored; the token itself is shown once.
    /// `weightCap`: the largest weight the tenant may declare (nil: the plan's).
    public func invite(name: String, weightCap: Double? = nil, by actor: Principal = .localOperator, now: Double, lifetime: Double = 86400) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 128 else { throw CoordinatorError(400, "bad_name", "tenant name must be 1-128 bytes") }
        try Self.checkWeightCap(weightCap)
        var raw = [UInt8](repeating: 0, count: 24)
        let rng = SecureRandom()
        for i in 0..<raw.count { raw[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let token = "sgt_" + Hex.encode(raw)
        try locked {
            try database.transaction {
                try database.run("INSERT INTO enrollment_tokens(token_hash, tenant_name, created_at, expires_at, weight_cap) VALUES (?, ?, ?, ?, ?)",
                                 [.blob(SHA256.hash(Array(token.utf8))), .text(name), .real(now), .real(now + lifetime), weightCap.map { .real($0) } ?? .null])
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "tenant.invite", object: name,
                                      detail: "token valid until \(Int(now + lifetime))\(weightCap.map { ", weight cap \($0)" } ?? "")"))
            }
        }
        return token
    }

    /// Binds `publicKey` to a new tenant, consuming the token.
    public func enroll(token: String, publicKey: [UInt8], now: Double) throws -> String {
        guard publicKey.count == Ed25519.publicKeyBytes else { throw CoordinatorError(400, "bad_public_key", "public key must be 32 bytes") }
        return try locked {
            try database.transaction {
                var found: (name: String, expires: Double, used: Bool, cap: Double?)?
                try database.run("SELECT tenant_name, expires_at, used_at, weight_cap FROM enrollment_tokens WHERE token_hash = ?",
                                 [.blob(SHA256.hash(Array(token.utf8)))]) { found = ($0.text(0), $0.real(1), !$0.isNull(2), $0.isNull(3) ? nil : $0.real(3)) }
                guard let found, !found.used, found.expires > now else {
                    throw CoordinatorError(401, "bad_token", "enrolment token is unknown, used or expired")
                }
                var exists = false
                try database.run("SELECT 1 FROM tenants WHERE public_key = ?", [.blob(publicKey)]) { _ in exists = true }
                guard !exists else { throw CoordinatorError(409, "key_in_use", "this public key is already enrolled") }
                var next = 1
                try database.run("SELECT COUNT(*) FROM tenants") { next = Int($0.integer(0)) + 1 }
                let id = "tenant-\(next)"
                try database.run("INSERT INTO tenants(id, name, public_key, status, enrolled_at, weight_cap) VALUES (?, ?, ?, 'active', ?, ?)",
                                 [.text(id), .text(found.name), .blob(publicKey), .real(now), found.cap.map { .real($0) } ?? .null])
                try database.run("UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ?", [.real(now), .blob(SHA256.hash(Array(token.utf8)))])
                try record(AuditEntry(time: now, actor: id, role: Role.tenant.rawValue, action: "tenant.enroll", object: id,
                                      detail: "name \(found.name), key \(Hex.encode(SHA256.hash(publicKey)).prefix(16))"))
                return id
            }
        }
    }

    /// Sets a tenant's cap on its declared weight (nil: back to the plan's). Read at
    /// every submission, so it applies from the next update, also while serving.
    public func setWeightCap(tenant id: String, to cap: Double?, by actor: Principal = .localOperator, now: Double) throws {
        try Self.checkWeightCap(cap)
        try locked {
            try database.transaction {
                let changed = try database.run("UPDATE tenants SET weight_cap = ? WHERE id = ?", [cap.map { .real($0) } ?? .null, .text(id)])
                guard changed == 1 else { throw CoordinatorError(404, "unknown_tenant", "no tenant \(id)") }
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "tenant.weight_cap", object: id,
                                      detail: cap.map { "weight cap \($0)" } ?? "weight cap: the plan's"))
            }
        }
    }

    static func checkWeightCap(_ cap: Double?) throws {
        if let cap, !(cap.isFinite && cap > 0) { throw CoordinatorError(400, "bad_weight_cap", "a weight cap must be a finite number > 0, got \(cap)") }
    }

    /// The cap that applies to a tenant's declared weight: its own, else the plan's, else none.
    func weightCap(of tenant: String, plan: Plan) throws -> Double? {
        var own: Double?
        try database.run("SELECT weight_cap FROM tenants WHERE id = ?", [.text(tenant)]) { own = $0.isNull(0) ? nil : $0.real(0) }
        return own ?? plan.maximumTenantWeight
    }

    /// Revokes a tenant: its next request is refused; it no longer holds a round open.
    public func revoke(tenant id: String, by actor: Principal = .localOperator, now: Double) throws {
        try locked {
            try database.transaction {
                let changed = try database.run("UPDATE tenants SET status = 'revoked', revoked_at = ? WHERE id = ? AND status = 'active'", [.real(now), .text(id)])
                guard changed == 1 else { throw CoordinatorError(404, "unknown_tenant", "no active tenant \(id)") }
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "tenant.revoke", object: id))
            }
            try commitPending() // what was acknowledged-to-be stays in the round the revocation may end
            try perform(machine.revoked(tenant: id, now: now), now: now)
        }
    }

    public struct TenantInfo: Sendable, Equatable {
        public var id: String
        public var name: String
        public var status: String
        public var enrolledAt: Double
        /// Its last signed request that was answered (nil: none yet).
        public var lastSeen: Double?
        /// The last round that accepted its update.
        public var lastRound: UInt64?
        /// Rounds in a row it was expected in and did not answer.
        public var missedRounds: Int = 0
    }

    /// Every tenant, without secrets.
    public func tenants() throws -> [TenantInfo] {
        try locked {
            var out = [TenantInfo]()
            try database.run("""
                SELECT t.id, t.name, t.status, t.enrolled_at, t.last_seen, (SELECT MAX(round_id) FROM submissions WHERE tenant_id = t.id), t.missed_rounds
                FROM tenants t ORDER BY t.enrolled_at
                """) {
                out.append(TenantInfo(id: $0.text(0), name: $0.text(1), status: $0.text(2), enrolledAt: $0.real(3),
                                      lastSeen: $0.isNull(4) ? nil : $0.real(4), lastRound: $0.isNull(5) ? nil : UInt64($0.integer(5)),
                                      missedRounds: Int($0.integer(6))))
            }
            return out
        }
    }

    /// The public key of an active tenant (nil: unknown; error: revoked).
    /// A tenant's public key and whether it is active; nil for an id no tenant has.
    func tenantKey(_ id: String) throws -> (key: [UInt8], active: Bool)? {
        var result: (key: [UInt8], active: Bool)?
        try database.run("SELECT public_key, status FROM tenants WHERE id = ?", [.text(id)]) { result = ($0.blob(0), $0.text(1) == "active") }
        return result
    }

    /// Checks an enrolment request's signature, made with the key being enrolled
    /// (key id "enroll"), and records its nonce against replay.
    public func verifyEnrollmentSignature(method: String, target: String, body: [UInt8], header: (String) -> String?,
                                          publicKey: [UInt8], now: Double) throws {
        let credentials: RequestSigning.Credentials
        do { credentials = try RequestSigning.credentials(header) } catch let e as ProtocolError {
            throw CoordinatorError(e)
        }
        guard credentials.keyId == "enroll" else { throw CoordinatorError(400, "malformed_header", "enrolment requests use key id \"enroll\"") }
        do {
            try RequestSigning.verify(credentials, method: method, path: target, body: body, publicKey: publicKey, now: Int64(now))
        } catch let e as ProtocolError {
            throw CoordinatorError(e)
        }
        try locked { try unusedNonce(credentials.nonce, key: Hex.encode(publicKey), now: now)() }
    }

    // MARK: - Plan and models

    /// The current plan, if any.
    public func plan() throws -> Plan? {
        try locked { try currentPlan() }
    }

    func currentPlan() throws -> Plan? {
        var body: String?
        try database.run("SELECT body FROM plans ORDER BY id DESC LIMIT 1") { body = $0.text(0) }
        return try body.map { try Plan.decode(Data($0.utf8)) }
    }

    /// What became of a plan: in force now, or staged until the open round ends, and what it does to the intents.
    public struct PlanChange: Equatable, Sendable {
        /// The open round whose end the plan waits for (nil: in force now).
        public var stagedUntilRound: UInt64?
        /// What the plan does to the intents of the plan in force, in words (nil: nothing).
        public var labels: String?
    }

    /// Installs a plan. The first plan publishes model version 1 (all zeros); a
    /// later one keeps the features, and its intents may be added, renamed or
    /// merged (the model keeps what it learnt, new intents start at zero). While a
    /// round is open (with tenants taking part continuously, nearly always) the
    /// plan is staged and takes effect when that round ends, before the next opens.
    @discardableResult
    public func setPlan(_ plan: Plan, by actor: Principal = .localOperator, now: Double) throws -> PlanChange {
        try plan.validate()
        let body = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        return try locked {
            let relabelling = try relabelling(plan)
            if case .open(let r) = machine.state {
                try database.transaction {
                    try database.run("INSERT OR REPLACE INTO pending_plan(id, body, actor, role, created_at) VALUES (1, ?, ?, ?, ?)",
                                     [.text(body), .text(actor.id), .text(actor.role.rawValue), .real(now)])
                    try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "plan.stage", object: "plan",
                                          detail: "sha256 \(Self.planDigest(body)); takes effect when round \(r.id) ends"))
                }
                return PlanChange(stagedUntilRound: r.id, labels: relabelling?.summary)
            }
            try database.transaction { try install(plan, relabelling: relabelling, body: body, actor: actor.id, role: actor.role.rawValue, now: now) }
            dormant = Set(try dormantTenants()) // the plan sets how many missed rounds make a tenant dormant
            return PlanChange(stagedUntilRound: nil, labels: relabelling?.summary)
        }
    }

    /// How the audit log names a plan: the first 16 hex digits of its body's SHA-256.
    static func planDigest(_ body: String) -> Substring { Hex.encode(SHA256.hash(Array(body.utf8))).prefix(16) }

    /// How `plan`'s labels follow from the current plan's (nil: unchanged); throws when
    /// an intent would be dropped or the features would change.
    private func relabelling(_ plan: Plan) throws -> Relabelling? {
        guard let old = try currentPlan() else { return nil }
        guard old.featureConfiguration == plan.featureConfiguration else {
            throw CoordinatorError(409, "shape_change", "once a model exists, bucketBits and the features (kind, encoder) cannot change")
        }
        do { return try Relabelling(from: old.labels, to: plan) } catch let error as PlanError {
            throw CoordinatorError(409, "shape_change", error.description)
        }
    }

    /// Puts `plan` in force, `relabelling` being how its labels follow from the plan in force
    /// (caller holds the lock, in a transaction).
    private func install(_ plan: Plan, relabelling: Relabelling?, body: String, actor: String, role: String, now: Double) throws {
        try database.run("DELETE FROM pending_plan") // a plan put in force replaces any staged one
        try database.run("INSERT INTO plans(body, created_at) VALUES (?, ?)", [.text(body), .real(now)])
        try record(AuditEntry(time: now, actor: actor, role: role, action: "plan.set", object: "plan",
                              detail: "sha256 \(Self.planDigest(body)), epsilon budget \(plan.maximumEpsilon), z \(plan.noiseMultiplier), q \(plan.sampleRate)"))
        if try latestModelVersion() == nil {
            // Hand-off intents (e.g. "falar_com_humano", "oos") always go to a human.
            let handoff = plan.labels.indices.filter { IntentTraining.defaultHandoffIntents.contains(plan.labels[$0]) }
            let model = SoftmaxModel(features: plan.featureConfiguration, labels: plan.labels, handoffLabels: handoff)
            try publish(model: model, parent: nil, round: nil, epsilon: 0, now: now)
            // Empty moments are zeros (ServerOptimizerState): nothing to store until an optimiser keeps one.
            try database.run("INSERT OR REPLACE INTO optimizer(id, momentum, second) VALUES (1, ?, ?)", [.blob([]), .blob([])])
        } else if let relabelling {
            try publishRelabelled(relabelling, plan: plan, now: now)
        }
    }

    /// A plan staged while a round was open, put in force now that none is (caller holds the lock).
    private func installStagedPlan(now: Double) throws {
        var staged: (body: String, actor: String, role: String)?
        try database.run("SELECT body, actor, role FROM pending_plan WHERE id = 1") { staged = ($0.text(0), $0.text(1), $0.text(2)) }
        guard let staged else { return }
        do {
            // Checked again: it was valid against the plan in force when staged, which only install changes.
            let plan = try Plan.decode(Data(staged.body.utf8))
            try database.transaction { try install(plan, relabelling: try relabelling(plan), body: staged.body, actor: staged.actor, role: staged.role, now: now) }
            dormant = Set(try dormantTenants())
        } catch {
            // Never a plan that blocks every later round: dropped, and said where the operator looks.
            try database.transaction {
                try database.run("DELETE FROM pending_plan")
                try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "alert.plan_dropped", object: "plan",
                                      outcome: "flagged", detail: "the staged plan could not take effect: \(error)"))
            }
        }
    }

    /// The latest model relabelled for `plan` (kept, renamed, merged and new classes), published as the
    /// next version, and the server optimiser's moments relabelled alike: rounds go on from what the model
    /// knew (caller holds the lock, in the plan's transaction).
    private func publishRelabelled(_ relabelling: Relabelling, plan: Plan, now: Double) throws {
        guard let latest = try latestModelVersion(), let current = try model(versionUnlocked: latest) else { return }
        let next = current.relabelled(plan.labels, sources: relabelling.sources, handoffIntents: IntentTraining.defaultHandoffIntents)
        var epsilon = 0.0, moments: (momentum: [Float], second: [Float]) = ([], [])
        try database.run("SELECT epsilon FROM models WHERE version = ?", [.integer(Int64(latest))]) { epsilon = $0.real(0) }
        try database.run("SELECT momentum, second FROM optimizer WHERE id = 1") { moments = (Self.values($0.blob(0)), Self.values($0.blob(1))) }
        try publish(model: next, parent: latest, round: nil, epsilon: epsilon, now: now)
        let relabel = { SoftmaxModel.relabelParameters($0, dimension: current.features.dimension, from: current.labelCount, sources: relabelling.sources) }
        try database.run("UPDATE optimizer SET momentum = ?, second = ? WHERE id = 1",
                         [.blob(Self.bytes(relabel(moments.momentum))), .blob(Self.bytes(relabel(moments.second)))])
        try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "plan.labels_changed", object: "plan",
                              detail: "\(relabelling.summary); model \(latest) kept as model \(latest + 1)"))
    }

    func latestModelVersion() throws -> UInt64? {
        var version: UInt64?
        try database.run("SELECT MAX(version) FROM models") { if !$0.isNull(0) { version = UInt64($0.integer(0)) } }
        return version
    }

    private func publish(model: SoftmaxModel, parent: UInt64?, round: UInt64?, epsilon: Double, now: Double) throws {
        let file = ModelFile.encode(model)
        let version = (try latestModelVersion() ?? 0) + 1
        let sha256 = Hex.encode(SHA256.hash(file))
        try database.run("INSERT INTO models(version, sha256, parent, round, epsilon, created_at, file) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [.integer(Int64(version)), .text(sha256), parent.map { .integer(Int64($0)) } ?? .null,
                          round.map { .integer(Int64($0)) } ?? .null, .real(epsilon), .real(now), .blob(file)])
        try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "model.publish", object: "model \(version)",
                              detail: "sha256 \(sha256), epsilon \(epsilon)\(round.map { ", round \($0)" } ?? "")"))
    }

    /// When and how a model version was published.
    public func modelProvenance(version: UInt64) throws -> (round: UInt64?, epsilon: Double, parent: UInt64?)? {
        try locked {
            var result: (UInt64?, Double, UInt64?)?
            try database.run("SELECT round, epsilon, parent FROM models WHERE version = ?", [.integer(Int64(version))]) {
                result = ($0.isNull(0) ? nil : UInt64($0.integer(0)), $0.real(1), $0.isNull(2) ? nil : UInt64($0.integer(2)))
            }
            return result
        }
    }

    /// The newest published model: its version, file and SHA-256 (hex).
    public func latestModel() throws -> (version: UInt64, file: [UInt8], sha256: String)? {
        // Versions never change once published, so the two steps need not share one lock (which is not reentrant).
        guard let version = try locked({ try latestModelVersion() }) else { return nil }
        return try model(version: version).map { (version, $0.file, $0.sha256) }
    }

    /// A model file and its SHA-256 (hex).
    /// The version tenants download most is kept in memory, so concurrent
    /// downloads share one buffer instead of each reading its own copy.
    public func model(version: UInt64) throws -> (file: [UInt8], sha256: String)? {
        try locked {
            if let cached = servedModel, cached.version == version { return (cached.file, cached.sha256) }
            var result: ([UInt8], String)?
            try database.run("SELECT file, sha256 FROM models WHERE version = ?", [.integer(Int64(version))]) { result = ($0.blob(0), $0.text(1)) }
            if let result, version == (try latestModelVersion()) { servedModel = (version, result.0, result.1) }
            return result
        }
    }

    // MARK: - Rounds

    /// What one round of `plan` charges the ledger: its sampling rate and the
    /// grid mechanism's effective noise multiplier.
    func charge(of plan: Plan) throws -> SubsampledGaussian {
        let noise = try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension)
        return try SubsampledGaussian(sampleRate: plan.sampleRate, noiseMultiplier: noise.effectiveNoiseMultiplier)
    }

    /// The plan's ledger, as charged so far.
    func ledger(_ plan: Plan) throws -> PrivacyLedger {
        var ledger = try PrivacyLedger(delta: plan.delta)
        for row in try chargedRounds() {
            try ledger.charge(round: String(row.round), SubsampledGaussian(sampleRate: row.sampleRate, noiseMultiplier: row.noiseMultiplier),
                              at: Date(timeIntervalSince1970: row.chargedAt))
        }
        return ledger
    }

    public struct LedgerRow: Sendable, Equatable {
        public var round: UInt64
        public var sampleRate: Double
        public var noiseMultiplier: Double
        public var chargedAt: Double
    }

    /// The ledger table's rows, in round order (caller holds the lock).
    func chargedRounds() throws -> [LedgerRow] {
        var rows = [LedgerRow]()
        try database.run("SELECT round_id, sample_rate, noise_multiplier, charged_at FROM ledger ORDER BY round_id") {
            rows.append(LedgerRow(round: UInt64($0.integer(0)), sampleRate: $0.real(1), noiseMultiplier: $0.real(2), chargedAt: $0.real(3)))
        }
        return rows
    }

    /// Time passes: closes or abandons a round at its deadline, and opens the
    /// next round when none is open, enough tenants are active and the plan's
    /// budget allows it. Returns the reason when no round could be opened.
    @discardableResult
    public func maintain(now: Double) throws -> String? {
        // The budget check's ε is computed here, outside the lock, so that no
        // request waits on the accountant; the locked part finds it remembered.
        if let (ledger, round) = try locked({ try nextRoundCharge() }) { _ = try epsilons.epsilon(ledger, adding: round) }
        let reason = try openNextRound(now: now)
        try locked {
            idleReason = reason
            // Nonces of requests no audit batch carried (polls) are written here, with their tenants' last contact.
            if !pendingNonces.isEmpty { try database.transaction { try writePendingNonces() } }
            if now - lastCheckpoint >= Self.checkpointInterval || now < lastCheckpoint { try checkpoint(now: now) }
        }
        return reason
    }

    /// How often a running server folds the WAL back into the database and empties it.
    static let checkpointInterval: Double = 60

    /// SQLite's automatic checkpoints (every 64 MB) copy the WAL into the
    /// database but leave the file at its largest; a TRUNCATE checkpoint on the
    /// maintenance tick keeps it small while serving, not only after a stop
    /// (caller holds the lock). A reader holding an old snapshot (a backup)
    /// makes it partial; the next tick finishes it.
    func checkpoint(now: Double) throws {
        lastCheckpoint = now
        var complete = false
        try database.run("PRAGMA wal_checkpoint(TRUNCATE)") { complete = $0.integer(0) == 0 }
        metrics.add(complete ? "sigilo_wal_checkpoints_total" : "sigilo_wal_checkpoints_partial_total")
    }

    /// Why no round is open for `tenant`, in words a tenant's operator can act on.
    public func noRoundReason(for tenant: String) -> String {
        locked {
            if case .open(let r) = machine.state {
                return r.expected.contains(tenant)
                    ? "round \(r.id) is open and this tenant already answered it"
                    : "round \(r.id) is open without this tenant (it enrolled after it opened, or was dormant); the next one counts on it"
            }
            return idleReason ?? "the coordinator has not opened a round yet"
        }
    }

    private func openNextRound(now: Double) throws -> String? {
        try locked {
            try commitPending() // a round never closes or is abandoned with updates folded in but not yet durable
            try perform(machine.tick(now: now), now: now)
            guard case .idle = machine.state else { return nil }
            try installStagedPlan(now: now)
            guard let plan = try currentPlan(), let version = try latestModelVersion() else { return "no plan" }
            let secure = plan.placement == .secure
            var active = Set<String>()
            // Dormant tenants (missed too many rounds in a row) are not waited for until they poll again.
            try database.run("SELECT id FROM tenants WHERE status = 'active' AND missed_rounds < ?",
                             [.integer(Int64(plan.dormancyThreshold))]) { active.insert($0.text(0)) }
            guard active.count >= plan.minimumTenants else {
                let dormant = try dormantTenants()
                return "waiting for tenants (\(active.count) of \(plan.minimumTenants))"
                    + (dormant.isEmpty ? "" : "; dormant until they poll again: \(dormant.joined(separator: ", "))")
            }
            let round = try charge(of: plan)
            guard try epsilons.epsilon(try ledger(plan), adding: round) <= plan.maximumEpsilon else {
                let reason = "privacy budget exhausted: another round would exceed epsilon \(formatEpsilon(plan.maximumEpsilon))"
                // Said once when it happens (and once more after a restart), not at every tick.
                if idleReason != reason {
                    try alert(.budgetExhausted, tenant: "plan", now: now, detail: "epsilon \(formatEpsilon(try epsilons.epsilon(try ledger(plan)))) spent of "
                              + "\(formatEpsilon(plan.maximumEpsilon)); no round opens until a plan with a larger maximumEpsilon is set (what was spent stays spent)")
                }
                return reason
            }
            var next: UInt64 = 1
            try database.run("SELECT MAX(id) FROM rounds") { if !$0.isNull(0) { next = UInt64($0.integer(0)) + 1 } }
            let parameters: SecureAggregation.RoundParameters?
            do {
                parameters = secure ? try secureRoundParameters(round: next, modelVersion: version, cohort: active, plan: plan) : nil
            } catch let e as SecureAggregationError {
                return "cannot open a secure round for \(active.count) tenants: \(e)"
            }
            let opened = try machine.open(id: next, modelVersion: version, tenants: active, minimumTenants: plan.minimumTenants,
                                          now: now, duration: plan.roundSeconds, secureThreshold: parameters?.threshold)
            let sumBytes = (secure ? 8 : 4) * plan.dimension
            do {
                try database.transaction {
                    try database.run("""
                        INSERT INTO rounds(id, model_version, state, opened_at, deadline, expected, minimum_tenants, sample_rate, noise_multiplier,
                            secure_threshold, secure_degree, graph_seed, secure_stage)
                        VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """, [.integer(Int64(opened.id)), .integer(Int64(version)), .real(now), .real(opened.deadline),
                              .text(active.sorted().joined(separator: ",")), .integer(Int64(plan.minimumTenants)),
                              .real(plan.sampleRate), .real(round.noiseMultiplier),
                              parameters.map { .integer(Int64($0.threshold)) } ?? .null, parameters.map { .integer(Int64($0.degree)) } ?? .null,
                              parameters.map { .blob($0.graphSeed) } ?? .null, parameters == nil ? .null : .text(RoundMachine.SecureStages.Stage.advertise.name)])
                    try database.run("INSERT INTO round_sums(round_id, sum) VALUES (?, ?)", [.integer(Int64(opened.id)), .zeroBlob(sumBytes)])
                    let cohort = parameters.map { ", secure: threshold \($0.threshold), \($0.degree == $0.cohort.count - 1 ? "complete graph" : "\($0.degree) neighbours each")" } ?? ""
                    try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "round.open",
                                          object: "round \(opened.id)", detail: "model \(version), \(active.count) tenants\(cohort), q \(plan.sampleRate), z \(round.noiseMultiplier)"))
                }
            } catch {
                machine.finished()
                throw error
            }
            sum = secure ? nil : RoundSum(dimension: plan.dimension)
            maskedSum = secure ? SecureAggregation.MaskedSum(dimension: plan.dimension) : nil
            secureParameters = parameters
            try cacheRunningSum(bytes: sumBytes)
            wakeLongPolls()
            return nil
        }
    }

    /// The ledger and the charge of the round `maintain` would open next, when none is open.
    private func nextRoundCharge() throws -> (PrivacyLedger, SubsampledGaussian)? {
        guard case .idle = machine.state, let plan = try currentPlan() else { return nil }
        return (try ledger(plan), try charge(of: plan))
    }

    public struct RoundInfo: Sendable, Equatable {
        public var id: UInt64
        public var modelVersion: UInt64
        public var deadline: Double
        public var dimension: Int
        public var submitted: Bool
        /// Whether the round waits for something from this tenant now (its
        /// update; at secure placement, its answer to the current stage).
        public var awaited: Bool
        /// Whether it already answered what the round asks now.
        public var answered: Bool
        /// Secure placement: the round as this tenant sees it at its current stage.
        public var secure: SecureAggregation.RoundView?
    }

    /// Tenants parked in a long-poll look again: a round opened, or a secure round's stage began.
    func wakeLongPolls() {
        roundOpening.withLock {
            roundsOpened += 1
            roundOpening.broadcast()
        }
    }

    /// How many rounds this process has opened (and secure stages begun): read before looking at the
    /// current round, then handed to `waitForNextRound`, so an opening in
    /// between is not missed.
    public var roundsOpenedSoFar: Int { roundOpening.withLock { roundsOpened } }

    /// Waits until a round opens after the `seen`-th, or until `deadline`.
    public func waitForNextRound(after seen: Int, until deadline: Date) {
        roundOpening.withLock {
            while roundsOpened == seen, roundOpening.wait(until: deadline) {}
        }
    }

    /// The open round, as `tenant` sees it: nil when none is open or the open
    /// one does not count on it (it enrolled after the round opened; it waits
    /// for the next, instead of polling a round that would refuse its update).
    public func currentRound(for tenant: String, now: Double = Date().timeIntervalSince1970) throws -> RoundInfo? {
        try locked {
            try wakeIfDormant(tenant, now: now)
            guard case .open(let r) = machine.state, r.expected.contains(tenant), let plan = try currentPlan() else { return nil }
            return RoundInfo(id: r.id, modelVersion: r.modelVersion, deadline: r.deadline, dimension: plan.dimension,
                             submitted: r.submitted.contains(tenant), awaited: r.awaits(tenant), answered: r.answered.contains(tenant),
                             secure: r.secure == nil ? nil : try secureView(of: r, for: tenant))
        }
    }

    /// Validates and adds one update; returns once it is durable. Returns true
    /// when it was a duplicate of an already accepted submission (acknowledged
    /// again, not counted).
    ///
    /// Group commit: the update is folded into the in-memory sum under the
    /// lock, then waits for a commit that makes every update folded so far
    /// durable at once (one write of the sum, one fsync), so an acknowledgement
    /// costs a share of a write, not a whole one. Nothing is acknowledged
    /// before its commit; a failed commit drops every update of its batch from
    /// memory (the durable sum is reloaded), and each is refused.
    /// `bodyDigest`: the body's SHA-256 in lower-case hex when the caller already verified it (a signed request's).
    public func submit(tenant: String, round id: UInt64, body: [UInt8], bodyDigest: String? = nil, now: Double) throws -> Bool {
        // Decoding and hashing need no shared state: uploads are decoded, checksummed and measured side by side
        // before the lock, which then covers only what reads or changes the round (duplicates, the cosine, the fold).
        var buffer = decodeBuffers.take()
        defer { decodeBuffers.give(&buffer) }
        let decoded: Result<DecodedUpdate, CoordinatorError>
        do { decoded = .success(try decode(body, into: &buffer)) } catch let error as CoordinatorError { decoded = .failure(error) }
        let digest = bodyDigest ?? Hex.encode(SHA256.hash(body))
        let outcome: Submission = try locked {
            do { return try submitLocked(tenant: tenant, round: id, update: try decoded.get(), digest: digest, now: now) }
            catch let error as CoordinatorError {
                // Repeated refusals from one tenant are worth a look (a broken client, or probing).
                if error.status < 500, validationFailures.recordFailure(tenant, now: now) {
                    try alert(.repeatedValidationFailures, tenant: tenant, now: now,
                              detail: "\(validationFailures.policy.limit) refused updates within \(Int(validationFailures.policy.window)) s, the last: \(error.code)")
                }
                throw error
            }
        }
        switch outcome {
        case .duplicate:
            return true
        case .pending(let ticket, let duplicate):
            try awaitDurable(ticket)
            return duplicate
        }
    }

    enum Submission {
        /// Already durable: acknowledged again.
        case duplicate
        /// Durable once `ticket` is; `duplicate` when it repeats a pending submission.
        case pending(ticket: UInt64, duplicate: Bool)
    }

    struct PendingSubmission {
        let ticket: UInt64
        let tenant: String
        let round: UInt64
        let digest: String
        let score: Double?
        let detail: String
        let now: Double
    }

    /// Waits until `ticket` is committed, committing every pending update itself if no one else has.
    private func awaitDurable(_ ticket: UInt64) throws {
        try commitGate.withLock {
            try locked {
                if ticket > durableThrough, failedTickets[ticket] == nil { try? commitPending() }
                if let failure = failedTickets.removeValue(forKey: ticket) { throw failure }
            }
        }
    }

    /// Commits every pending update in one transaction: their submissions and
    /// audit entries, and the running sum written once. Then the round may close.
    func commitPending() throws {
        guard let last = pending.last else { return }
        let batch = pending
        pending = []
        let (weight, count) = sum.map { ($0.weight, $0.count) } ?? (maskedSum!.weight, maskedSum!.count)
        let id = batch[0].round
        do {
            try database.transaction {
                for update in batch {
                    try database.run("INSERT INTO submissions(round_id, tenant_id, digest, accepted_at, score) VALUES (?, ?, ?, ?, ?)",
                                     [.integer(Int64(update.round)), .text(update.tenant), .text(update.digest), .real(update.now),
                                      update.score.map { .real($0) } ?? .null])
                    try record(AuditEntry(time: update.now, actor: update.tenant, role: Role.tenant.rawValue, action: "update.accept",
                                          object: "round \(update.round)", detail: update.detail))
                }
                func overwrite(_ bytes: UnsafeRawBufferPointer) throws {
                    try database.overwriteBlob(table: "round_sums", column: "sum", rowid: Int64(id), with: bytes)
                }
                if let sum { try sum.values.withUnsafeBytes(overwrite) } else { try maskedSum!.values.withUnsafeBytes(overwrite) }
                try database.run("UPDATE rounds SET weight = ?, updates = ? WHERE id = ?", [.real(weight), .integer(Int64(count)), .integer(Int64(id))])
            }
        } catch {
            for update in batch { failedTickets[update.ticket] = error }
            try restoreOpenRound()
            throw error
        }
        durableThrough = last.ticket
        metrics.add("sigilo_update_commits_total")
        metrics.add("sigilo_updates_committed_total", Double(batch.count))
        for update in batch { try perform(try machine.submitted(tenant: update.tenant, round: update.round, now: update.now), now: update.now) }
    }

    /// An update decoded (checksum, finite values) and, for float updates, its L2 norm.
    struct DecodedUpdate {
        let envelope: UpdateEnvelope
        let norm: Double
    }

    /// Decodes into `buffer` (the envelope shares it until released).
    private func decode(_ body: [UInt8], into buffer: inout [Float]) throws -> DecodedUpdate {
        guard let plan = try plan() else { throw CoordinatorError(409, "no_plan", "no plan is set") }
        let envelope: UpdateEnvelope
        do { envelope = try UpdateEnvelope.decode(body, maximumDimension: min(maximumDimension, plan.dimension), reusing: &buffer) } catch let e as ProtocolError {
            throw CoordinatorError(e)
        }
        return DecodedUpdate(envelope: envelope, norm: RoundSum.norm(envelope.values))
    }

    private func submitLocked(tenant: String, round id: UInt64, update: DecodedUpdate, digest: String, now: Double) throws -> Submission {
        guard let plan = try currentPlan() else { throw CoordinatorError(409, "no_plan", "no plan is set") }
        let envelope = update.envelope
        var previous: String?
        try database.run("SELECT digest FROM submissions WHERE round_id = ? AND tenant_id = ?", [.integer(Int64(id)), .text(tenant)]) { previous = $0.text(0) }
        if let previous {
            guard previous == digest else { throw CoordinatorError(409, "already_submitted", "a different update was already accepted for round \(id)") }
            return .duplicate
        }
        if let waiting = pending.first(where: { $0.tenant == tenant && $0.round == id }) {
            guard waiting.digest == digest else { throw CoordinatorError(409, "already_submitted", "a different update was already accepted for round \(id)") }
            return .pending(ticket: waiting.ticket, duplicate: true)
        }
        guard envelope.round == id else { throw CoordinatorError(409, "wrong_round", "update is for round \(envelope.round), posted to round \(id)") }
        do { try machine.admit(tenant: tenant, round: id) } catch let e as RoundMachine.MachineError {
            switch e {
            case .duplicate, .roundAlreadyOpen: throw CoordinatorError(409, "already_submitted", "already submitted to round \(id)")
            default: throw Self.refusal(e, round: id)
            }
        }
        guard case .open(let round) = machine.state, sum != nil || maskedSum != nil else { throw CoordinatorError(409, "wrong_round", "no round is open") }
        guard envelope.modelVersion == round.modelVersion else {
            throw CoordinatorError(409, "wrong_model_version", "round \(id) trains model version \(round.modelVersion), update is from \(envelope.modelVersion)")
        }
        guard (envelope.masked != nil) == (plan.placement == .secure) else {
            throw CoordinatorError(400, "wrong_placement", plan.placement == .secure ? "the plan's placement is secure: send a masked update"
                                                                                     : "a masked update needs the secure placement; the plan's is \(plan.placement.rawValue)")
        }
        // A weight is a claim (the tenant's expected sampled customers) that scales its share of the average:
        // beyond its cap it would dilute every other tenant's contribution, so it is refused and flagged.
        if let cap = try weightCap(of: tenant, plan: plan), envelope.weight > cap {
            try alert(.weightAboveCap, tenant: tenant, now: now, detail: "round \(id): declared weight \(envelope.weight) above its cap \(cap)")
            throw CoordinatorError(422, "weight_above_cap", "declared weight \(envelope.weight) is above this tenant's cap of \(cap)")
        }
        if let masked = envelope.masked {
            return try acceptMasked(masked, weight: envelope.weight, tenant: tenant, round: id, digest: digest, plan: plan, now: now)
        }
        guard envelope.values.count == plan.dimension else {
            throw CoordinatorError(400, "wrong_dimension", "update has \(envelope.values.count) values, the plan's model has \(plan.dimension)")
        }
        let tenantNoised = envelope.flags.contains(.tenantNoised)
        guard tenantNoised == (plan.placement == .tenant) else {
            throw CoordinatorError(400, "wrong_placement", "the plan places noise at the \(plan.placement.rawValue); the update says otherwise")
        }
        let population = envelope.weight / plan.sampleRate
        let norm = update.norm
        let bound = updateNormBound(population: population, clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier,
                                    tenantNoised: tenantNoised, dimension: plan.dimension)
        guard norm <= bound else {
            throw CoordinatorError(422, "norm_bound_exceeded", "update norm \(norm) exceeds \(bound), the most a valid update for weight \(envelope.weight) can have")
        }
        // Anomalies: size against the peers' (this and recent rounds), direction against the others' sum.
        let score = UpdateAnomaly.score(norm: norm, weight: envelope.weight, plan: plan, tenantNoised: tenantNoised)
        var peers = [Double]()
        try database.run("SELECT score FROM submissions WHERE score IS NOT NULL AND round_id >= ? ORDER BY round_id DESC LIMIT 64",
                         [.integer(Int64(id) - 2)]) { peers.append($0.real(0)) }
        let cosine = sum!.count > 0 ? UpdateAnomaly.cosine(envelope.values, norm: norm, others: sum!.values) : nil
        if let anomaly = UpdateAnomaly.check(score: score, peerScores: peers, cosine: cosine) {
            let excluded = plan.excludeAnomalousUpdates ?? false
            try alert(anomaly.kind == .norm ? .updateNorm : .updateDirection, tenant: tenant, now: now,
                      detail: "round \(id): \(anomaly.detail)\(excluded ? "; excluded by the plan" : "")")
            if excluded {
                throw CoordinatorError(422, "anomalous_update", "update refused as anomalous: \(anomaly.detail)")
            }
        }
        sum!.add(envelope.values, weight: envelope.weight)
        return enqueue(tenant: tenant, round: id, digest: digest, score: score, detail: "weight \(envelope.weight)", now: now)
    }

    /// Adds a secure round's masked update. Masked integers say nothing on
    /// their own, so there is no norm or anomaly check to make: each is
    /// uniform modulo 2^64 under its self mask until the unmask stage.
    private func acceptMasked(_ masked: [UInt64], weight: Double, tenant: String, round id: UInt64, digest: String, plan: Plan,
                              now: Double) throws -> Submission {
        guard masked.count == plan.dimension else {
            throw CoordinatorError(400, "wrong_dimension", "update has \(masked.count) values, the plan's model has \(plan.dimension)")
        }
        maskedSum!.add(masked, weight: weight)
        return enqueue(tenant: tenant, round: id, digest: digest, score: nil, detail: "weight \(weight), masked", now: now)
    }

    /// An update now in the running sum, to be made durable by the next commit.
    private func enqueue(tenant: String, round id: UInt64, digest: String, score: Double?, detail: String, now: Double) -> Submission {
        let ticket = nextTicket
        nextTicket += 1
        pending.append(PendingSubmission(ticket: ticket, tenant: tenant, round: id, digest: digest, score: score, detail: detail, now: now))
        return .pending(ticket: ticket, duplicate: false)
    }

    /// Carries out a close or an abandon, each in one transaction.
    func perform(_ action: RoundMachine.Action, now: Double) throws {
        switch action {
        case .none:
            return
        case .advanced(let round):
            try secureStageBegan(round, now: now)
        case .abandon(let round):
            try abandon(round, why: round.secure.map { "its \($0.stage.name) stage ended with \(round.answered.count) of the \(round.due.count) tenants asked, below the threshold of \($0.threshold)" }
                        ?? "\(round.submitted.count) of \(round.minimumTenants) required tenants submitted", now: now)
        case .close(let round):
            guard let plan = try currentPlan(), let current = try model(versionUnlocked: round.modelVersion) else { return }
            var secureDetail = ""
            var unmasked: SecureAggregation.MaskedSum?
            if round.secure != nil {
                // The masks come off with the survivors' revealed shares, or nothing is released. The masked
                // sum itself stays as committed, so a close that fails below can be tried again from it.
                do { (unmasked, secureDetail) = try unmaskedOpenRound(round) } catch let e as SecureAggregationError {
                    return try abandon(round, why: "unmasking failed: \(e)", now: now)
                }
            }
            guard let running = try sum ?? unmasked.map({ $0.unmasked(step: try SecureAggregation.mechanism(plan).step) }) else { return }
            var optimizerState = ServerOptimizerState()
            try database.run("SELECT momentum, second FROM optimizer WHERE id = 1") {
                optimizerState = ServerOptimizerState(momentum: Self.values($0.blob(0)), secondMoment: Self.values($0.blob(1)))
            }
            let noise = try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension)
            let next = try closeRound(sum: running, model: current.weights + current.bias, plan: plan, optimizer: &optimizerState) { values in
                try noise.privatizeOnAllCores(&values)
            }
            var model = current
            let split = current.weights.count
            model.weights = Array(next[0..<split])
            model.bias = Array(next[split...])
            let charged = try charge(of: plan)
            var ledger = try ledger(plan)
            try ledger.charge(round: String(round.id), charged, at: Date(timeIntervalSince1970: now))
            let epsilon = try epsilons.epsilon(ledger)
            try database.transaction {
                try database.run("UPDATE rounds SET state = 'closed', closed_at = ? WHERE id = ?", [.real(now), .integer(Int64(round.id))])
                try database.run("DELETE FROM round_sums WHERE round_id = ?", [.integer(Int64(round.id))])
                try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "round.close",
                                      object: "round \(round.id)", detail: "\(running.count) updates\(secureDetail), ledger charged q \(charged.sampleRate) z \(charged.noiseMultiplier), epsilon now \(epsilon)"))
                try database.run("INSERT INTO ledger(round_id, sample_rate, noise_multiplier, charged_at) VALUES (?, ?, ?, ?)",
                                 [.integer(Int64(round.id)), .real(charged.sampleRate), .real(charged.noiseMultiplier), .real(now)])
                try database.run("UPDATE optimizer SET momentum = ?, second = ? WHERE id = 1",
                                 [.blob(Self.bytes(optimizerState.momentum)), .blob(Self.bytes(optimizerState.secondMoment))])
                try publish(model: model, parent: round.modelVersion, round: round.id, epsilon: epsilon, now: now)
                try recordAttendance(round, now: now)
                try forgetSecureRound(round.id)
            }
            roundEnded()
        }
    }

    /// Ends a round releasing nothing, in one transaction, saying why.
    private func abandon(_ round: RoundMachine.Round, why: String, now: Double) throws {
        try database.transaction {
            try database.run("UPDATE rounds SET state = 'abandoned', closed_at = ? WHERE id = ?", [.real(now), .integer(Int64(round.id))])
            try database.run("DELETE FROM round_sums WHERE round_id = ?", [.integer(Int64(round.id))])
            // Who did not answer what the round asked last.
            let missing = (round.secure == nil ? round.expected.subtracting(round.submitted) : round.due.subtracting(round.answered)).sorted()
            try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "round.abandon",
                                  object: "round \(round.id)", detail: "\(why); nothing released"
                                    + (missing.isEmpty ? "" : "; missing: \(missing.joined(separator: ", "))")))
            try recordAttendance(round, now: now)
            try forgetSecureRound(round.id)
        }
        roundEnded()
    }

    /// After the plan's `dormancyThreshold` rounds in a row that a tenant was
    /// expected in and did not answer, it is dormant: later rounds neither
    /// count on it nor wait for it (a vanished tenant would otherwise hold every
    /// round to its deadline, and abandon every secure one). It is expected
    /// again from the round after it next polls (the caller holds the lock).
    func dormancyThreshold() throws -> Int { try currentPlan()?.dormancyThreshold ?? Plan.defaultDormancyThreshold }

    /// In the close's or abandon's transaction: who answered and who did not;
    /// a tenant reaching the dormant count is named in the audit log.
    private func recordAttendance(_ round: RoundMachine.Round, now: Double) throws {
        for tenant in round.submitted {
            try database.run("UPDATE tenants SET missed_rounds = 0 WHERE id = ?", [.text(tenant)])
        }
        let threshold = try dormancyThreshold()
        for tenant in round.expected.subtracting(round.submitted).sorted() {
            var missed = 0
            try database.run("UPDATE tenants SET missed_rounds = missed_rounds + 1 WHERE id = ? RETURNING missed_rounds", [.text(tenant)]) {
                missed = Int($0.integer(0))
            }
            if missed == threshold {
                try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "tenant.dormant", object: tenant,
                                      detail: "missed \(missed) rounds in a row (last: round \(round.id)); not expected until it polls again"))
            }
        }
    }

    /// A dormant tenant that polls is back: expected from the next round.
    private func wakeIfDormant(_ tenant: String, now: Double) throws {
        guard dormant.contains(tenant) else { return }
        try database.transaction {
            try database.run("UPDATE tenants SET missed_rounds = 0 WHERE id = ?", [.text(tenant)])
            try record(AuditEntry(time: now, actor: tenant, role: Role.tenant.rawValue, action: "tenant.back", object: tenant,
                                  detail: "polled after being dormant; expected from the next round"))
        }
        dormant.remove(tenant)
    }

    /// Tenants not waited for, by id (the caller holds the lock).
    func dormantTenants() throws -> [String] {
        var out = [String]()
        try database.run("SELECT id FROM tenants WHERE status = 'active' AND missed_rounds >= ? ORDER BY id",
                         [.integer(Int64(try dormancyThreshold()))]) { out.append($0.text(0)) }
        return out
    }

    /// After a close or an abandon is committed: no round is open, and the
    /// maintenance tick is woken to open the next.
    private func roundEnded() {
        // Read back once committed (recordAttendance ran in the transaction, which could have rolled back).
        if let committed = try? dormantTenants() { dormant = Set(committed) }
        machine.finished()
        sum = nil
        maskedSum = nil
        secureParameters = nil
        secureAdvertisements = [:]
        revealedShares = [:]
        roundFinished.signal()
        wakeLongPolls() // a tenant waiting on the round's next stage learns it ended
    }

    private func model(versionUnlocked version: UInt64) throws -> SoftmaxModel? {
        var file: [UInt8]?
        try database.run("SELECT file FROM models WHERE version = ?", [.integer(Int64(version))]) { file = $0.blob(0) }
        return try file.map { try ModelFile.decode($0) }
    }

    // MARK: - Status

    public struct Status: Sendable, Equatable {
        public var tenantsActive: Int
        public var tenantsRevoked: Int
        /// Active tenants not waited for (they missed `dormantAfterMissedRounds` rounds in a row).
        public var tenantsDormant: [String] = []
        /// The count of missed rounds that made them dormant (the plan's, or the default).
        public var dormantAfterMissedRounds = Plan.defaultDormancyThreshold
        public var modelVersion: UInt64?
        public var roundsClosed: Int
        public var roundsAbandoned: Int
        public var openRound: UInt64?
        public var epsilon: Double
        public var delta: Double?
        public var maximumEpsilon: Double?
    }

    public func status() throws -> Status {
        try locked {
            var s = Status(tenantsActive: 0, tenantsRevoked: 0, modelVersion: try latestModelVersion(), roundsClosed: 0, roundsAbandoned: 0,
                           openRound: nil, epsilon: 0, delta: nil, maximumEpsilon: nil)
            try database.run("SELECT status, COUNT(*) FROM tenants GROUP BY status") {
                if $0.text(0) == "active" { s.tenantsActive = Int($0.integer(1)) } else { s.tenantsRevoked = Int($0.integer(1)) }
            }
            try database.run("SELECT state, COUNT(*) FROM rounds GROUP BY state") {
                switch $0.text(0) {
                case "closed": s.roundsClosed = Int($0.integer(1))
                case "abandoned": s.roundsAbandoned = Int($0.integer(1))
                default: break
                }
            }
            if case .open(let r) = machine.state { s.openRound = r.id }
            s.tenantsDormant = try dormantTenants()
            s.dormantAfterMissedRounds = try dormancyThreshold()
            if let plan = try currentPlan() {
                s.epsilon = try epsilons.epsilon(try ledger(plan))
                s.delta = plan.delta
                s.maximumEpsilon = plan.maximumEpsilon
            }
            return s
        }
    }

    // MARK: - Helpers

    func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer {
            if !pendingEvents.isEmpty { announceCommittedEvents() }
            lock.unlock()
        }
        return try body()
    }

    /// Appends an audit entry and signs the new head, inside the caller's
    /// transaction if any: the entry is recorded exactly when the change is.
    func record(_ entry: AuditEntry) throws {
        let head = try audit.append([entry])
        if eventLog != nil, entry.role == Role.system.rawValue || entry.action.hasPrefix("tenant.") {
            var recorded = entry
            recorded.sequence = head.sequence
            pendingEvents.append((recorded, head.hash))
        }
    }

    /// Writes the events of this locked section that were committed (a rolled
    /// back transaction's entries are not in the log under that hash) to the
    /// operator's log: rounds opened, closed or abandoned (naming who did not
    /// answer), alerts, tenants gone dormant or back.
    private func announceCommittedEvents() {
        let events = pendingEvents
        pendingEvents = []
        guard let eventLog, !database.inTransaction else { return }
        for (entry, hash) in events where (try? audit.recordedHash(of: entry.sequence)) == hash {
            eventLog(Self.level(of: entry.action), entry.action, entry.object + (entry.detail.isEmpty ? "" : ": \(entry.detail)"))
        }
    }

    /// What an operator must look at is a warning: alerts, rounds abandoned, tenants gone quiet, lock-outs.
    static func level(of action: String) -> Log.Level {
        action.hasPrefix("alert.") || ["round.abandon", "tenant.dormant", "auth.lockout"].contains(action) ? .warning : .info
    }

    static func bytes(_ values: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * 4)
        out.withUnsafeMutableBytes { dst in values.withUnsafeBytes { dst.copyMemory(from: $0) } } // little-endian hosts only
        return out
    }

    /// Stored bytes back as float32 (the sum, the optimiser's moments) or uint64 (a masked sum) values.
    static func values<T: BitwiseCopyable>(_ bytes: [UInt8]) -> [T] {
        let count = bytes.count / MemoryLayout<T>.stride
        return [T](unsafeUninitializedCapacity: count) { out, initialized in
            bytes.withUnsafeBytes { UnsafeMutableRawBufferPointer(out).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<(count * MemoryLayout<T>.stride)])) } // little-endian hosts only
            initialized = count
        }
    }
}
