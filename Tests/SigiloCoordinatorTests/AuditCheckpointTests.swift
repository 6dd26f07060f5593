import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloSQLite

/// Issue 19, point 2: the audit log rolled back under an older signed head,
/// and an entry appended without the key. The signed head lives in the
/// database, written with the entries, so an entry beyond it has no honest
/// origin; an auditor's checkpoint catches what the key's own old signatures
/// would otherwise vouch for.
@Suite struct AuditCheckpointTests {
    func log(invites: Int) throws -> Harness {
        let h = try Harness()
        for i in 0..<invites { _ = try h.service.invite(name: "t\(i)", now: h.now) }
        return h
    }

    func copy(_ h: Harness) throws -> URL {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("sigilo-checkpoint-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: h.directory, to: copy)
        return copy
    }

    func database(_ directory: URL) throws -> Database {
        try Database(path: directory.appendingPathComponent(CoordinatorService.databaseName).path)
    }

    /// A chain-consistent entry appended after the signed head, as someone
    /// with the database but not the key would: an admin installing a plan.
    func forgeAppend(_ directory: URL) throws {
        let database = try database(directory)
        var last: (Int64, [UInt8])?
        try database.run("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1") { last = ($0.integer(0), $0.blob(1)) }
        let (sequence, hash) = try #require(last)
        let forged = AuditEntry(sequence: sequence + 1, time: 1_800_000_000, actor: "admin", role: "admin", action: "plan.set",
                                object: "plan 9", outcome: "ok", address: "10.0.0.1")
        try database.run("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [.integer(forged.sequence), .real(forged.time), .text(forged.actor), .text(forged.role), .text(forged.action),
                          .text(forged.object), .text(forged.outcome), .text(forged.address), .text(forged.detail),
                          .blob(forged.chainHash(previous: hash))])
    }

    @Test func anEntryAppendedWithoutTheKeyIsNamedAndNothingIsAppendedAfterIt() throws {
        let h = try log(invites: 5)
        let tampered = try copy(h)
        defer { try? FileManager.default.removeItem(at: tampered) }
        try forgeAppend(tampered)
        let service = try CoordinatorService(directory: tampered)
        let count = try service.auditEntryCount()
        for verdict in [try service.verifyAudit(), try service.verifyAuditEnds()] {
            #expect(verdict?.contains("entries \(count)...\(count) follow the signed head") == true, "\(verdict ?? "undetected")")
            #expect(verdict?.contains("without the coordinator's key") == true)
        }
        // The next real action does not sign over the forged entry: it fails, and changes nothing.
        #expect(throws: CoordinatorError.self) { _ = try service.invite(name: "nova", now: h.now) }
        #expect(try service.auditEntryCount() == count)
        #expect(try service.auditCheckpoint()?.head.sequence == count - 1)
    }

    @Test func aRollbackUnderAnOlderSignedHeadIsCaughtByACheckpoint() throws {
        let h = try log(invites: 3)
        // The state as it was (database and its signed head), kept by whoever will roll back.
        let old = try copy(h)
        defer { try? FileManager.default.removeItem(at: old) }
        for i in 0..<4 { _ = try h.service.invite(name: "more\(i)", now: h.now) }
        let checkpoint = try #require(try h.service.auditCheckpoint())
        #expect(try h.service.auditProblem(extending: checkpoint, archived: nil) == nil)

        // Put the old state back: alone, the log verifies (its head is genuinely signed) ...
        let rolledBack = try CoordinatorService(directory: old)
        #expect(try rolledBack.verifyAudit() == nil)
        // ... but not against the auditor's checkpoint.
        let problem = try rolledBack.auditProblem(extending: checkpoint, archived: nil)
        #expect(problem?.contains("rolled back") == true, "\(problem ?? "undetected")")

        // Rolled back and then grown to the same length with other entries: rewritten.
        for i in 0..<4 { _ = try rolledBack.invite(name: "other\(i)", now: h.now + 1) }
        #expect(try rolledBack.auditEntryCount() == checkpoint.head.sequence)
        #expect(try rolledBack.verifyAudit() == nil)
        #expect(try rolledBack.auditProblem(extending: checkpoint, archived: nil)?.contains("rewritten") == true)

        // A checkpoint made up without the key proves nothing and is refused.
        var forged = checkpoint
        forged.signature[0] ^= 1
        #expect(try h.service.auditProblem(extending: forged, archived: nil)?.contains("not signed") == true)
    }

