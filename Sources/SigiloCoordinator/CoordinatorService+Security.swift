import Foundation
import SigiloCrypto
import SigiloProtocol
import SigiloSQLite

/// Credentials, sessions, authorisation, lock-out, alerts and the audit trail
/// of the coordinator (protocol/SECURITY.md).
extension CoordinatorService {
    // MARK: - Credentials

    /// What `init` shows once: the admin credential and its TOTP secret.
    public struct AdminSecrets: Sendable {
        public var credential: String
        public var totp: TOTP
        public var provisioningURI: String
    }

    /// The additional data a credential's sealed TOTP secret is bound to: a
    /// sealed secret moved to another credential's row does not open.
    static func totpContext(_ id: String) -> [UInt8] { Array("sigilo-totp-v1\n\(id)".utf8) }

    func sealingKey() throws -> AES256GCM {
        guard let secrets else {
            throw CoordinatorError(500, "secrets_key_missing", "this command needs the secrets key (--key-file) to read or write a TOTP secret")
        }
        return secrets
    }

    /// Seals TOTP secrets stored plain (states from before schema 7), and
    /// proves the key opens those already sealed: a wrong key file is refused
    /// at start, not at the admin's first request.
    func sealSecrets() throws {
        let key = try sealingKey()
        try locked {
            try database.transaction {
                var rows = [(id: String, secret: [UInt8], sealed: Bool)]()
                try database.run("SELECT id, totp_secret, totp_sealed FROM credentials WHERE totp_secret IS NOT NULL") {
                    rows.append(($0.text(0), $0.blob(1), $0.integer(2) != 0))
                }
                for row in rows where row.sealed {
                    guard (try? key.open(row.secret, context: Self.totpContext(row.id))) != nil else {
                        throw CoordinatorError(403, "wrong_secrets_key", "the secrets key does not open the TOTP secret of \(row.id): wrong --key-file?")
                    }
                }
                let plain = rows.filter { !$0.sealed }
                for row in plain {
                    try database.run("UPDATE credentials SET totp_secret = ?, totp_sealed = 1 WHERE id = ?",
                                     [.blob(try key.seal(row.secret, context: Self.totpContext(row.id))), .text(row.id)])
                }
                if !plain.isEmpty {
                    try record(AuditEntry(time: Date().timeIntervalSince1970, actor: Principal.localOperator.id, role: Role.operator.rawValue,
                                          action: "secrets.seal", object: plain.map(\.id).joined(separator: ","),
                                          detail: "TOTP secrets stored plain were sealed with the secrets key"))
                }
            }
        }
    }

    /// Credentials whose TOTP secret is sealed (a command without the key cannot check their codes).
    public func sealedSecretCount() throws -> Int {
        try locked {
            var count = 0
            try database.run("SELECT COUNT(*) FROM credentials WHERE totp_sealed = 1") { count = Int($0.integer(0)) }
            return count
        }
    }

    /// Creates the one admin credential with its TOTP secret (at `init`), sealed.
    public func createAdmin(now: Double) throws -> AdminSecrets {
        let issued = try IssuedSecret.generate(id: "admin")
        let totp = try TOTP.generate()
        let sealed = try sealingKey().seal(totp.secret, context: Self.totpContext(issued.id))
        try locked {
            try database.transaction {
                var exists = false
                try database.run("SELECT 1 FROM credentials WHERE role = 'admin'") { _ in exists = true }
                guard !exists else { throw CoordinatorError(409, "admin_exists", "an admin credential already exists") }
                try database.run("""
                    INSERT INTO credentials(id, role, name, secret_hash, totp_secret, totp_sealed, created_at) VALUES (?, 'admin', 'admin', ?, ?, 1, ?)
                    """, [.text(issued.id), .blob(issued.hash), .blob(sealed), .real(now)])
                try record(AuditEntry(time: now, actor: Principal.localOperator.id, role: Role.operator.rawValue, action: "credential.create",
                                      object: issued.id, detail: "role admin, with TOTP"))
            }
        }
        return AdminSecrets(credential: issued.token, totp: totp,
                            provisioningURI: totp.provisioningURI(account: "admin", issuer: "Sigilo coordinator"))
    }

