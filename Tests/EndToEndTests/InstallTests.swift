import Foundation
import Testing

/// Issue 23: `tools/install PREFIX` as a new operator runs it (with the
/// already-built binaries, as the demo's tests do).
@Suite struct InstallTests {
    @Test func installPutsProgramsEncoderAndManPagesUnderThePrefix() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let prefix = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: prefix) }
        let (status, text) = try Binary.script(root.appendingPathComponent("tools/install").path, [prefix.path])
        #expect(status == 0, "\(text)")
        let files = FileManager.default
        for program in ["sigilo-coordinator", "sigilo-tenant", "sigilo-eval"] {
            #expect(files.isExecutableFile(atPath: prefix.appendingPathComponent("bin/\(program)").path))
            let page = try String(contentsOf: prefix.appendingPathComponent("share/man/man1/\(program).1"), encoding: .utf8)
            #expect(page.hasPrefix(".TH \(program.uppercased()) 1 "), "\(program)")
            #expect(page.contains("\n.SH CONFIGURATION\n") && page.contains("\n.SH EXIT STATUS\n"))
            // No line of a help text reads as a roff request.
            let requests = page.split(separator: "\n").filter { $0.hasPrefix(".") }.map { String($0.prefix(3)) }
            #expect(Set(requests).isSubset(of: [".TH", ".SH", ".SS", ".nf", ".fi", ".B ", ".BR"]), "\(Set(requests))")
        }
        // Every command has its section, two-word ones included.
        let coordinator = try String(contentsOf: prefix.appendingPathComponent("share/man/man1/sigilo-coordinator.1"), encoding: .utf8)
        for command in ["serve", "tenant invite", "audit archive", "status", "admin tenant invite"] { #expect(coordinator.contains("\n.SS \(command)\n"), "\(command)") }
        #expect(coordinator.contains("Usage: sigilo-coordinator audit archive"))
        let encoder = prefix.appendingPathComponent("share/sigilo/e5-small-enpt-q4.sgle").path
        #expect(files.fileExists(atPath: encoder) && files.fileExists(atPath: encoder.replacingOccurrences(of: ".sgle", with: ".LICENSE")))
        // Run by path, the installed program works.
        let installed = Process()
        installed.executableURL = prefix.appendingPathComponent("bin/sigilo-tenant")
        installed.arguments = ["--help"]
        installed.standardOutput = FileHandle.nullDevice
        try installed.run()
        installed.waitUntilExit()
        #expect(installed.terminationStatus == 0)
        // Without a prefix it says how to use it.
        let usage = try Binary.script(root.appendingPathComponent("tools/install").path, [])
        #expect(usage.status == 64 && usage.output.contains("Usage: tools/install PREFIX"), "\(usage.output)")
    }

}
