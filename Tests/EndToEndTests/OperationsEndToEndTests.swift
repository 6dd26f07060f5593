import Foundation
import Testing
import SigiloCrypto

/// Issue 23, as an operator meets it on day 30: what the long-running
/// programs log, what `status` says about each tenant, and the budget running out.
@Suite(.serialized) struct OperationsEndToEndTests {
    /// A program left running with its standard error in a file, stopped with SIGTERM.
    final class Background {
        let process = Process()
        let log: URL

        init(_ program: String, _ arguments: [String], log: URL) throws {
            self.log = log
            FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = Binary.directory.appendingPathComponent(program)
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: log)
            try process.run()
        }

        var text: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

        /// Its exit status once it exits by itself within `seconds` (nil: still running, then stopped).
        func waitForExit(seconds: Double) -> Int32? {
            let end = Date().addingTimeInterval(seconds)
            while process.isRunning, Date() < end { usleep(50_000) }
            if process.isRunning { _ = stop(); return nil }
            return process.terminationStatus
        }

        func stop() -> Int32 {
            process.terminate()
            process.waitUntilExit()
            return process.terminationStatus
        }
    }

    /// Every line a JSON object with time, level, event and message, in order of time.
    static func jsonLines(_ text: String) -> [[String: String]]? {
        var out = [[String: String]]()
        for line in text.split(separator: "\n") {
            guard let object = jsonObject(line) as? [String: String], object.keys.sorted() == ["event", "level", "message", "time"],
                  object["time"]!.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression) != nil
            else { return nil }
            out.append(object)
        }
        return out
    }

    /// A tenant takes part through `run` until the plan's budget pays for no more
    /// rounds: both programs log JSON lines, the tenant is told why no round is
    /// open, the coordinator raises one alert for the budget, and `status` shows
    /// when the tenant was last seen and which round last took its update.
    @Test func logsAlertsAndTenantStatusAsTheBudgetRunsOut() throws {
        // One round at z = 1, q = 1 costs about epsilon 4.4 at delta 1e-5; a second would pass 6. The plan needs two
        // tenants, so the first one's run polls a while with no round open before the second enrols.
        let world = try TenantWorld(maximumEpsilon: 6, minimumTenants: 2, tenants: 2, serveArguments: ["--log-format", "json"])
        defer { world.close() }
        func store(_ i: Int) throws -> [String] {
            let args = try world.tenant("shop\(i)")
            #expect(try Binary.run("sigilo-tenant", ["import", world.data.appendingPathComponent("tenant-0\(i + 1)-\(["loja", "clinica"][i]).jsonl").path] + args).status == 0)
            #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
            return args
        }
        let shop = try store(0)
        // Until the coordinator's next tick it counts no tenant yet: wait until it counts this one.
        for _ in 0..<50 {
            let asked = try Binary.run("sigilo-tenant", ["round"] + shop)
            if (asked.stdout + asked.stderr).contains("waiting for tenants (1 of 2)") { break }
            usleep(100_000)
        }
        // Once its own projection refuses the next round, run pulls the newest model and leaves by itself.
        let run = try Background("sigilo-tenant", ["run", "--poll", "0.1", "--log-format", "json"] + shop,
                                 log: world.dir.appendingPathComponent("run.log"))
        usleep(1_500_000) // polls at 0.1, 0.2, 0.4 and 0.8 s find no round
        let other = try store(1)
        var joined = try Binary.run("sigilo-tenant", ["round"] + other)
        for _ in 0..<100 where joined.status == 75 { usleep(100_000); joined = try Binary.run("sigilo-tenant", ["round"] + other) }
        #expect(joined.stdout.contains("submitted round 1"), "\(joined.stdout)\(joined.stderr)")
        #expect(run.waitForExit(seconds: 60) == 0, "\(run.text)")

        let tenantLines = try #require(Self.jsonLines(run.text), "\(run.text)")
        let events = tenantLines.map { "\($0["level"]!) \($0["event"]!)" }
        #expect(events.filter { $0 != "debug round.waiting" && $0 != "debug round.none" } == ["info round.none", "info round.sent", "warning round.refused", "info model.pull"], "\(run.text)")
        // Why no round opened was said once at info, the polls after it that found the same reason at debug only.
        #expect(tenantLines[0]["message"] == "no round is open: waiting for tenants (1 of 2)", "\(run.text)")
        let submitted = try #require(tenantLines.first { $0["event"] == "round.sent" }?["message"])
        #expect(submitted.hasPrefix("submitted round 1") && submitted.contains("of 6 at delta 1e-05"), "\(run.text)")

        // The coordinator finds the budget spent at its next tick and says so once.
        let coordinatorLogURL = world.dir.appendingPathComponent("coordinator.log")
        let end = Date().addingTimeInterval(10)
        while Date() < end, !((try? String(contentsOf: coordinatorLogURL, encoding: .utf8)) ?? "").contains("budget_exhausted") { usleep(50_000) }
        usleep(500_000) // a few more ticks: the alert is not repeated
        #expect(try Binary.run("sigilo-tenant", ["round"] + shop).status == 77) // the tenant's own policy refuses first
        let coordinatorLog = try String(contentsOf: coordinatorLogURL, encoding: .utf8)
        let lines = try #require(Self.jsonLines(coordinatorLog), "\(coordinatorLog)")
        #expect(lines.contains { $0["event"] == "round.close" && $0["message"]!.hasPrefix("round 1") }, "\(coordinatorLog)")
        let alerts = lines.filter { $0["event"] == "alert.budget_exhausted" }
        #expect(alerts.count == 1 && alerts[0]["level"] == "warning" && alerts[0]["message"]!.contains("of 6; no round opens until"), "\(coordinatorLog)")

        // The tenant's last signed request is written with its audit batch; status lists it.
        let state = world.dir.appendingPathComponent("coord").path
        let status = try Binary.run("sigilo-coordinator", ["status", "--state", state, "--json"])
        let report = try #require(jsonObject(Substring(status.stdout)), "\(status.stdout)\(status.stderr)")
        let tenants = try #require(report["tenants"] as? [[String: Any]])
        let id = try #require(jsonObject(Substring(try Binary.run("sigilo-tenant", ["status", "--json"] + shop).stdout))?["tenant_id"] as? String)
        let row = try #require(tenants.first { $0["id"] as? String == id })
        #expect(tenants.count == 2 && row["last_round"] as? Int == 1 && row["missed_rounds"] as? Int == 0, "\(status.stdout)")
        let seen = try #require(row["last_seen"] as? String)
        let seenAt = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: seen))
        #expect(abs(seenAt.timeIntervalSinceNow) < 120, "\(seen)")
        let text = try Binary.run("sigilo-coordinator", ["status", "--state", state]).stdout
        #expect(text.contains("privacy: epsilon ") && text.contains(" of 6 at delta 1e-05"), "\(text)")
        #expect(text.contains("\(id)\t\(seen)\t1\t0\t"), "\(text)")
        // The audit log keeps the alert.
        let exported = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state]).stdout
        #expect(exported.contains("alert.budget_exhausted"))
        // Each entry's instant also for people, beside the exact epoch seconds the chain covers.
        for line in exported.split(separator: "\n") {
            let entry = try #require(jsonObject(line))
            let at = try #require(entry["at"] as? String), time = try #require(entry["time"] as? Double)
            let parsed = try #require(ISO8601DateFormatter.withFractionalSeconds.date(from: at), "\(at)")
            #expect(abs(parsed.timeIntervalSince1970 - time) < 0.001, "\(line)")
        }
        // Exported lines still verify as an archived segment would (the chain ignores the added field).
        #expect(try Binary.run("sigilo-coordinator", ["audit", "verify", "--state", state]).status == 0)
    }

    /// A round abandoned because another tenant never answered: the coordinator's
    /// warning names who did not submit; the tenant that did is told its update
    /// was not used and what its ledger did with the charge.
    @Test func anAbandonedRoundIsExplainedOnBothSides() throws {
        let world = try TenantWorld(minimumTenants: 2, tenants: 2, roundSeconds: 2)
        defer { world.close() }
        let shops = try world.enrolledShops()
        let silent = try #require(jsonObject(Substring(try Binary.run("sigilo-tenant", ["status", "--json"] + shops[1]).stdout))?["tenant_id"] as? String)
        let run = try Background("sigilo-tenant", ["run", "--poll", "0.2"] + shops[0], log: world.dir.appendingPathComponent("run.log"))
        let end = Date().addingTimeInterval(30)
        while Date() < end, !run.text.contains("round.abandoned") { usleep(100_000) }
        #expect(run.stop() == 0)
        #expect(run.text.range(of: #"(?m)^\S+Z warning round\.abandoned round 1 was abandoned: this tenant's update was not used; its ledger keeps its charge"#,
                               options: .regularExpression) != nil, "\(run.text)")
        let coordinatorLog = try String(contentsOf: world.dir.appendingPathComponent("coordinator.log"), encoding: .utf8)
        #expect(coordinatorLog.contains("warning round.abandon round 1: ") && coordinatorLog.contains("missing: \(silent)"), "\(coordinatorLog)")
    }

    @Test func logOptionsAreCheckedByName() throws {
        let bad = try Binary.run("sigilo-tenant", ["run", "--state", "/nonexistent", "--key-file", "/nonexistent", "--log-format", "xml"])
        #expect(bad.status == 64 && bad.stderr.contains("--log-format expects human or json, got \"xml\""), "\(bad.stderr)")
        let level = try Binary.run("sigilo-coordinator", ["serve", "--state", "/nonexistent", "--log-level", "loud"])
        #expect(level.status == 64 && level.stderr.contains("--log-level expects debug, info, warning or error"), "\(level.stderr)")
    }
}

