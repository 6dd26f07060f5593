import Foundation
import Testing

/// Issue 23, through the real programs: `sigilo-tenant round` says why no
/// round is open (here: the plan waits for a second tenant), not only that none is.
@Suite(.serialized) struct NoRoundReasonEndToEndTests {
    @Test func theTenantCommandSaysWhyThereIsNoRound() throws {
        let world = try TenantWorld(minimumTenants: 2)
        defer { world.close() }
        let args = try world.tenant("sozinha")
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token-file", "-"] + args, input: try world.invite() + "\n").status == 0)
        usleep(500_000) // a maintenance tick of the coordinator
        let round = try Binary.run("sigilo-tenant", ["round"] + args)
        #expect(round.status == 75)
        #expect((round.stdout + round.stderr).contains("waiting for tenants (1 of 2)"), "\(round.stdout) \(round.stderr)")
        // The tenant's own status as one JSON object, for monitoring (issue 23).
        let status = try Binary.run("sigilo-tenant", ["status", "--json"] + args)
        #expect(status.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect((object["tenant_id"] as? String)?.isEmpty == false)
        #expect(object["coordinator"] as? String == world.url)
        #expect(object["last_round"] is NSNull && object["model_version"] is NSNull && object["personalised_from_version"] is NSNull)
    }
}
