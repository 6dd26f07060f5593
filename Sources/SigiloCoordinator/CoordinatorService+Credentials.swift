import Foundation
import SigiloCrypto
import SigiloProtocol
import SigiloSQLite

/// Keeping credentials over months (issue 19, point 7): rotating the admin's
/// credential and TOTP secret, listing and revoking sessions, listing auditors.
/// Every change is one transaction with its audit entry.
extension CoordinatorService {
    public struct AuditorInfo: Sendable, Equatable {
        public var id: String
        public var name: String
        public var createdAt: Double
        public var revokedAt: Double?
    }

    /// Auditor credentials, revoked ones included (never their secrets).
    public func auditors() throws -> [AuditorInfo] {
        try locked {
            var out = [AuditorInfo]()
            try database.run("SELECT id, name, created_at, revoked_at FROM credentials WHERE role = 'auditor' ORDER BY created_at, id") {
                out.append(AuditorInfo(id: $0.text(0), name: $0.text(1), createdAt: $0.real(2), revokedAt: $0.isNull(3) ? nil : $0.real(3)))
            }
            return out
        }
    }

    public struct SessionInfo: Sendable, Equatable {
        /// The first 16 hex digits of the session token's SHA-256: names it without revealing it.
        public var id: String
        public var credential: String
        public var expiresAt: Double
    }

    /// Sessions not yet expired.
    public func sessions(now: Double) throws -> [SessionInfo] {
        try locked {
            var out = [SessionInfo]()
            try database.run("SELECT token_hash, credential_id, expires_at FROM sessions WHERE expires_at > ? ORDER BY expires_at", [.real(now)]) {
                out.append(SessionInfo(id: String(Hex.encode($0.blob(0)).prefix(16)), credential: $0.text(1), expiresAt: $0.real(2)))
            }
            return out
        }
    }

    /// Ends one session (by the id `sessions` shows) or, with nil, every session; returns how many ended.
    @discardableResult
    public func revokeSessions(_ id: String?, by actor: Principal, now: Double) throws -> Int {
        if let id { guard id.utf8.count == 16, Hex.decode(id) != nil else { throw CoordinatorError(400, "bad_session_id", "a session id is 16 hex digits") } }
        return try locked {
            try database.transaction {
                let ended = try id.map { try database.run("DELETE FROM sessions WHERE hex(token_hash) LIKE ?", [.text($0.uppercased() + "%")]) }
                    ?? database.run("DELETE FROM sessions")
                if id != nil, ended == 0 { throw CoordinatorError(404, "unknown_session", "no session \(id!)") }
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "session.revoke",
                                      object: id ?? "all", detail: "\(ended) session(s) ended"))
                return ended
            }
        }
    }

    /// A new admin credential and TOTP secret (sealed), shown once; the old
    /// ones stop working and every admin session ends, in one transaction.
    public func rotateAdmin(by actor: Principal, now: Double) throws -> AdminSecrets {
        let issued = try IssuedSecret.generate(id: "admin")
        let totp = try TOTP.generate()
        let sealed = try sealingKey().seal(totp.secret, context: Self.totpContext(issued.id))
        try locked {
            try database.transaction {
                let changed = try database.run("""
                    UPDATE credentials SET secret_hash = ?, totp_secret = ?, totp_sealed = 1, totp_last_step = 0 WHERE id = 'admin' AND role = 'admin'
                    """, [.blob(issued.hash), .blob(sealed)])
                guard changed == 1 else { throw CoordinatorError(404, "no_admin", "this state has no admin credential") }
                let ended = try database.run("DELETE FROM sessions WHERE credential_id = 'admin'")
                try record(AuditEntry(time: now, actor: actor.id, role: actor.role.rawValue, action: "credential.rotate",
                                      object: "admin", detail: "new credential and TOTP secret; \(ended) session(s) ended"))
            }
        }
        return AdminSecrets(credential: issued.token, totp: totp,
                            provisioningURI: totp.provisioningURI(account: "admin", issuer: "Sigilo coordinator"))
    }
}

extension CoordinatorService {
    /// Replaces an active tenant's identity key. `proof`: the new key's
    /// signature over `KeyRotation.message` (the caller authenticated the
    /// request with the old key). One transaction with its audit entry.
    public func rotateKey(tenant: String, newKey: [UInt8], proof: [UInt8], now: Double) throws {
        guard newKey.count == Ed25519.publicKeyBytes else { throw CoordinatorError(400, "bad_public_key", "public key must be 32 bytes") }
        try locked {
            try database.transaction {
                var old: [UInt8]?
                try database.run("SELECT public_key FROM tenants WHERE id = ? AND status = 'active'", [.text(tenant)]) { old = $0.blob(0) }
                guard let old else { throw CoordinatorError(403, "revoked", "tenant \(tenant) is not active") }
                guard Ed25519.verify(signature: proof, message: KeyRotation.message(tenant: tenant, oldKey: old, newKey: newKey), publicKey: newKey) else {
                    throw CoordinatorError(400, "bad_proof", "\"proof\" is not the new key's signature over the rotation of this tenant's current key")
                }
                var taken = false
                try database.run("SELECT 1 FROM tenants WHERE public_key = ?", [.blob(newKey)]) { _ in taken = true }
                guard !taken else { throw CoordinatorError(409, "key_in_use", "that public key is already registered") }
                try database.run("UPDATE tenants SET public_key = ? WHERE id = ?", [.blob(newKey), .text(tenant)])
                try record(AuditEntry(time: now, actor: tenant, role: Role.tenant.rawValue, action: "tenant.key_rotate", object: tenant,
                                      detail: "key \(Hex.encode(SHA256.hash(old)).prefix(16)) replaced by \(Hex.encode(SHA256.hash(newKey)).prefix(16))"))
            }
        }
    }
}
