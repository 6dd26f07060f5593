import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloHTTP
import SigiloProtocol

/// Issue 19, point 7: credentials over months. The admin's credential and TOTP
/// secret rotate, sessions are listed and ended one by one or all at once,
/// auditors are listed; each change is audited and never shows a secret.
@Suite struct CredentialLifecycleTests {
    func session(_ h: Harness, credential: String, totp: TOTP) -> String? {
        h.now += 30
        let opened = h.send("POST", "/v1/admin/session",
                            headers: [("Authorization", "Bearer \(credential)"), ("Sigilo-TOTP", totp.code(step: TOTP.step(at: h.now)))])
        return Harness.json(opened)["session"] as? String
    }

    @Test func rotatingTheAdminRetiresTheOldCredentialTOTPAndSessions() throws {
        let h = try Harness()
        let old = h.admin
        let oldSession = try #require(session(h, credential: old.credential, totp: old.totp))
        let rotated = try h.service.rotateAdmin(by: .localOperator, now: h.now)
        #expect(rotated.credential != old.credential && rotated.totp.secret != old.totp.secret)

        #expect(h.send("GET", "/v1/admin/sessions", headers: [("Authorization", "Session \(oldSession)")]).status == 401)
        #expect(session(h, credential: old.credential, totp: old.totp) == nil)
        #expect(session(h, credential: old.credential, totp: rotated.totp) == nil)
        #expect(session(h, credential: rotated.credential, totp: old.totp) == nil)
        let fresh = try #require(session(h, credential: rotated.credential, totp: rotated.totp))
        #expect(h.send("GET", "/v1/admin/sessions", headers: [("Authorization", "Session \(fresh)")]).status == 200)

        let entries = try h.service.auditEntries().map { "\($0.entry)" }.joined(separator: "\n")
        #expect(try h.service.auditEntries().contains { $0.entry.action == "credential.rotate" && $0.entry.detail.contains("1 session(s) ended") })
        for secret in [rotated.credential, Base32.encode(rotated.totp.secret), Hex.encode(rotated.totp.secret)] { #expect(!entries.contains(secret)) }
        // The new secret is sealed like the first: not in the database in the clear.
        let database = try Data(contentsOf: h.directory.appendingPathComponent(CoordinatorService.databaseName))
        #expect(database.range(of: Data(rotated.totp.secret)) == nil)
    }

    @Test func sessionsAreListedAndEndedOneByOneOrAll() throws {
        let h = try Harness()
        let first = try #require(session(h, credential: h.admin.credential, totp: h.admin.totp))
        let second = try #require(session(h, credential: h.admin.credential, totp: h.admin.totp))
        let listed = h.send("GET", "/v1/admin/sessions", headers: [("Authorization", "Session \(first)")])
        let sessions = ((try JSONSerialization.jsonObject(with: Data(listed.body))) as? [[String: Any]]) ?? []
        #expect(sessions.count == 2)
        #expect(!String(decoding: listed.body, as: UTF8.self).contains(String(second.split(separator: ".")[1])), "a session secret was listed")
        // The id of the second: a prefix of its token's hash.
        let secondID = String(Hex.encode(SHA256.hash(Array(second.split(separator: ".")[1].utf8))).prefix(16))
        #expect(sessions.contains { $0["id"] as? String == secondID })
        #expect(h.send("POST", "/v1/admin/sessions/\(secondID)/revoke", headers: [("Authorization", "Session \(first)")]).status == 200)
        #expect(h.send("GET", "/v1/admin/sessions", headers: [("Authorization", "Session \(second)")]).status == 401)
        #expect(h.send("GET", "/v1/admin/sessions", headers: [("Authorization", "Session \(first)")]).status == 200)
        #expect(h.send("POST", "/v1/admin/sessions/\(secondID)/revoke", headers: [("Authorization", "Session \(first)")]).status == 404)
        #expect(h.send("POST", "/v1/admin/sessions/not-hex/revoke", headers: [("Authorization", "Session \(first)")]).status == 400)
        #expect(try h.service.revokeSessions(nil, by: .localOperator, now: h.now) == 1)
        #expect(h.send("GET", "/v1/admin/sessions", headers: [("Authorization", "Session \(first)")]).status == 401)
    }

    @Test func auditorsAreListedWithTheirStateButNeverTheirSecrets() throws {
        let h = try Harness()
        let kept = try h.service.createAuditor(name: "dpo", by: .localOperator, now: h.now)
        let gone = try h.service.createAuditor(name: "ex-dpo", by: .localOperator, now: h.now)
        try h.service.revokeCredential(gone.id, by: .localOperator, now: h.now + 1)
        let listed = h.send("GET", "/v1/admin/auditors", headers: h.adminHeaders())
        #expect(listed.status == 200)
        let auditors = ((try JSONSerialization.jsonObject(with: Data(listed.body))) as? [[String: Any]]) ?? []
        #expect(auditors.map { $0["name"] as? String } == ["dpo", "ex-dpo"])
        #expect(auditors[0]["revoked_at"] is NSNull && auditors[1]["revoked_at"] is NSNumber)
        let text = String(decoding: listed.body, as: UTF8.self)
        #expect(!text.contains(String(kept.credential.split(separator: ".")[1])))
        // Auditors cannot list auditors.
        #expect(h.send("GET", "/v1/admin/auditors", headers: [("Authorization", "Bearer \(kept.credential)")]).status == 403)
    }

    @Test func aTenantRotatesItsKeyWithProofFromBothKeys() throws {
        let h = try Harness()
        let tenant = try h.enrollTenant("loja")
        let other = try h.enrollTenant("vizinha")
        let next = try Ed25519.KeyPair.generate()
        func rotate(to key: [UInt8], proofBy signer: Ed25519.KeyPair, for id: String = tenant.id, old: [UInt8] = tenant.key.publicKey) throws -> HTTPResponse {
            let proof = try signer.sign(KeyRotation.message(tenant: id, oldKey: old, newKey: key))
            let body = Array(#"{"public_key":"\#(Hex.encode(key))","proof":"\#(Hex.encode(proof))"}"#.utf8)
            return h.send("POST", "/v1/tenant/key", body: body, headers: try h.signed("POST", "/v1/tenant/key", body: body, tenant: tenant.id, key: tenant.key))
        }
        func plan(_ key: Ed25519.KeyPair) throws -> Int {
            h.send("GET", "/v1/plan", headers: try h.signed("GET", "/v1/plan", tenant: tenant.id, key: key)).status
        }
        #expect(try plan(tenant.key) == 200) // its first request records its address
        let before = try h.snapshot()
        // A proof by the old key (not the holder of the new one), for another tenant, or to a key in use: refused, nothing changes.
        #expect(try rotate(to: next.publicKey, proofBy: tenant.key).status == 400)
        #expect(try rotate(to: next.publicKey, proofBy: next, for: other.id).status == 400)
        #expect(try rotate(to: other.key.publicKey, proofBy: other.key).status == 409)
        #expect(try h.snapshot() == before)
        #expect(try plan(tenant.key) == 200)

        #expect(try rotate(to: next.publicKey, proofBy: next).status == 200)
        #expect(try plan(tenant.key) == 401)
        #expect(try plan(next) == 200)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "tenant.key_rotate" && $0.entry.object == tenant.id })
        // The old key cannot rotate again (its requests no longer authenticate).
        #expect(try rotate(to: try Ed25519.KeyPair.generate().publicKey, proofBy: next).status == 401)
    }
}
