import Foundation
import Testing
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloProtocol

/// The careless operator, through the real programs: state made in a shared
/// directory, a second server started on the same state, commands that change
/// what a running server holds. Each is refused or repaired, with a message that
/// says what to do, and nothing is lost.
@Suite(.serialized) struct OperatorMistakeTests {
    func mode(_ path: String) throws -> Int { try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! Int }

    @Test func initMakesAnExistingDirectoryPrivateAndServeRefusesExposedState() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        #expect(try Binary.run("sigilo-coordinator", ["init", "--state", state.path, "--secrets-to", dir.appendingPathComponent("admin.json").path]).status == 0)
        #expect(try mode(state.path) == 0o700)
        for name in try FileManager.default.contentsOfDirectory(atPath: state.path) {
            #expect(try mode(state.appendingPathComponent(name).path) == 0o600, "\(name)")
        }

        chmod(state.path, 0o755)
        let openDirectory = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--listen", "127.0.0.1:0"])
        #expect(openDirectory.status == 77 && openDirectory.stderr.contains("chmod 700 \(state.path)"), "\(openDirectory.stderr)")
        chmod(state.path, 0o700)
        let database = state.appendingPathComponent("coordinator.sqlite").path
        chmod(database, 0o644)
        let openFile = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--listen", "127.0.0.1:0"])
        #expect(openFile.status == 77 && openFile.stderr.contains("chmod 600 \(database)"), "\(openFile.stderr)")
        chmod(database, 0o600)
        let server = try RunningCoordinator(state: state)
        #expect(server.stop() == 0)
    }

    /// Point 6: the TOTP secret is sealed with a key outside the state
    /// directory, so the database, a copy of the directory or a backup does
    /// not reveal it; `serve` needs that key and refuses a wrong or missing one.
    @Test func theTOTPSecretIsSealedWithAKeyOutsideTheState() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("state"), secretsFile = dir.appendingPathComponent("admin.json")
        let key = dir.appendingPathComponent("state.key")
        let initialised = try Binary.run("sigilo-coordinator", ["init", "--state", state.path, "--secrets-to", secretsFile.path])
        #expect(initialised.status == 0 && initialised.stdout.contains(key.path), "\(initialised.stdout)")
        #expect(try mode(key.path) == 0o600)
        let secrets = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: secretsFile)) as? [String: String])
        let totpText = try #require(secrets["totp_secret"]), credential = try #require(secrets["admin_credential"])
        let totp = TOTP(secret: try #require(Base32.decode(totpText)))
        let backup = dir.appendingPathComponent("backup.sgl")
        #expect(try Binary.run("sigilo-coordinator", ["backup", "--to", backup.path, "--state", state.path]).status == 0)
        var places = [backup.path]
        for name in try FileManager.default.contentsOfDirectory(atPath: state.path) { places.append(state.appendingPathComponent(name).path) }
        for path in places {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(find(bytes, totp.secret, from: 0) == nil, "the TOTP secret is readable in \(path)")
        }

        // Without the key, with a wrong one, or with one inside the state directory: no serving.
        try FileManager.default.moveItem(at: key, to: dir.appendingPathComponent("kept.key"))
        let missing = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--listen", "127.0.0.1:0"])
        #expect(missing.status == 66 && missing.stderr.contains("--key-file"), "\(missing.stderr)")
        #expect(!FileManager.default.fileExists(atPath: key.path), "serve made up a key for sealed secrets")
        let other = dir.appendingPathComponent("other.key")
        try Data((String(repeating: "ab", count: 32) + "\n").utf8).write(to: other)
        chmod(other.path, 0o600)
        let wrong = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--key-file", other.path, "--listen", "127.0.0.1:0"])
        #expect(wrong.status != 0 && wrong.stderr.contains("wrong --key-file"), "\(wrong.stderr)")
        let inside = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--key-file", state.appendingPathComponent("k").path])
        #expect(inside.status == 64 && inside.stderr.contains("outside"), "\(inside.stderr)")
        chmod(dir.appendingPathComponent("kept.key").path, 0o644)
        let exposed = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--key-file", dir.appendingPathComponent("kept.key").path])
        #expect(exposed.status == 77 && exposed.stderr.contains("chmod 600"), "\(exposed.stderr)")
        chmod(dir.appendingPathComponent("kept.key").path, 0o600)

        // With the key, the admin's second factor works.
        let server = try RunningCoordinator(state: state, arguments: ["--key-file", dir.appendingPathComponent("kept.key").path, "--listen", "127.0.0.1:0"])
        defer { _ = server.stop() }
        let opened = http("POST", server.url.appendingPathComponent("v1/admin/session"),
                          headers: [("Authorization", "Bearer \(credential)"),
                                    ("Sigilo-TOTP", totp.code(step: TOTP.step(at: Date().timeIntervalSince1970)))])
        #expect(opened.status == 201)
    }

    /// Issue 23's small items: a group word asks for its commands, a typo gets a
    /// suggestion, a backup into a missing folder is an I/O error (74) recorded
    /// nowhere, and a plan with an unknown field is refused by name.
    @Test func typosAndMissingFoldersGetPreciseAnswers() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, _) = try coordinatorState(in: dir, tenants: 1)
        let group = try Binary.run("sigilo-coordinator", ["plan", "--help"])
        #expect(group.status == 0 && group.stdout.contains("plan set") && group.stdout.contains("plan show"), "\(group.stdout)")
        #expect(try Binary.run("sigilo-coordinator", ["plan"]).status == 64)
        let typo = try Binary.run("sigilo-coordinator", ["stauts", "--state", state.path])
        #expect(typo.status == 64 && typo.stderr.contains("did you mean status?"), "\(typo.stderr)")
        #expect(try Binary.run("sigilo-tenant", ["improt"]).stderr.contains("did you mean import?"))
        #expect(try Binary.run("sigilo-coordinator", ["tenat", "list"]).stderr.contains("did you mean tenant?"))
        #expect(try Binary.run("sigilo-tenant", ["agent-tokn", "list"]).stderr.contains("did you mean agent-token?"))

        let entries = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state.path]).stdout.split(separator: "\n").count
        let backup = try Binary.run("sigilo-coordinator", ["backup", "--to", dir.appendingPathComponent("missing/b.sgl").path, "--state", state.path])
        #expect(backup.status == 74 && backup.stderr.contains("does not exist"), "\(backup.stderr)")
        #expect(try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state.path]).stdout.split(separator: "\n").count == entries)

        var plan = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("plan.json"))) as! [String: Any]
        plan["epsilonBudget"] = 4
        let file = dir.appendingPathComponent("typo.json")
        try JSONSerialization.data(withJSONObject: plan).write(to: file)
        let refused = try Binary.run("sigilo-coordinator", ["plan", "set", file.path, "--state", state.path])
        #expect(refused.status == 65 && refused.stderr.contains("unknown field epsilonBudget"), "\(refused.stderr)")
    }

    /// A second `serve` on the same state is refused, naming the first, which
    /// goes on serving and acknowledging; `tenant revoke` and `plan set` are
    /// refused while it runs (they would end its round in their own process
    /// only) and change nothing; once it stops they work.
    @Test func oneServerPerStateAndNoChangesUnderIt() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, tokens) = try coordinatorState(in: dir, tenants: 2)
        let server = try RunningCoordinator(state: state)
        var stopped = false
        defer { if !stopped { _ = server.stop() } }

        let second = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--listen", "127.0.0.1:0"])
        #expect(second.status == 77 && second.stderr.contains("pid \(server.process.processIdentifier)"), "\(second.stderr)")

        let clients = try (0..<2).map { _ in CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate()) }
        for (client, token) in zip(clients, tokens) { try client.enroll(token: token) }
        var info: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where info == nil { info = try clients[0].currentRound(); usleep(100_000) }
        let round = try #require(info)
        let values = [Float](repeating: 0.001, count: round.dimension)
        #expect(try clients[0].submit(UpdateEnvelope(round: round.round, modelVersion: round.modelVersion, flags: .tenantNoised, weight: 5, values: values)) == false)

        let revoke = try Binary.run("sigilo-coordinator", ["tenant", "revoke", clients[1].keyId, "--state", state.path])
        #expect(revoke.status == 77 && revoke.stderr.contains("/v1/admin/tenants/\(clients[1].keyId)/revoke"), "\(revoke.stderr)")
        let plan = try Binary.run("sigilo-coordinator", ["plan", "set", dir.appendingPathComponent("plan.json").path, "--state", state.path])
        #expect(plan.status == 77 && plan.stderr.contains("PUT /v1/admin/plan"), "\(plan.stderr)")
        // Inviting only adds a row the server reads when the token is used: allowed while serving.
        #expect(try Binary.run("sigilo-coordinator", ["tenant", "invite", "late", "--state", state.path]).status == 0)

        // A weight cap is read at every submission: set while serving, it applies to the next update.
        let update = UpdateEnvelope(round: round.round, modelVersion: round.modelVersion, flags: .tenantNoised, weight: 5, values: values)
        #expect(try Binary.run("sigilo-coordinator", ["tenant", "weight-cap", clients[1].keyId, "1", "--state", state.path]).status == 0)
        do { _ = try clients[1].submit(update); Issue.record("a weight above the cap was accepted") } catch let e as ClientError {
            #expect(e.status == 422 && e.code == "weight_above_cap")
        }
        #expect(try Binary.run("sigilo-coordinator", ["tenant", "weight-cap", clients[1].keyId, "plan", "--state", state.path]).status == 0)

        // The round is still open and still takes the second tenant's update; it closes once, in the server.
        #expect(try clients[1].submit(update) == false)
        var next: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where next == nil { next = try clients[0].currentRound().flatMap { $0.round > round.round ? $0 : nil }; usleep(100_000) }
        #expect(next?.modelVersion == round.modelVersion + 1)

        #expect(server.stop() == 0)
        stopped = true
        #expect(try Binary.run("sigilo-coordinator", ["tenant", "revoke", clients[1].keyId, "--state", state.path]).status == 0)
    }
}
