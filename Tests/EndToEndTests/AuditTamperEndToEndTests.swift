import Foundation
import Testing
import SigiloCoordinator
import SigiloSQLite

/// Issue 19, point 2, through the real programs: a state directory put back
/// from an older copy, and an entry added to the database without the key.
@Suite(.serialized) struct AuditTamperEndToEndTests {
    func coordinator(_ arguments: [String]) throws -> Binary.Result {
        try Binary.run("sigilo-coordinator", arguments)
    }

    @Test func aRolledBackStateFailsTheAuditorsCheckpoint() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, _) = try coordinatorState(in: dir, tenants: 1)
        let older = dir.appendingPathComponent("older")
        try FileManager.default.copyItem(at: state, to: older)
        for name in ["b", "c"] { #expect(try coordinator(["tenant", "invite", name, "--state", state.path]).status == 0) }
        let checkpoint = dir.appendingPathComponent("checkpoint.json").path
        let export = try coordinator(["audit", "export", "--state", state.path, "--to", dir.appendingPathComponent("audit.jsonl").path,
                                      "--checkpoint-to", checkpoint])
        #expect(export.status == 0, "\(export.stderr)")
        #expect(try coordinator(["audit", "verify", "--state", state.path, "--checkpoint", checkpoint]).stdout.contains("extends 1 checkpoint"))

        // The operator (or an intruder) puts the older copy back: its own signatures are genuine.
        try FileManager.default.removeItem(at: state)
        try FileManager.default.moveItem(at: older, to: state)
        #expect(try coordinator(["audit", "verify", "--state", state.path]).status == 0)
        let caught = try coordinator(["audit", "verify", "--state", state.path, "--checkpoint", checkpoint])
        #expect(caught.status == 65, "\(caught.stdout)")
        #expect(caught.stderr.contains("does NOT extend checkpoint") && caught.stderr.contains("rolled back"), "\(caught.stderr)")

        let garbled = dir.appendingPathComponent("garbled.json").path
        try Data("{\"sequence\": 3}".utf8).write(to: URL(fileURLWithPath: garbled))
        #expect(try coordinator(["audit", "verify", "--state", state.path, "--checkpoint", garbled]).status == 65)
        #expect(try coordinator(["audit", "verify", "--state", state.path, "--checkpoint", dir.appendingPathComponent("none").path]).status == 66)
    }

    @Test func anEntryAppendedWithoutTheKeyStopsServeAndEveryWrite() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, _) = try coordinatorState(in: dir, tenants: 1)
        // A chain-consistent "admin installed a plan" entry, written straight into the database.
        let database = try Database(path: state.appendingPathComponent("coordinator.sqlite").path)
        var last: (Int64, [UInt8])?
        try database.run("SELECT sequence, hash FROM audit_log ORDER BY sequence DESC LIMIT 1") { last = ($0.integer(0), $0.blob(1)) }
        let (sequence, hash) = try #require(last)
        let forged = AuditEntry(sequence: sequence + 1, time: Date().timeIntervalSince1970, actor: "admin", role: "admin",
                                action: "plan.set", object: "plan 2", outcome: "ok", address: "10.0.0.1")
        try database.run("INSERT INTO audit_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [.integer(forged.sequence), .real(forged.time), .text(forged.actor), .text(forged.role), .text(forged.action),
                          .text(forged.object), .text(forged.outcome), .text(forged.address), .text(forged.detail),
                          .blob(forged.chainHash(previous: hash))])

        let verify = try coordinator(["audit", "verify", "--state", state.path])
        #expect(verify.status == 65 && verify.stderr.contains("appended without the coordinator's key"), "\(verify.stderr)")
        let serve = try coordinator(["serve", "--state", state.path, "--listen", "127.0.0.1:0"])
        #expect(serve.status == 65 && serve.stderr.contains("follow the signed head"), "\(serve.stderr)")
        let invite = try coordinator(["tenant", "invite", "d", "--state", state.path])
        #expect(invite.status != 0 && invite.stderr.contains("does not end at its signed head"), "\(invite.stderr)")
        #expect(try coordinator(["audit", "verify", "--state", state.path]).stderr.contains("entries \(sequence + 1)...\(sequence + 1)"))
    }
}