extension ISO8601DateFormatter {
    static var withFractionalSeconds: ISO8601DateFormatter {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }
}

/// Issue 23: `--config FILE` for both programs.
@Suite struct ConfigFileTests {
    @Test func aConfigurationFileStandsForOptionsAndTheCommandLineWins() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("coord").path, other = dir.appendingPathComponent("other").path
        let config = dir.appendingPathComponent("coordinator.conf")
        try "# the coordinator's options\nstate = \(state)\n\nlisten = 127.0.0.1:0\n--log-format = json\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try Binary.run("sigilo-coordinator", ["init", "--config", config.path]).status == 0)
        #expect(FileManager.default.fileExists(atPath: state))
        // A command takes the options it has (status has no --listen) and the command line replaces the file's.
        #expect(try Binary.run("sigilo-coordinator", ["status", "--config", config.path]).stdout.contains("model version: none"))
        let elsewhere = try Binary.run("sigilo-coordinator", ["status", "--config=\(config.path)", "--state", other])
        #expect(elsewhere.status == 66 && elsewhere.stderr.contains("\(other) holds no coordinator state"), "\(elsewhere.stderr)")

        // A name no command has is refused with its line; so is a flag that is not true or false.
        try "state = \(state)\nverify-audti = true\n".write(to: config, atomically: true, encoding: .utf8)
        let typo = try Binary.run("sigilo-coordinator", ["status", "--config", config.path])
        #expect(typo.status == 64 && typo.stderr.contains("\(config.path):2: no command takes an option \"verify-audti\" (did you mean verify-audit?)"), "\(typo.stderr)")
        try "state = \(state)\njson = sometimes\n".write(to: config, atomically: true, encoding: .utf8)
        let flag = try Binary.run("sigilo-coordinator", ["status", "--config", config.path])
        #expect(flag.status == 64 && flag.stderr.contains(":2: json is a flag: true or false, got \"sometimes\""), "\(flag.stderr)")
        try "state = \(state)\njson = true\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try Binary.run("sigilo-coordinator", ["status", "--config", config.path]).stdout.hasPrefix("{"))
        try "state \(state)\n".write(to: config, atomically: true, encoding: .utf8)
        #expect(try Binary.run("sigilo-coordinator", ["status", "--config", config.path]).stderr.contains(":1: expected \"name = value\""))

        // A file anyone may write decides nothing; a missing one is named.
        try "state = \(state)\n".write(to: config, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o666], ofItemAtPath: config.path)
        let open = try Binary.run("sigilo-coordinator", ["status", "--config", config.path])
        #expect(open.status == 77 && open.stderr.contains("anyone on this machine may write it"), "\(open.stderr)")
        let missing = try Binary.run("sigilo-tenant", ["status", "--config", dir.appendingPathComponent("nope.conf").path])
        #expect(missing.status == 66 && missing.stderr.contains("cannot read --config"), "\(missing.stderr)")
    }

    @Test func theTemplateListsEveryOptionOnceAndReadsBackAsAConfiguration() throws {
        for program in ["sigilo-coordinator", "sigilo-tenant"] {
            let template = try Binary.run(program, ["config"])
            #expect(template.status == 0)
            for option in ["state", "log-format"] { #expect(template.stdout.contains("\n# \(option) = "), "\(program): \(option)") }
            // Uncommented, the template is a valid file (each command keeps its own options).
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let file = dir.appendingPathComponent("all.conf")
            let assignments = template.stdout.split(separator: "\n").filter { $0.range(of: #"^# [a-z0-9-]+ = "#, options: .regularExpression) != nil }
            let uncommented = assignments.map { String($0.dropFirst(2)) }
            #expect(Set(uncommented.map { $0.split(separator: " ")[0] }).count == uncommented.count, "an option listed twice")
            try uncommented.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
            // status takes its options from it (the placeholder DIR is no state) and leaves every other command's.
            let status = try Binary.run(program, ["status", "--config", file.path])
            #expect(status.status == 66 && (status.stderr.contains("DIR") || status.stderr.contains("FILE")), "\(program): \(status.stderr)")
        }
    }
}

/// Issue 23: administering a running coordinator from elsewhere, over TLS with
/// TOTP, through `sigilo-coordinator admin ...`.
@Suite(.serialized) struct RemoteAdminTests {
    @Test func anAdminLogsInOverTLSWithTOTPAndAdministersTheRunningCoordinator() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appendingPathComponent("server.pem").path, key = dir.appendingPathComponent("server.key").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        let state = dir.appendingPathComponent("state").path, secrets = dir.appendingPathComponent("admin.json")
        #expect(try Binary.run("sigilo-coordinator", ["init", "--state", state, "--secrets-to", secrets.path]).status == 0)
        let issued = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: secrets)) as? [String: String])
        let secret = try #require(issued["totp_secret"].flatMap(Base32.decode))
        let totp = TOTP(secret: secret)
        let server = try RunningCoordinator(state: URL(fileURLWithPath: state), arguments: ["--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key])
        defer { _ = server.stop() }
        let url = "https://127.0.0.1:\(server.port)"
        let session = dir.appendingPathComponent("config/admin-session.json").path
        func admin(_ arguments: [String], input: String = "") throws -> Binary.Result {
            try Binary.run("sigilo-coordinator", ["admin"] + arguments + ["--session-file", session], input: input)
        }
        var step = Int64(Date().timeIntervalSince1970) / 30
        func code() -> String { step += 1; return totp.code(step: step - 1) } // each code once: the server refuses a used step

        // Untrusted certificate, then a wrong code: refused, and no session is kept.
        let untrusted = try admin(["login", "--url", url, "--credential-file", secrets.path], input: code() + "\n")
        #expect(untrusted.status == 1 && untrusted.stderr.contains("--coordinator-ca PEM"), "\(untrusted.stderr)")
        let wrong = try admin(["--url", url, "login", "--coordinator-ca", cert, "--credential-file", secrets.path], input: "000000\n")
        #expect(wrong.status == 77 && wrong.stderr.contains("bad_totp"), "\(wrong.stderr)")
        #expect(!FileManager.default.fileExists(atPath: session))
        // The credential asked on standard input as well as from a file; the order "admin --url URL login" works.
        let credential = try #require(issued["admin_credential"])
        let login = try admin(["--url", url, "login", "--coordinator-ca", cert], input: credential + "\n" + code() + "\n")
        #expect(login.status == 0 && login.stdout.contains("logged in to \(url)"), "\(login.stderr)")
        #expect((try FileManager.default.attributesOfItem(atPath: session)[.posixPermissions] as? Int) == 0o600)
        #expect(!(try String(contentsOf: URL(fileURLWithPath: session), encoding: .utf8)).contains(credential))

        // Plan, tenants and auditors through the running server (its local commands would be refused meanwhile).
        let plan = dir.appendingPathComponent("plan.json")
        try #"{"labels":["a","b","c"],"bucketBits":8,"clipNorm":1,"noiseMultiplier":1,"sampleRate":0.5,"delta":1e-5,"maximumEpsilon":9,"placement":"tenant","minimumTenants":1,"roundSeconds":60,"serverOptimizer":{"kind":"fedavg","learningRate":1,"momentum":0,"beta2":0.99,"epsilon":0.001}}"#
            .write(to: plan, atomically: true, encoding: .utf8)
        let set = try admin(["plan", "set", plan.path])
        #expect(set.status == 0 && set.stdout.contains("plan installed: 3 labels"), "\(set.stderr)")
        #expect(try admin(["plan", "show"]).stdout.contains("\"maximumEpsilon\":9"))
        let token = try admin(["tenant", "invite", "loja"])
        #expect(token.status == 0 && token.stdout.hasPrefix("sgt_"), "\(token.stderr)")
        let auditor = try admin(["auditor", "add", "dpo"])
        #expect(auditor.status == 0 && !auditor.stdout.isEmpty, "\(auditor.stderr)")
        let auditors = try admin(["auditor", "list"]).stdout
        let auditorID = try #require(auditors.split(separator: "\t").first.map(String.init))
        #expect(try admin(["auditor", "revoke", auditorID]).status == 0)
        #expect(try admin(["auditor", "list"]).stdout.contains("\trevoked "))
        let status = try admin(["status"])
        #expect(status.status == 0 && status.stdout.contains("privacy: epsilon 0 of 9 at delta 1e-05"), "\(status.stdout)\(status.stderr)")
        #expect(try admin(["status", "--json"]).stdout.hasPrefix("{\"tenants_active\":"))
        let unknown = try admin(["tenant", "revoke", "tenant-404"])
        #expect(unknown.status == 65 && unknown.stderr.contains("404"), "\(unknown.stderr)")
        #expect(try admin(["tenant", "revoke", "../x"]).status == 64)
        // The audit log names the admin's session for each change.
        let audit = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state]).stdout
        #expect(audit.contains("\"action\":\"plan.set\"") && audit.contains("\"action\":\"tenant.invite\""))

        // Logging out ends the session on the server; what follows says to log in.
        let logout = try admin(["logout"])
        #expect(logout.status == 0, "\(logout.stderr)")
        let after = try admin(["status"])
        #expect(after.status == 66 && after.stderr.contains("admin login"), "\(after.stderr)")
        // Credentials never go over plain HTTP to another machine.
        let plain = try admin(["login", "--url", "http://192.0.2.1:8443", "--credential-file", secrets.path], input: "123456\n")
        #expect(plain.status == 1 && plain.stderr.contains("only over https"), "\(plain.stderr)")
    }
}