    @Test func aCheckpointOfArchivedEntriesIsCheckedInTheSegments() throws {
        let h = try log(invites: 10)
        let checkpoint = try #require(try h.service.auditCheckpoint())
        let segment = h.directory.appendingPathComponent("a.jsonl").path
        _ = try h.service.invite(name: "later", now: h.now)
        _ = try h.service.archiveAudit(through: checkpoint.head.sequence + 1, now: h.now) { entries in
            var text = ""
            try entries { text += CoordinatorRoutes.auditJSON($0, hash: $1).rendered() + "\n" }
            try Data(text.utf8).write(to: URL(fileURLWithPath: segment))
            return "a.jsonl"
        }
        #expect(try h.service.auditProblem(extending: checkpoint, archived: nil)?.contains("--segment") == true)
        var archived: [UInt8]?
        #expect(try AuditSegment.verify([segment], endingAt: try h.service.auditCut()) { entry in
            if entry.sequence == checkpoint.head.sequence { archived = entry.hash }
        } == nil)
        #expect(try h.service.auditProblem(extending: checkpoint, archived: archived) == nil)
        #expect(try h.service.auditProblem(extending: checkpoint, archived: [UInt8](repeating: 1, count: 32))?.contains("rewritten") == true)
    }

    @Test func theHeadIsServedToAuditorsAsACheckpoint() throws {
        let h = try log(invites: 2)
        let auditor = try h.service.createAuditor(name: "dpo", by: .localOperator, now: h.now)
        let response = h.send("GET", "/v1/audit/head", headers: [("Authorization", "Bearer \(auditor.credential)")])
        #expect(response.status == 200)
        let checkpoint = try #require(AuditChain.Checkpoint(json: Data(response.body)))
        #expect(checkpoint.isSigned(by: h.service.signingKey.publicKey))
        // The head as it was when answered; the request's own record comes after it.
        #expect(try h.service.auditProblem(extending: checkpoint, archived: nil) == nil)
        #expect(h.send("GET", "/v1/audit/head").status == 401)
    }

    /// States from before schema 6 kept the head in `audit.head`: the first
    /// open moves it into the database after checking the chain, and refuses
    /// a forged file.
    @Test func aLegacyHeadFileIsAdoptedOnceVerified() throws {
        let h = try log(invites: 4)
        let head = try #require(try h.service.auditCheckpoint())
        func legacy(signature: [UInt8]) throws -> URL {
            let state = try copy(h)
            let database = try database(state)
            try database.execute("DROP TABLE audit_head; ALTER TABLE credentials DROP COLUMN totp_sealed; ALTER TABLE tenants DROP COLUMN missed_rounds; "
                                 + "ALTER TABLE tenants DROP COLUMN last_seen; DROP INDEX submissions_by_tenant; "
                                 + "DROP TABLE round_sums; ALTER TABLE rounds ADD COLUMN sum BLOB; "
                                 + "DROP TABLE secure_keys; DROP TABLE secure_shares; DROP TABLE secure_reveals; "
                                 + ["secure_threshold", "secure_degree", "graph_seed", "secure_stage"].map { "ALTER TABLE rounds DROP COLUMN \($0);" }.joined()
                                 + "PRAGMA user_version = 5;")
            try Data("\(head.head.sequence) \(Hex.encode(head.head.hash)) \(Hex.encode(signature))\n".utf8)
                .write(to: state.appendingPathComponent(AuditStore.legacyHeadName))
            return state
        }
        let good = try legacy(signature: head.signature)
        defer { try? FileManager.default.removeItem(at: good) }
        let migrated = try CoordinatorService(directory: good)
        #expect(try migrated.verifyAudit() == nil)
        #expect(try migrated.auditCheckpoint() == head)
        #expect(!FileManager.default.fileExists(atPath: good.appendingPathComponent(AuditStore.legacyHeadName).path))

        let bad = try legacy(signature: [UInt8](repeating: 0, count: 64))
        defer { try? FileManager.default.removeItem(at: bad) }
        #expect(throws: CoordinatorError.self) { _ = try CoordinatorService(directory: bad) }
    }
}