    /// A read-only auditor (DPO) credential, shown once.
    public func createAuditor(name: String, by actor: Principal, now: Double) throws -> (id: String, credential: String) {
        guard !name.isEmpty, name.utf8.count <= 128 else { throw CoordinatorError(400, "bad_name", "auditor name must be 1-128 bytes") }
        return try locked {
            try database.transaction {
                var count = 0
                try database.run("SELECT COUNT(*) FROM credentials WHERE role = 'auditor'") { count = Int($0.integer(0)) }
                let issued = try IssuedSecret.generate(id: "auditor-\(count + 1)")
                try database.run("INSERT INTO credentials(id, role, name, secret_hash, created_at) VALUES (?, 'auditor', ?, ?, ?)",
                                 [.text(issued.id), .text(name), .blob(issued.hash), .real(now)])
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "credential.create",
                                      object: issued.id, detail: "role auditor, name \(name)"))
                return (issued.id, issued.token)
            }
        }
    }

    /// Revokes an auditor credential and its sessions.
    public func revokeCredential(_ id: String, by actor: Principal, now: Double) throws {
        try locked {
            try database.transaction {
                let changed = try database.run("UPDATE credentials SET revoked_at = ? WHERE id = ? AND role = 'auditor' AND revoked_at IS NULL",
                                               [.real(now), .text(id)])
                guard changed == 1 else { throw CoordinatorError(404, "unknown_credential", "no active auditor credential \(id)") }
                try database.run("DELETE FROM sessions WHERE credential_id = ?", [.text(id)])
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "credential.revoke", object: id))
            }
        }
    }

    /// A session for an admin who just proved credential and TOTP.
    public func openSession(for principal: Principal, now: Double) throws -> (token: String, expires: Double) {
        let issued = try IssuedSecret.generate(id: principal.id)
        let expires = now + adminSessionSeconds
        try locked {
            try database.transaction {
                try database.run("DELETE FROM sessions WHERE expires_at <= ?", [.real(now)])
                try database.run("INSERT INTO sessions(token_hash, credential_id, expires_at) VALUES (?, ?, ?)",
                                 [.blob(issued.hash), .text(principal.id), .real(expires)])
                try record(AuditEntry(time: now, actor: principal.id, role: principal.role.rawValue, action: "session.open",
                                      object: principal.id, detail: "expires \(Int(expires))"))
            }
        }
        return (issued.token, expires)
    }

    // MARK: - Authorisation: the one place every protected endpoint goes through

    /// Verifies the presented credentials, then the role, then commits what
    /// authentication consumes (a nonce, a TOTP step). A request refused at
    /// any step changes nothing but the failure counters and the audit log.
    public func authorize(_ presented: PresentedCredentials, access: Access, method: String, target: String, body: [UInt8],
                          address: String, now: Double) throws -> Principal {
        // A signed body's digest is compared before the lock is taken: hashing an update's 4 x d bytes need not hold up everyone.
        var bodyMatches = true
        if case .signature(let credentials) = presented { bodyMatches = RequestSigning.bodyMatches(credentials, body) }
        return try locked {
            let verified = try authenticate(presented, access: access, method: method, target: target, bodyMatches: bodyMatches,
                                            address: address, now: now)
            try database.transaction { try verified.commit() }
            if verified.principal.role == .tenant { try noteAddress(tenant: verified.principal.id, address: address, now: now) }
            return verified.principal
        }
    }

    /// What `authorize` can decide from a request's head, before its body is
    /// read: lock-out, credentials, signature over the declared body digest,
    /// freshness, an unused nonce, the role. Commits nothing (the whole request
    /// goes through `authorize` later); failures count as in `authorize`.
    public func authorizeHead(_ presented: PresentedCredentials, access: Access, method: String, target: String,
                              address: String, now: Double) throws {
        try locked { _ = try authenticate(presented, access: access, method: method, target: target, bodyMatches: nil, address: address, now: now) }
    }

    /// `bodyMatches`: whether a signed body matched its declared digest; nil for the head only (checked later).
    private func authenticate(_ presented: PresentedCredentials, access: Access, method: String, target: String, bodyMatches: Bool?,
                              address: String, now: Double) throws -> (principal: Principal, viaSession: Bool, commit: () throws -> Void) {
        let identity = presented.claimedIdentity
        if let wait = addressFailures.lockedFor(address, now: now)
            ?? identity.flatMap({ identityFailures.lockedFor($0, now: now) ?? identityFailures.lockedFor(Self.pair($0, address), now: now) }) {
            metrics.add("sigilo_auth_refused_locked_total")
            throw CoordinatorError.lockedOut(for: wait)
        }
        let verified: (principal: Principal, viaSession: Bool, commit: () throws -> Void)
        do {
            verified = try verify(presented, method: method, target: target, bodyMatches: bodyMatches, now: now)
        } catch let error as CoordinatorError {
            try failedAuthentication(identity: identity, address: address, reason: error.code, now: now)
            throw error
        }
        guard access.allows(verified.principal, viaSession: verified.viaSession) else {
            throw CoordinatorError(403, "forbidden", access == .adminWithFreshTOTP
                ? "this endpoint needs the admin credential and a TOTP code, not a session"
                : "role \(verified.principal.role.rawValue) may not \(method) \(target.split(separator: "?")[0])")
        }
        return verified
    }

    /// Counts an authentication failure that happened outside `authorize` (a bad enrolment token).
    public func recordFailedAuthentication(identity: String?, address: String, reason: String, now: Double) throws {
        try locked { try failedAuthentication(identity: identity, address: address, reason: reason, now: now) }
    }

    /// Failures of a caller that proved the identity's first factor (its secret; the TOTP code was wrong or
    /// missing): only the identity's owner or a thief of its secret gets there, so they count for the identity
    /// everywhere (a 6-digit code needs a global limit). Any other failure proves nothing about the identity
    /// claimed: it counts for that identity from that address only, and for the address, so a stranger who
    /// claims "tenant-3" or "admin" locks out itself, never them.
    static let firstFactorProven: Set<String> = ["bad_totp", "totp_required"]

    static func pair(_ identity: String, _ address: String) -> String { "\(identity) from \(address)" }

    private func failedAuthentication(identity: String?, address: String, reason: String, now: Double) throws {
        metrics.add("sigilo_auth_failures_total{reason=\"\(reason)\"}")
        var locks = [(scope: String, key: String)]()
        if addressFailures.recordFailure(address, now: now) { locks.append(("address", address)) }
        if let identity {
            let key = Self.firstFactorProven.contains(reason) ? identity : Self.pair(identity, address)
            if identityFailures.recordFailure(key, now: now) { locks.append(("identity", key)) }
        }
        for lock in locks {
            metrics.add("sigilo_auth_lockouts_total{scope=\"\(lock.scope)\"}")
            let policy = lock.scope == "address" ? addressFailures.policy : identityFailures.policy
            try record(AuditEntry(time: now, actor: identity ?? "unknown", role: "unauthenticated", action: "auth.lockout", object: "\(lock.scope) \(lock.key)",
                                  outcome: "locked", address: address,
                                  detail: "\(policy.limit) failures within \(Int(policy.window)) s; locked \(Int(policy.lockout)) s; last: \(reason)"))
        }
    }

    /// Identities and addresses locked out now (a metrics gauge).
    func lockedOutCount(now: Double) -> Int {
        locked { identityFailures.lockedCount(now: now) + addressFailures.lockedCount(now: now) }
    }

    private func verify(_ presented: PresentedCredentials, method: String, target: String, bodyMatches: Bool?,
                        now: Double) throws -> (principal: Principal, viaSession: Bool, commit: () throws -> Void) {
        switch presented {
        case .none:
            throw CoordinatorError(401, "unauthenticated", "this endpoint needs credentials (signed request, Bearer or Session)")
        case .malformed(let message):
            throw CoordinatorError(400, "malformed_header", message)
        case .signature(let credentials):
            // The same checks in the same order whether or not the id exists, and "revoked" only for a caller
            // that proved it holds the key: an unauthenticated caller learns nothing about who is enrolled.
            let tenant = try tenantKey(credentials.keyId)
            if tenant == nil { metrics.add("sigilo_auth_unknown_identity_total") }
            let key = tenant?.key ?? unknownTenantKey
            do {
                if let bodyMatches {
                    try RequestSigning.verify(credentials, method: method, path: target, bodyMatches: bodyMatches, publicKey: key, now: Int64(now))
                } else {
                    try RequestSigning.verifyHead(credentials, method: method, path: target, publicKey: key, now: Int64(now))
                }
            } catch let e as ProtocolError {
                throw CoordinatorError(e)
            }
            guard let tenant else { throw CoordinatorError(401, "bad_signature", "signature does not verify for key \(credentials.keyId)") }
            guard tenant.active else { throw CoordinatorError(403, "revoked", "tenant \(credentials.keyId) is revoked") }
            try checkUnusedNonce(credentials.nonce, key: credentials.keyId, now: now)
            // Remembered now, written with the batch that records this request (its answer waits for that batch).
            return (Principal(id: credentials.keyId, role: .tenant), false, { [self] in
                pendingNonces[credentials.keyId + "\n" + credentials.nonce] = now
            })
        case .bearer(let id, let secret, let code):
            var found: (role: String, hash: [UInt8], totp: [UInt8]?, lastStep: Int64, revoked: Bool, sealed: Bool)?
            try database.run("SELECT role, secret_hash, totp_secret, totp_last_step, revoked_at, totp_sealed FROM credentials WHERE id = ?", [.text(id)]) {
                found = ($0.text(0), $0.blob(1), $0.isNull(2) ? nil : $0.blob(2), $0.integer(3), !$0.isNull(4), $0.integer(5) != 0)
            }
            guard let found, constantTimeEqual(found.hash, SHA256.hash(Array(secret.utf8))) else {
                throw CoordinatorError(401, "bad_credential", "unknown credential or wrong secret")
            }
            guard !found.revoked else { throw CoordinatorError(403, "revoked", "credential \(id) is revoked") }
            guard let role = Role(rawValue: found.role) else { throw CoordinatorError(500, "internal", "credential \(id) has no known role") }
            guard let stored = found.totp else { return (Principal(id: id, role: role), false, {}) }
            let secret = found.sealed ? try sealingKey().open(stored, context: Self.totpContext(id)) : stored
            guard let code, !code.isEmpty else { throw CoordinatorError(401, "totp_required", "admin requests need a Sigilo-TOTP code") }
            // RFC 6238 section 5.2: a code is accepted once; later steps only.
            guard let step = TOTP(secret: secret).matchingStep(code, at: now), step > found.lastStep else {
                throw CoordinatorError(401, "bad_totp", "TOTP code is wrong, expired or already used")
            }
            return (Principal(id: id, role: role), false, { [database] in
                try database.run("UPDATE credentials SET totp_last_step = ? WHERE id = ?", [.integer(step), .text(id)])
            })
        case .session(let id, let secret):
            var found: (role: String, expires: Double, revoked: Bool)?
            try database.run("""
                SELECT c.role, s.expires_at, c.revoked_at FROM sessions s JOIN credentials c ON c.id = s.credential_id
                WHERE s.token_hash = ? AND s.credential_id = ?
                """, [.blob(SHA256.hash(Array(secret.utf8))), .text(id)]) { found = ($0.text(0), $0.real(1), !$0.isNull(2)) }
            guard let found, found.expires > now else { throw CoordinatorError(401, "bad_session", "unknown or expired session") }
            guard !found.revoked else { throw CoordinatorError(403, "revoked", "credential \(id) is revoked") }
            guard let role = Role(rawValue: found.role) else { throw CoordinatorError(500, "internal", "credential \(id) has no known role") }
            return (Principal(id: id, role: role), true, {})
        }
    }

    /// Replay protection: a nonce is accepted once per key within the skew
    /// window (remembered twice as long). Throws when it was seen; otherwise
    /// returns the write that records it, for the caller to commit.
    func unusedNonce(_ nonce: String, key: String, now: Double) throws -> () throws -> Void {
        try checkUnusedNonce(nonce, key: key, now: now)
        return { [database] in
            try database.run("DELETE FROM nonces WHERE seen_at < ?", [.real(now - 2 * Double(RequestSigning.defaultSkewWindow))])
            try database.run("INSERT OR REPLACE INTO nonces(key_id, nonce, seen_at) VALUES (?, ?, ?)", [.text(key), .text(nonce), .real(now)])
        }
    }

    /// Throws when `nonce` was seen for `key`: recorded, or accepted and awaiting its batch.
    func checkUnusedNonce(_ nonce: String, key: String, now: Double) throws {
        let window = Double(RequestSigning.defaultSkewWindow)
        var seen = pendingNonces[key + "\n" + nonce] != nil
        if !seen {
            try database.run("SELECT 1 FROM nonces WHERE key_id = ? AND nonce = ? AND seen_at >= ?",
                             [.text(key), .text(nonce), .real(now - 2 * window)]) { _ in seen = true }
        }
        guard !seen else { throw CoordinatorError(401, "replayed_nonce", "nonce already used") }
    }

    /// Writes the nonces accepted since the last batch (caller holds the lock, inside a transaction).
    func writePendingNonces() throws {
        guard !pendingNonces.isEmpty else { return }
        let oldest = pendingNonces.values.min()!
        try database.run("DELETE FROM nonces WHERE seen_at < ?", [.real(oldest - 2 * Double(RequestSigning.defaultSkewWindow))])
        var lastSeen: [String: Double] = [:]
        for (joined, seen) in pendingNonces {
            let parts = joined.split(separator: "\n", maxSplits: 1).map(String.init)
            try database.run("INSERT OR REPLACE INTO nonces(key_id, nonce, seen_at) VALUES (?, ?, ?)", [.text(parts[0]), .text(parts[1]), .real(seen)])
            lastSeen[parts[0]] = max(lastSeen[parts[0]] ?? 0, seen)
        }
        for (tenant, seen) in lastSeen {
            try database.run("UPDATE tenants SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE id = ?", [.real(seen), .text(tenant)])
        }
        pendingNonces = [:]
    }

    /// A tenant seen from a new source address raises an alert (not a refusal).
    private func noteAddress(tenant: String, address: String, now: Double) throws {
        var previous: String??
        try database.run("SELECT last_address FROM tenants WHERE id = ?", [.text(tenant)]) { previous = .some($0.isNull(0) ? nil : $0.text(0)) }
        guard let previous, previous != address else { return }
        try database.run("UPDATE tenants SET last_address = ? WHERE id = ?", [.text(address), .text(tenant)])
        if let old = previous { try alert(.newAddress, tenant: tenant, now: now, detail: "was \(old), now \(address)") }
    }

    // MARK: - Alerts

    public enum AlertKind: String, Sendable {
        case updateNorm = "update_norm"
        case updateDirection = "update_direction"
        case repeatedValidationFailures = "repeated_validation_failures"
        case newAddress = "new_address"
        case weightAboveCap = "weight_above_cap"
        /// The plan's privacy budget cannot pay for another round.
        case budgetExhausted = "budget_exhausted"
    }

    /// Counted in metrics, written to the audit log and logged by serve as a warning.
    /// `tenant` is the object the alert is about (a tenant's id, or "plan").
    func alert(_ kind: AlertKind, tenant: String, now: Double, detail: String) throws {
        metrics.add("sigilo_alerts_total{kind=\"\(kind.rawValue)\"}")
        try record(AuditEntry(time: now, actor: Principal.system.id, role: Role.system.rawValue, action: "alert.\(kind.rawValue)",
                              object: tenant, outcome: "flagged", detail: detail))
    }

    // MARK: - Audit trail

    /// One entry per request: who, what, outcome. Never bodies or credentials.
    /// Written in a batch with the requests that finish meanwhile; `then` runs
    /// once the entry is durable (the answer waits for it).
    public func recordRequest(actor: String, role: String, method: String, path: String, status: Int, code: String?, address: String, now: Double,
                              then: @escaping @Sendable () -> Void) {
        requestRecords.record(AuditEntry(time: now, actor: actor, role: role, action: "\(method) \(path)", object: "",
                                         outcome: code.map { "\(status) \($0)" } ?? "\(status)", address: address), then: then)
    }

    /// Appends request records in one transaction, under one signed head.
    func commitRequestRecords(_ entries: [AuditEntry]) {
        locked {
            do {
                try database.transaction {
                    try writePendingNonces()
                    try audit.append(entries)
                }
                metrics.add("sigilo_audit_batches_total")
            } catch {
                FileHandle.standardError.write(Data("audit: cannot record \(entries.count) requests: \(error)\n".utf8))
            }
        }
    }

    /// The signed head, as auditors keep it (`audit export --checkpoint-to`,
    /// `GET /v1/audit/head`); nil before the first entry.
    public func auditCheckpoint() throws -> AuditChain.Checkpoint? { try locked { try audit.checkpoint() } }

    /// Nil when today's log extends `checkpoint` (an auditor's earlier signed
    /// head): it is this coordinator's, the log still has at least that many
    /// entries, and the entry there still has that hash, so nothing up to it was
    /// removed or rewritten (the chain links every later entry to it; run with
    /// `verifyAudit`). `archived`: the entry's hash from verified segments when
    /// it was archived out of the table.
    public func auditProblem(extending checkpoint: AuditChain.Checkpoint, archived: [UInt8]?) throws -> String? {
        let n = checkpoint.head.sequence
        guard checkpoint.isSigned(by: signingKey.publicKey) else { return "the checkpoint of entry \(n) is not signed by this coordinator's key" }
        return try locked {
            let current = try audit.checkpoint()?.head.sequence ?? 0
            guard n <= current else {
                return "the log has \(current) entries but the checkpoint recorded \(n): entries \(current + 1)...\(n) were removed (rolled back)"
            }
            guard n > 0 else { return nil }
            let cut = try audit.cut()
            let recorded: [UInt8]?
            if n > cut?.sequence ?? 0 { recorded = try audit.recordedHash(of: n) }
            else if n == cut?.sequence { recorded = cut?.hash }
            else if let archived { recorded = archived }
            else { return "entry \(n) was archived out of the log: give the segments that hold it with --segment" }
            guard recorded == checkpoint.head.hash else {
                return "entry \(n) is not the one the checkpoint recorded: the log was rewritten up to it since"
            }
            return nil
        }
    }

    /// Verifies the audit chain and its signed head: nil when intact, else the first problem.
    public func verifyAudit() throws -> String? { try locked { try audit.verify() } }

    /// The start-up check: signatures, the ends of the chain and the unsigned
    /// tail, in time independent of the log's length (AuditStore.verifyEnds).
    public func verifyAuditEnds() throws -> String? { try locked { try audit.verifyEnds() } }

    /// Streams the audit entries in the table (after the cut), `pageSize` at a
    /// time, so neither memory nor the lock is held for the whole log.
    public func forEachAuditEntry(pageSize: Int = 10_000, _ body: (AuditEntry, [UInt8]) throws -> Void) throws {
        var after = try locked { try audit.cut()?.sequence ?? 0 }
        while true {
            let page = try locked { try audit.entries(after: after, limit: pageSize) }
            for (entry, hash) in page { try body(entry, hash) }
            guard let last = page.last, page.count == pageSize else { return }
            after = last.entry.sequence
        }
    }

    /// Where the table's chain starts: the signed cut of the last archive, if any.
    public func auditCut() throws -> AuditChain.Head? { try locked { try audit.cut() } }

    /// Retention: writes entries up to `sequence` (verified first) to a segment
    /// file with `write`, which must make it durable before returning; then, in
    /// one transaction, signs the cut, deletes those entries from the table and
    /// records `audit.archive`. The segment plus the remaining log still verify
    /// as one chain (`audit verify --segment`). Returns the archived range.
    public func archiveAudit(through sequence: Int64, now: Double,
                             write: (_ entries: (((AuditEntry, [UInt8]) throws -> Void) throws -> Void)) throws -> String) throws -> ClosedRange<Int64> {
        try locked {
            if let problem = try audit.verify() { throw CoordinatorError(409, "audit_broken", "the audit log is not intact (\(problem)); archive nothing") }
            let first = (try audit.cut()?.sequence ?? 0) + 1
            let last = try audit.head().sequence
            guard sequence >= first, sequence <= last else {
                throw CoordinatorError(400, "bad_range", first > last ? "the table holds no entries to archive" : "archive through an entry in \(first)...\(last)")
            }
            var archived: AuditChain.Head?
            let name = try write { emit in
                try audit.forEach(after: first - 1, limit: Int(sequence - first + 1)) { entry, hash in
                    try emit(entry, hash)
                    archived = AuditChain.Head(sequence: entry.sequence, hash: hash)
                }
            }
            guard let archived, archived.sequence == sequence else { throw CoordinatorError(500, "audit_archive", "the segment did not end at entry \(sequence)") }
            try database.transaction {
                try audit.cut(through: archived)
                try record(AuditEntry(time: now, actor: Principal.localOperator.id, role: Role.operator.rawValue, action: "audit.archive",
                                      object: "entries \(first)...\(sequence)",
                                      detail: "written to \(name); cut at entry \(sequence), hash \(Hex.encode(archived.hash))"))
            }
            return first...sequence
        }
    }

    /// How many entries the audit log holds (its last sequence number; verified logs have no gaps).
    public func auditEntryCount() throws -> Int64 { try locked { try audit.head().sequence } }

    /// Audit entries after `sequence`, at most `limit`.
    public func auditEntries(after sequence: Int64 = 0, limit: Int = Int.max) throws -> [(entry: AuditEntry, hash: [UInt8])] {
        try locked { try audit.entries(after: sequence, limit: limit) }
    }

    /// The privacy ledger as charged (for the auditor).
    public func ledgerRows() throws -> [LedgerRow] { try locked { try chargedRounds() } }

    public struct ModelInfo: Sendable, Equatable {
        public var version: UInt64
        public var sha256: String
        public var parent: UInt64?
        public var round: UInt64?
        public var epsilon: Double
        public var createdAt: Double
    }

    /// Every published model version with its epsilon at publication.
    public func modelVersions() throws -> [ModelInfo] {
        try locked {
            var out = [ModelInfo]()
            try database.run("SELECT version, sha256, parent, round, epsilon, created_at FROM models ORDER BY version") {
                out.append(ModelInfo(version: UInt64($0.integer(0)), sha256: $0.text(1), parent: $0.isNull(2) ? nil : UInt64($0.integer(2)),
                                     round: $0.isNull(3) ? nil : UInt64($0.integer(3)), epsilon: $0.real(4), createdAt: $0.real(5)))
            }
            return out
        }
    }

    /// Records an operator action taken on the host (backup, restore, verify).
    public func recordOperatorAction(_ action: String, object: String, detail: String = "", now: Double) throws {
        try locked {
            try record(AuditEntry(time: now, actor: Principal.localOperator.id, role: Role.operator.rawValue, action: action, object: object, detail: detail))
        }
    }
}

extension CoordinatorError {
    static func lockedOut(for seconds: Double) -> CoordinatorError {
        let wait = Int(seconds.rounded(.up))
        return CoordinatorError(429, "locked_out", "too many failed authentications; retry in \(wait) s", retryAfter: wait)
    }
}

extension CoordinatorService {
    /// Seconds until `address` is unlocked, or nil.
    func lockedOut(address: String, now: Double) -> Double? { locked { addressFailures.lockedFor(address, now: now) } }
}
