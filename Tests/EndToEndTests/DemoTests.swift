import Foundation
import Testing

/// The README's main command, shortened: the same script with already-built binaries and two rounds.
@Suite(.serialized) struct DemoTests {
    @Test func demoRunsGreenThroughTheRealProcesses() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let work = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: work) }
        let (status, text) = try Binary.script(root.appendingPathComponent("tools/demo").path, [work.path],
                                               environment: ["ROUNDS": "2", "VANISH_AFTER": "1"])
        #expect(status == 0, "\(text.suffix(2000))")
        #expect(text.contains("round 1: held-out accuracy"))
        // One of five tenants is killed after round 1; round 2 completes without it.
        #expect(text.contains("round 1: held-out accuracy") && text.contains("5 tenants"), "\(text.suffix(2000))")
        #expect(text.contains("tenant-05-telecom vanishes"))
        #expect(text.contains("round 2: held-out accuracy"))
        // The shop personalises the newest model the coordinator published, not the one it last trained on.
        let pulled = try #require(text.firstMatch(of: /cached global model version (\d+) \(had \d+\)|global model version (\d+) is already the newest/))
        let version = try #require(pulled.1 ?? pulled.2)
        #expect(text.contains("personalised global model version \(version) "))
        #expect(text.contains("\"decision\":\"handoff\""))
        #expect(text.contains("privacy spent on this tenant's customers"))
        #expect(text.contains("audit log intact"))
        // Driven by configuration files; it shows what an operator watches.
        #expect(text.contains("every command reading \(work.path)/coordinator.conf"))
        #expect(text.contains("what an operator watches"))
        // Each tenant's last contact, the vanished one's included (killed in round 1 or 2, depending on timing).
        #expect(text.range(of: #"tenant-\d\t\S+Z\t(none|[12])\t[012]\ttenant-05-telecom"#, options: .regularExpression) != nil, "\(text.suffix(3000))")
        // Everything was stopped: no coordinator or tenant of this run is left.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/bin/sh")
        ps.arguments = ["-c", "ps aux | grep -E '[s]igilo-(coordinator|tenant) ' | grep -c '\(work.path)' || true"]
        let psOut = Pipe()
        ps.standardOutput = psOut
        try ps.run()
        ps.waitUntilExit()
        #expect(String(decoding: psOut.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) == "0")
    }
}