/// Issue 23: a plan gains intents mid-life, then renames and merges some; the model keeps what it
/// learnt and the tenant keeps training, its messages under former names included.
@Suite(.serialized) struct PlanLifecycleEndToEndTests {
    @Test func aPlanGainsRenamesAndMergesIntentsAndTheTenantFollows() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("data")
        _ = try Binary.run("sigilo-eval", ["synth", "--tenants", "1", "--seed", "4", "--out", data.path])
        let file = data.appendingPathComponent("tenant-01-loja.jsonl")
        let intents = Set(try String(contentsOf: file, encoding: .utf8).split(separator: "\n").compactMap { jsonObject($0)?["intent"] as? String }).sorted()
        let first = Array(intents.dropLast(2)), later = Array(intents.suffix(2))
        func plan(_ labels: [String], formerLabels: [String: String] = [:]) throws -> String {
            let path = dir.appendingPathComponent("plan-\(labels.count).json").path
            let object: [String: Any] = ["labels": labels, "formerLabels": formerLabels, "bucketBits": 10, "clipNorm": 1, "noiseMultiplier": 1, "sampleRate": 1, "delta": 1e-5,
                                         "maximumEpsilon": 50, "placement": "tenant", "minimumTenants": 1, "roundSeconds": 30,
                                         "serverOptimizer": ["kind": "fedavg", "learningRate": 1, "momentum": 0, "beta2": 0.99, "epsilon": 0.001]]
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            return path
        }
        let state = dir.appendingPathComponent("coord")
        #expect(try Binary.run("sigilo-coordinator", ["init", "--state", state.path]).status == 0)
        #expect(try Binary.run("sigilo-coordinator", ["plan", "set", try plan(first), "--state", state.path]).status == 0)
        let tenant = ["--state", dir.appendingPathComponent("t").path, "--key-file", dir.appendingPathComponent("t.key").path]
        #expect(try Binary.run("sigilo-tenant", ["init", "--max-epsilon", "20"] + tenant).status == 0)
        #expect(try Binary.run("sigilo-tenant", ["import", file.path] + tenant).status == 0)

