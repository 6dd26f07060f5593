import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloSQLite

/// Retention and scale of the audit log: archived segments plus the table stay
/// one verifiable chain from a signed cut; export streams in pages; the
/// start-up check reads the ends of the chain, not all of it.
@Suite struct AuditRetentionTests {
    /// A log of `invites` + 1 entries (the admin's creation first).
    func log(invites: Int) throws -> Harness {
        let h = try Harness()
        for i in 0..<invites { _ = try h.service.invite(name: "t\(i)", now: h.now) }
        return h
    }

    /// Archives through `sequence` into a segment file beside the state; returns its path.
    func archive(_ h: Harness, through sequence: Int64, name: String) throws -> String {
        let path = h.directory.appendingPathComponent(name).path
        _ = try h.service.archiveAudit(through: sequence, now: h.now) { entries in
            var text = ""
            try entries { text += CoordinatorRoutes.auditJSON($0, hash: $1).rendered() + "\n" }
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return name
        }
        return path
    }

    @Test func archivedSegmentsAndTheLogVerifyAsOneChain() throws {
        let h = try log(invites: 30)
        let first = try archive(h, through: 10, name: "a.jsonl")
        let second = try archive(h, through: 20, name: "b.jsonl")
        let cut = try #require(try h.service.auditCut())
        #expect(cut.sequence == 20)
        #expect(try h.service.verifyAudit() == nil)
        #expect(try AuditSegment.verify([first, second], endingAt: cut) == nil)
        // The table starts after the cut; appending still chains (the archive itself is an entry).
        #expect(try h.service.auditEntries().first?.entry.sequence == 21)
        #expect(try h.service.auditEntries().contains { $0.entry.action == "audit.archive" && $0.entry.object == "entries 11...20" })
        _ = try h.service.invite(name: "later", now: h.now)
        #expect(try h.service.verifyAudit() == nil)

        // A segment missing, out of order, or edited is named.
        #expect(try AuditSegment.verify([second], endingAt: cut)?.contains("entry 1 is missing") == true)
        #expect(try AuditSegment.verify([first], endingAt: cut)?.contains("a segment is missing") == true)
        #expect(try AuditSegment.verify([second, first], endingAt: cut) != nil)
        var lines = try String(contentsOfFile: first, encoding: .utf8).split(separator: "\n").map(String.init)
        lines[4] = lines[4].replacingOccurrences(of: "\"actor\":\"", with: "\"actor\":\"x")
        try (lines.joined(separator: "\n") + "\n").write(toFile: first, atomically: true, encoding: .utf8)
        let tampered = try AuditSegment.verify([first, second], endingAt: cut)
        #expect(tampered == "\(first):5: entry 5 was altered (its hash does not match its contents and predecessor)", "\(String(describing: tampered)) \(lines[4])")
    }

    @Test func aForgedOrMovedCutIsRefused() throws {
        let h = try log(invites: 12)
        _ = try archive(h, through: 6, name: "a.jsonl")
        let database = try Database(path: h.directory.appendingPathComponent(CoordinatorService.databaseName).path)
        // Claiming more was archived (to hide entries 7 and 8) breaks the cut's signature.
        try database.execute("DELETE FROM audit_log WHERE sequence <= 8; UPDATE audit_cut SET sequence = 8")
        let reopened = try CoordinatorService(directory: h.directory)
        #expect(try reopened.verifyAudit()?.contains("not signed by this coordinator's key") == true)
        #expect(try reopened.verifyAuditEnds()?.contains("not signed by this coordinator's key") == true)
    }

    @Test func archivingRefusesRangesOutsideTheTableAndBrokenLogs() throws {
        let h = try log(invites: 5)
        _ = try archive(h, through: 3, name: "a.jsonl")
        #expect(throws: CoordinatorError.self) { _ = try archive(h, through: 2, name: "b.jsonl") } // already archived
        #expect(throws: CoordinatorError.self) { _ = try archive(h, through: 99, name: "c.jsonl") } // not written yet
        let database = try Database(path: h.directory.appendingPathComponent(CoordinatorService.databaseName).path)
        try database.execute("UPDATE audit_log SET detail = 'edited' WHERE sequence = 5")
        let reopened = try CoordinatorService(directory: h.directory)
        let error = #expect(throws: CoordinatorError.self) { _ = try reopened.archiveAudit(through: 5, now: h.now) { _ in "d.jsonl" } }
        #expect(error?.code == "audit_broken")
    }

    @Test func exportStreamsInPagesAndMissesNothing() throws {
        let h = try log(invites: 45)
        _ = try archive(h, through: 7, name: "a.jsonl")
        var sequences = [Int64]()
        try h.service.forEachAuditEntry(pageSize: 10) { entry, _ in sequences.append(entry.sequence) }
        let count = try h.service.auditEntryCount()
        #expect(sequences == Array(8...count))
    }

    /// What `serve` checks at start: signatures, the entry at the signed head
    /// and the unsigned tail after it. An edit in the middle is the full
    /// verification's to find (`audit verify`, `serve --verify-audit`).
    @Test func theStartUpCheckReadsTheEndsOfTheChain() throws {
        let h = try log(invites: 20)
        #expect(try h.service.verifyAuditEnds() == nil)
        let path = h.directory.appendingPathComponent(CoordinatorService.databaseName).path
        func after(_ sql: String) throws -> (ends: String?, full: String?) {
            let copy = FileManager.default.temporaryDirectory.appendingPathComponent("sigilo-ends-\(UUID().uuidString)")
            try FileManager.default.copyItem(at: h.directory, to: copy)
            defer { try? FileManager.default.removeItem(at: copy) }
            _ = path
            try Database(path: copy.appendingPathComponent(CoordinatorService.databaseName).path).execute(sql)
            let service = try CoordinatorService(directory: copy)
            return (try service.verifyAuditEnds(), try service.verifyAudit())
        }
        let last = try h.service.auditEntryCount()
        let head = try after("UPDATE audit_log SET detail = 'edited' WHERE sequence = \(last)")
        #expect(head.ends != nil && head.full != nil)
        let truncated = try after("DELETE FROM audit_log WHERE sequence = \(last)")
        #expect(truncated.ends?.contains("the signed head, is missing") == true)
        let middle = try after("UPDATE audit_log SET detail = 'edited' WHERE sequence = 7")
        #expect(middle.ends == nil)
        #expect(middle.full?.contains("entry 7 was altered") == true)
    }
}
