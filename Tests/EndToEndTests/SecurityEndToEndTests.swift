import Foundation
import Testing
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloProtocol
import SigiloTLS

/// One unsigned HTTP exchange on a fresh connection: status and body (status 0 when no HTTP answer came).
func http(_ method: String, _ url: URL, headers: [(String, String)] = [], body: [UInt8] = [],
          channels: any ClientChannelFactory = PlainChannels()) -> (status: Int, body: [UInt8]) {
    let client = HTTPClient(host: url.host!, port: UInt16(url.port!), timeout: 30, channels: channels)
    let target = (url.path.isEmpty ? "/" : url.path) + (url.query.map { "?" + $0 } ?? "")
    guard let response = try? client.send(method: method, target: target, headers: headers, body: body) else { return (0, []) }
    return (response.status, response.body)
}

@Suite(.serialized) struct SecurityEndToEndTests {
    static let labels = ["cancelar", "saudacao", "segunda_via"]

    /// Admin and auditor over HTTP, tenants in rounds, a backup taken while
    /// serving and restored as a drill, then every log searched for secrets.
    @Test func operationsDrillLeavesNoSecretInAnyLog() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("state"), secretsFile = dir.appendingPathComponent("admin.json")
        let initialised = try Binary.run("sigilo-coordinator", ["init", "--state", state.path, "--secrets-to", secretsFile.path])
        #expect(initialised.status == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: secretsFile.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let secrets = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: secretsFile)) as? [String: String])
        let credential = try #require(secrets["admin_credential"]), totpText = try #require(secrets["totp_secret"])
        let totp = TOTP(secret: try #require(Base32.decode(totpText)))
        #expect(secrets["otpauth_uri"]?.hasPrefix("otpauth://totp/") == true)

        let plan = Plan(labels: Self.labels, bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5, maximumEpsilon: 50,
                        placement: .tenant, minimumTenants: 2, roundSeconds: 60, serverOptimizer: .init(kind: .fedavg))
        try JSONEncoder().encode(plan).write(to: dir.appendingPathComponent("plan.json"))
        #expect(try Binary.run("sigilo-coordinator", ["plan", "set", dir.appendingPathComponent("plan.json").path, "--state", state.path]).status == 0)
        let auditorCredential = try Binary.run("sigilo-coordinator", ["auditor", "add", "dpo", "--state", state.path]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let cliToken = try Binary.run("sigilo-coordinator", ["tenant", "invite", "loja-b", "--state", state.path]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)

        let log = dir.appendingPathComponent("coordinator.log")
        let server = try RunningCoordinator(state: state, log: log)
        var stopped = false
        defer { if !stopped { _ = server.stop() } }

        // The admin opens a session with credential + TOTP and invites a tenant over HTTP.
        let now = Date().timeIntervalSince1970
        let opened = http("POST", server.url.appendingPathComponent("v1/admin/session"),
                          headers: [("Authorization", "Bearer \(credential)"), ("Sigilo-TOTP", totp.code(step: TOTP.step(at: now)))])
        #expect(opened.status == 201)
        let session = try #require((try JSONSerialization.jsonObject(with: Data(opened.body)) as? [String: Any])?["session"] as? String)
        let invited = http("POST", server.url.appendingPathComponent("v1/admin/tenants"), headers: [("Authorization", "Session \(session)")],
                           body: Array(#"{"name":"loja-a"}"#.utf8))
        #expect(invited.status == 201)
        let httpToken = try #require((try JSONSerialization.jsonObject(with: Data(invited.body)) as? [String: Any])?["token"] as? String)
        // Without TOTP the credential alone is refused.
        #expect(http("POST", server.url.appendingPathComponent("v1/admin/tenants"), headers: [("Authorization", "Bearer \(credential)")],
                     body: Array(#"{"name":"x"}"#.utf8)).status == 401)

        let a = CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate())
        let b = CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate())
        try a.enroll(token: httpToken)
        try b.enroll(token: cliToken)

        // Rounds run in the background while backups are taken.
        final class Progress: @unchecked Sendable { var rounds = 0; var failure: String? }
        let progress = Progress()
        let worker = Thread {
            do {
                var last: UInt64 = 0
                for _ in 0..<4 {
                    var info: CoordinatorClient.RoundInfo?
                    let end = Date().addingTimeInterval(20)
                    while Date() < end { if let r = try a.currentRound(), r.round > last { info = r; break }; usleep(50_000) }
                    guard let info else { progress.failure = "no round after \(last)"; return }
                    for (client, seed) in [(a, 1), (b, 2)] {
                        let values = (0..<info.dimension).map { Float(sin(Double($0 * 7 + seed))) * 0.01 }
                        _ = try client.submit(UpdateEnvelope(round: info.round, modelVersion: info.modelVersion, flags: .tenantNoised, weight: 5, values: values))
                    }
                    last = info.round
                    progress.rounds += 1
                }
            } catch { progress.failure = "\(error)" }
        }
        worker.start()
        var backups = [URL]()
        for i in 0..<3 {
            let file = dir.appendingPathComponent("backup-\(i).sglbak")
            let made = try Binary.run("sigilo-coordinator", ["backup", "--to", file.path, "--state", state.path])
            #expect(made.status == 0, "\(made.stderr)")
            #expect(made.stdout.contains("sha256"))
            backups.append(file)
            usleep(150_000)
        }
        while worker.isExecuting { usleep(20_000) }
        #expect(progress.failure == nil, "\(progress.failure ?? "")")
        #expect(progress.rounds == 4)

        // The auditor reads metrics, the ledger and the audit log; it cannot administer.
        let auditor = [("Authorization", "Bearer \(auditorCredential)")]
        let metrics = String(decoding: http("GET", server.url.appendingPathComponent("metrics"), headers: auditor).body, as: UTF8.self)
        #expect(metrics.contains("sigilo_rounds_closed_total 4"))
        #expect(http("GET", server.url.appendingPathComponent("metrics")).status == 401)
        #expect(http("GET", server.url.appendingPathComponent("v1/audit/ledger"), headers: auditor).status == 200)
        let verified = http("GET", server.url.appendingPathComponent("v1/audit/verify"), headers: auditor)
        #expect(String(decoding: verified.body, as: UTF8.self).contains("\"intact\":true"))
        #expect(http("POST", server.url.appendingPathComponent("v1/admin/tenants"), headers: auditor, body: Array(#"{"name":"x"}"#.utf8)).status == 403)
        #expect(server.stop() == 0)
        stopped = true
        // The operator sees the rounds as they happen, timestamped, on serve's standard error (issue 23).
        let events = try String(contentsOf: log, encoding: .utf8)
        for event in ["round.open round 1: ", "round.close round 1: "] {
            #expect(events.range(of: "(?m)^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}\\.\\d{3}Z info \(event)", options: .regularExpression) != nil, "\(events)")
        }

        let verify = try Binary.run("sigilo-coordinator", ["audit", "verify", "--state", state.path])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let export = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state.path])
        #expect(export.status == 0)
        let actions = export.stdout.split(separator: "\n").compactMap { jsonObject($0)?["action"] as? String }
        for action in ["credential.create", "plan.set", "tenant.invite", "tenant.enroll", "session.open", "round.open", "round.close",
                       "model.publish", "update.accept", "backup.create", "POST /v1/admin/tenants"] {
            #expect(actions.contains(action), "audit log lacks \(action)")
        }

        // Restore drill: the last backup taken while serving, into a new directory, verified and served.
        let restored = dir.appendingPathComponent("restored")
        let restore = try Binary.run("sigilo-coordinator", ["restore", "--from", backups[2].path, "--state", restored.path])
        #expect(restore.status == 0, "\(restore.stderr)")
        #expect(restore.stdout.contains("audit log verified"))
        #expect(try Binary.run("sigilo-coordinator", ["audit", "verify", "--state", restored.path]).status == 0)
        // The backup carries the TOTP secret sealed, not the key: the restored state is served with the original's key file.
        let again = try RunningCoordinator(state: restored, arguments: ["--key-file", dir.appendingPathComponent("state.key").path, "--listen", "127.0.0.1:0"])
        defer { _ = again.stop() }
        let reenrolled = CoordinatorClient(baseURL: again.url, keyId: a.keyId, key: a.keyForTests)
        #expect(try reenrolled.plan().labels == Self.labels) // tenant keys survived the restore
        // A restore never overwrites, and a damaged backup is named as such.
        #expect(try Binary.run("sigilo-coordinator", ["restore", "--from", backups[0].path, "--state", restored.path]).status == 77)
        var damaged = try Data(contentsOf: backups[0])
        damaged[damaged.count / 2] ^= 0xff
        try damaged.write(to: dir.appendingPathComponent("damaged.sglbak"))
        let refused = try Binary.run("sigilo-coordinator", ["restore", "--from", dir.appendingPathComponent("damaged.sglbak").path,
                                                            "--state", dir.appendingPathComponent("other").path])
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("checksum"))