        var server = try RunningCoordinator(state: state)
        let token = try Binary.run("sigilo-coordinator", ["tenant", "invite", "loja", "--state", state.path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", "http://127.0.0.1:\(server.port)", "--token", token] + tenant).status == 0)
        func round() throws -> Binary.Result {
            var result = try Binary.run("sigilo-tenant", ["round"] + tenant)
            for _ in 0..<50 where result.status == 75 { usleep(100_000); result = try Binary.run("sigilo-tenant", ["round"] + tenant) }
            return result
        }
        #expect(try round().stdout.contains("submitted round 1"))
        #expect(server.stop() == 0) // round 2 opened at once and stays open in the state

        let staged = try Binary.run("sigilo-coordinator", ["plan", "set", try plan(first + later), "--state", state.path])
        #expect(staged.status == 0 && staged.stdout.contains("round 2 is open: the plan takes effect when it ends"), "\(staged.stdout)\(staged.stderr)")
        server = try RunningCoordinator(state: state, arguments: ["--listen", "127.0.0.1:\(server.port)"])
        defer { _ = server.stop() }
        #expect(try round().stdout.contains("submitted round 2"))
        let third = try round()
        #expect(third.stdout.contains("submitted round 3"), "\(third.stdout)\(third.stderr)") // on the wider model
        #expect(try Binary.run("sigilo-tenant", ["pull"] + tenant).status == 0)
        let classified = try Binary.run("sigilo-tenant", ["classify", "--top", "20"] + tenant, input: "quero trocar o produto\n")
        let top = try #require(jsonObject(Substring(classified.stdout))?["top"] as? [[String: Any]])
        #expect(Set(top.compactMap { $0["intent"] as? String }) == Set(intents), "\(classified.stdout)")
        #expect(try Binary.run("sigilo-tenant", ["personalise"] + tenant).status == 0)

        // Rename one intent and merge two others, named in formerLabels: staged while round 4 is open, as before.
        #expect(server.stop() == 0)
        let (kept, merged, renamed) = (Array(intents.dropFirst(3)), Array(intents.prefix(2)), intents[2])
        let relabelled = kept + ["juntos", "novo_nome"]
        let relabel = try Binary.run("sigilo-coordinator", ["plan", "set", "--state", state.path,
            try plan(relabelled, formerLabels: [merged[0]: "juntos", merged[1]: "juntos", renamed: "novo_nome"])])
        #expect(relabel.status == 0 && relabel.stdout.contains("intents: renamed \(renamed) to novo_nome; merged \(merged[0]) + \(merged[1]) into juntos"),
                "\(relabel.stdout)\(relabel.stderr)")
        server = try RunningCoordinator(state: state, arguments: ["--listen", "127.0.0.1:\(server.port)"])
        let fourth = try round()
        #expect(fourth.stdout.contains("submitted round 4"), "\(fourth.stdout)\(fourth.stderr)")
        let fifth = try round()
        #expect(fifth.stdout.contains("submitted round 5"), "\(fifth.stdout)\(fifth.stderr)") // on the relabelled model
        // The personalised model knew the old names: it goes with the first relabelled model the tenant takes, and
        // that says so; made again, it uses every message, those under former names included.
        #expect([fourth, fifth].contains { $0.stdout.contains("the plan's intents changed, so the personalised model (which knew the old ones) was removed") })
        #expect(try Binary.run("sigilo-tenant", ["pull"] + tenant).status == 0)
        let again = try Binary.run("sigilo-tenant", ["personalise", "--json"] + tenant)
        #expect(again.status == 0 && jsonObject(Substring(again.stdout))?["skipped_unknown_intent"] as? Int == 0, "\(again.stdout)\(again.stderr)")
        let answered = try Binary.run("sigilo-tenant", ["classify", "--top", "20"] + tenant, input: "quero trocar o produto\n")
        let answers = try #require(jsonObject(Substring(answered.stdout))?["top"] as? [[String: Any]])
        #expect(Set(answers.compactMap { $0["intent"] as? String }) == Set(relabelled), "\(answered.stdout)")
        // An export still labelled with a former name is taken: it trains the intent that took its place.
        let old = dir.appendingPathComponent("old.jsonl")
        try Data("{\"customer\":\"c-old\",\"text\":\"segunda via do boleto\",\"intent\":\"\(renamed)\",\"consent\":true}\n".utf8).write(to: old)
        let imported = try Binary.run("sigilo-tenant", ["import", old.path] + tenant)
        #expect(imported.status == 0 && imported.stdout.contains("imported 1 messages"), "\(imported.stdout)\(imported.stderr)")

        let audit = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", state.path]).stdout
        #expect(audit.contains("\"action\":\"plan.stage\"") && audit.contains("\"action\":\"plan.labels_changed\""))
    }
}
