import Foundation
import Testing

/// Issue 19, point 7: a tenant rotates its identity key through the real
/// programs, and an attempt whose answer was lost is finished, not locked out.
@Suite(.serialized) struct KeyRotationEndToEndTests {
    @Test func rotateKeyThenFinishAnInterruptedRotation() throws {
        let world = try TenantWorld()
        defer { world.close() }
        let args = try world.tenant("loja")
        let state = world.dir.appendingPathComponent("loja")
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token-file", "-"] + args, input: try world.invite() + "\n").status == 0)
        let identity = state.appendingPathComponent("identity.key")
        let first = try Data(contentsOf: identity)

        let rotated = try Binary.run("sigilo-tenant", ["rotate-key"] + args)
        #expect(rotated.status == 0 && rotated.stdout.contains("rotated the identity key"), "\(rotated.stderr)")
        let second = try Data(contentsOf: identity)
        #expect(second != first)
        #expect(try Binary.run("sigilo-tenant", ["pull"] + args).status == 0)

        // The answer to a rotation is lost: the coordinator holds the new key, the store still signs with the old one.
        #expect(try Binary.run("sigilo-tenant", ["rotate-key"] + args).status == 0)
        let third = try Data(contentsOf: identity)
        try third.write(to: state.appendingPathComponent("identity.key.next"))
        try second.write(to: identity)
        for file in ["identity.key", "identity.key.next"] { chmod(state.appendingPathComponent(file).path, 0o600) }
        #expect(try Binary.run("sigilo-tenant", ["pull"] + args).status != 0) // the old key no longer authenticates
        let finished = try Binary.run("sigilo-tenant", ["rotate-key"] + args)
        #expect(finished.status == 0 && finished.stdout.contains("interrupted rotation"), "\(finished.stdout) \(finished.stderr)")
        #expect(try Data(contentsOf: identity) == third)
        #expect(!FileManager.default.fileExists(atPath: state.appendingPathComponent("identity.key.next").path))
        let pulled = try Binary.run("sigilo-tenant", ["pull"] + args)
        #expect(pulled.status == 0, "\(pulled.stdout) \(pulled.stderr)")
    }
}