        // No secret in the coordinator's log, the audit export, or the CLI's output meant for logs.
        let coordinatorKey = try String(contentsOf: state.appendingPathComponent("coordinator.key"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let searched = [try String(contentsOf: log, encoding: .utf8), export.stdout, verify.stdout, restore.stdout, restore.stderr, initialised.stdout]
            .joined(separator: "\n")
        #expect(searched.count > 1000)
        let needles = [credential, String(credential.split(separator: ".")[1]), totpText, Hex.encode(totp.secret), session,
                       String(session.split(separator: ".")[1]), auditorCredential, String(auditorCredential.split(separator: ".")[1]),
                       httpToken, cliToken, coordinatorKey, Hex.encode(a.keyForTests.privateKey), Hex.encode(b.keyForTests.privateKey)]
        for needle in needles { #expect(!searched.contains(needle), "a secret leaked into a log") }
    }

    /// HTTPS over a real socket, with and without client certificates.
    @Test func tlsOverARealSocket() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func openssl(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " "))")
        }
        func certificate(_ name: String, subject: String) throws {
            try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                         "-subj", "/CN=\(subject)", "-addext", "subjectAltName=IP:127.0.0.1",
                         "-keyout", dir.appendingPathComponent("\(name).key").path, "-out", dir.appendingPathComponent("\(name).pem").path])
        }
        try certificate("server", subject: "127.0.0.1")
        try certificate("client", subject: "tenant-1")
        try certificate("stranger", subject: "someone")
        let state = dir.appendingPathComponent("state")
        #expect(try Binary.run("sigilo-coordinator", ["init", "--state", state.path, "--secrets-to", dir.appendingPathComponent("s.json").path]).status == 0)
        let serverCert = dir.appendingPathComponent("server.pem").path, serverKey = dir.appendingPathComponent("server.key").path
        func health(_ port: UInt16, trusting ca: String, as client: String? = nil) throws -> Int {
            let channels = try TLSClientChannels(caFile: ca, certificateFile: client.map { dir.appendingPathComponent("\($0).pem").path },
                                                 keyFile: client.map { dir.appendingPathComponent("\($0).key").path })
            return try HTTPClient(host: "127.0.0.1", port: port, timeout: 10, channels: channels).send(method: "GET", target: "/healthz").status
        }

        do {
            let server = try RunningCoordinator(state: state, arguments: ["--listen", "127.0.0.1:0", "--tls-cert", serverCert, "--tls-key", serverKey])
            defer { _ = server.stop() }
            #expect(try health(server.port, trusting: serverCert) == 200)
            // Plain HTTP to the TLS port gets nothing useful, and a client that does not trust the certificate refuses it.
            #expect(http("GET", URL(string: "http://127.0.0.1:\(server.port)/healthz")!).status != 200)
            #expect(throws: TLSError.self) { _ = try health(server.port, trusting: dir.appendingPathComponent("stranger.pem").path) }
            // A tenant enrols over HTTPS trusting only the coordinator's certificate, and keeps using it.
            let tenant = ["--state", dir.appendingPathComponent("tenant").path, "--key-file", dir.appendingPathComponent("tenant.key").path]
            #expect(try Binary.run("sigilo-tenant", ["init"] + tenant).status == 0)
            let url = "https://127.0.0.1:\(server.port)"
            let invite = { try Binary.run("sigilo-coordinator", ["tenant", "invite", "t", "--state", state.path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
            let untrusted = try Binary.run("sigilo-tenant", ["enroll", "--coordinator", url, "--token", try invite()] + tenant)
            // The error says what to do (issue 23): trust the certificate, or fix the scheme.
            #expect(untrusted.status == 1 && untrusted.stderr.contains("certificate") && untrusted.stderr.contains("--coordinator-ca PEM"), "\(untrusted.stderr)")
            let wrongScheme = try Binary.run("sigilo-tenant", ["enroll", "--coordinator", "http://127.0.0.1:\(server.port)", "--token", try invite()] + tenant)
            #expect(wrongScheme.status == 1 && wrongScheme.stderr.contains("the URL must start with https://"), "\(wrongScheme.stderr)")
            let enrolled = try Binary.run("sigilo-tenant", ["enroll", "--coordinator", url, "--coordinator-ca", serverCert, "--token", try invite()] + tenant)
            #expect(enrolled.status == 0, "\(enrolled.stderr)")
            let round = try Binary.run("sigilo-tenant", ["round"] + tenant)
            #expect(round.status != 1, "the stored CA was not used: \(round.stderr)")
        }
        do {
            let server = try RunningCoordinator(state: state, arguments: ["--listen", "127.0.0.1:0", "--tls-cert", serverCert, "--tls-key", serverKey,
                                                                          "--tls-client-ca", dir.appendingPathComponent("client.pem").path])
            defer { _ = server.stop() }
            #expect(try health(server.port, trusting: serverCert, as: "client") == 200)
            for client in [nil, "stranger"] {
                let refused = (try? health(server.port, trusting: serverCert, as: client)) ?? 0
                #expect(refused != 200, "client certificate \(client ?? "none") was accepted")
            }
        }
        // Plain HTTP off loopback is refused unless the operator says --insecure.
        let plain = try Binary.run("sigilo-coordinator", ["serve", "--state", state.path, "--listen", "0.0.0.0:0"])
        #expect(plain.status == 77)
        #expect(plain.stderr.contains("--insecure"))
    }
}
