import Foundation
import SigiloCLI
import SigiloFederation
import SigiloCrypto
import SigiloHTTP
import SigiloTLS

/// The `sigilo-coordinator` program.
public enum CoordinatorTool {
    static let stateOption = OptionSpec.value("state", "DIR", "State directory (created by init).")

    public static func main(_ arguments: [String]) -> Never {
        StateDirectory.restrictNewFiles() // everything this program creates (databases, WAL, backups, exports) is private
        runCommand {
            var args = arguments
            // "admin --url URL login", as an operator may type it: the option goes after the command's words.
            if args.count >= 4, args[0] == "admin", args[1] == "--url" { args = [args[0]] + args.dropFirst(3) + ["--url", args[2]] }
            // Two- and three-word commands ("tenant invite", "admin tenant invite") become one name.
            if args.count >= 3, args[0] == "admin", ["tenant", "plan", "auditor"].contains(args[1]), !args[2].hasPrefix("-") {
                args = ["\(args[0]) \(args[1]) \(args[2])"] + args.dropFirst(3)
            } else if args.count >= 2, ["tenant", "plan", "model", "auditor", "audit", "session", "admin"].contains(args[0]), !args[1].hasPrefix("-") {
                args = ["\(args[0]) \(args[1])"] + args.dropFirst(2)
            }
            try dispatch(
                program: "sigilo-coordinator",
                summary: "sigilo-coordinator: aggregates tenants' differentially private updates into a shared intent model.",
                arguments: args,
                commands: [
                    (initSpec, runInit), (serveSpec, runServe),
                    (inviteSpec, runInvite), (revokeSpec, runRevoke), (weightCapSpec, runWeightCap), (listSpec, runList),
                    (planShowSpec, runPlanShow), (planSetSpec, runPlanSet), (modelExportSpec, runModelExport), (statusSpec, runStatus),
                    (auditorAddSpec, runAuditorAdd), (auditorRevokeSpec, runAuditorRevoke), (auditorListSpec, runAuditorList),
                    (sessionListSpec, runSessionList), (sessionRevokeSpec, runSessionRevoke), (adminRotateSpec, runAdminRotate),
                    (auditVerifySpec, runAuditVerify), (auditExportSpec, runAuditExport), (auditArchiveSpec, runAuditArchive),
                    (backupSpec, runBackup), (restoreSpec, runRestore),
                ] + AdminCommands.commands)
        }
    }

    static func openService(_ args: ParsedArguments, secretsKey: [UInt8]? = nil) throws -> CoordinatorService {
        let path = try args.required("state")
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent(CoordinatorService.databaseName).path) else {
            throw CLIError(.noInput, "\(path) holds no coordinator state; run 'sigilo-coordinator init --state \(path)' first")
        }
        do { return try CoordinatorService(directory: url, secretsKey: secretsKey) } catch {
            throw CLIError(.failure, "cannot open coordinator state in \(path): \(error)")
        }
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Refuses, while a server runs on the state, a command whose change that server's memory would not see
    /// (a revocation that ends the open round, a plan); otherwise holds the state until this process exits.
    static func lockForChange(_ args: ParsedArguments, command: String, instead: String) throws {
        let url = URL(fileURLWithPath: try args.required("state"))
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent(CoordinatorService.databaseName).path) else { return } // openService says why
        do { _ = try StateDirectory.lockForChange(url, command: command, instead: instead) } catch let e as StateLocked { throw CLIError(.refused, e.description) }
    }

    // MARK: init

    static let initSpec = CommandSpec(
        name: "init", summary: "Create a coordinator state directory (mode 0700), its database, and the admin credential with its TOTP secret.",
        usage: "sigilo-coordinator init --state DIR [--key-file FILE] [--secrets-to FILE]",
        options: [stateOption, SecretsKey.option,
                  .value("secrets-to", "FILE", "Write the admin credential and TOTP secret to FILE (mode 0600, JSON) instead of the terminal.")],
        discussion: """
        The admin credential and TOTP secret are shown once. The state keeps the credential only hashed and the TOTP secret sealed
        (AES-256-GCM) with the secrets key, which init writes to the key file (unless it exists) outside the state directory:
        back it up apart from the state; 'serve' needs it. Add the otpauth URI to an authenticator app.
        """)

    static func runInit(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("state")
        let url = URL(fileURLWithPath: path)
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(CoordinatorService.databaseName).path) {
            throw CLIError(.failure, "\(path) already holds coordinator state; refusing to overwrite it")
        }
        let keyURL = try SecretsKey.location(args, state: url)
        let key = FileManager.default.fileExists(atPath: keyURL.path) ? try SecretsKey.read(keyURL) : try SecretsKey.create(keyURL)
        let secrets: CoordinatorService.AdminSecrets
        do {
            // Also into a directory that existed (0755, say): it will hold the signing key and the sealed TOTP secret.
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try StateDirectory.makePrivate(url)
            secrets = try CoordinatorService(directory: url, secretsKey: key).createAdmin(now: now())
            try StateDirectory.makePrivate(url)
        } catch {
            throw CLIError(.ioError, "cannot initialise \(path): \(error)")
        }
        try showAdminSecrets(secrets, args: args, heading: "initialised coordinator state in \(path)")
        OutputStream.standardOutput.write("TOTP secret sealed with the secrets key in \(keyURL.path) (mode 0600): back it up apart from the state; serve needs it\n")
        OutputStream.standardOutput.write("next: sigilo-coordinator plan set FILE --state \(path)\n")
    }

    /// Shows the admin's secrets once: in a 0600 JSON file (--secrets-to) or on the terminal.
    static func showAdminSecrets(_ secrets: CoordinatorService.AdminSecrets, args: ParsedArguments, heading: String) throws {
        let shown = JSON.object([("admin_credential", .string(secrets.credential)), ("totp_secret", .string(Base32.encode(secrets.totp.secret))),
                                 ("otpauth_uri", .string(secrets.provisioningURI))]).rendered() + "\n"
        if let file = args.string("secrets-to") {
            guard FileManager.default.createFile(atPath: file, contents: Data(shown.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CLIError(.ioError, "cannot write \(file)")
            }
            OutputStream.standardOutput.write("\(heading)\nadmin credential and TOTP secret written to \(file) (mode 0600)\n")
        } else {
            OutputStream.standardOutput.write("""
            \(heading)
            admin credential (shown once; send as "Authorization: Bearer ..."): \(secrets.credential)
            TOTP secret (shown once; send codes as "Sigilo-TOTP: ..."): \(Base32.encode(secrets.totp.secret))
            authenticator URI: \(secrets.provisioningURI)

            """)
        }
    }

    // MARK: serve

    static let serveSpec = CommandSpec(
        name: "serve", summary: "Serve the HTTP API (loopback by default) until SIGTERM or SIGINT.",
        usage: "sigilo-coordinator serve --state DIR [--key-file FILE] [--listen 127.0.0.1:PORT] [--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]] [--insecure] [--connections-per-address N] [--requests-per-second N]",
        options: [stateOption, SecretsKey.option, .value("listen", "HOST:PORT", "Address to listen on (default 127.0.0.1:8443; port 0 picks a free one; IPv6 as [::1]:8443, [::]:8443 for both families)."),
                  .value("tls-cert", "FILE", "PEM certificate chain: serve HTTPS."), .value("tls-key", "FILE", "PEM private key of --tls-cert."),
                  .value("tls-client-ca", "FILE", "Require client certificates signed by this CA (PEM)."),
                  .flag("insecure", "Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy you trust)."),
                  .value("connections-per-address", "N", "Connections one source address may hold at once (default 256); more get 429."),
                  .value("requests-per-second", "N", "Requests per second one source address may make, in bursts of twice that (default 100); more get 429 with Retry-After."),
                  .flag("verify-audit", "Verify the whole audit chain before serving (by default: its signatures, ends and unsigned tail).")]
            + Log.options,
        discussion: """
        Prints 'listening on HOST:PORT' once ready, then logs on standard error what an operator should watch: rounds opened,
        closed and abandoned (naming the tenants that did not answer), alerts, tenants gone dormant, the privacy budget running
        out; warnings are what needs a person. On SIGTERM/SIGINT it stops accepting, finishes in-flight requests and exits 0.
        Plain HTTP is served only on loopback unless --insecure is given. Refuses to start when the audit log fails verification.
        Connections are served by two event-loop threads and four workers, so thousands of tenants may wait for a round at once
        (each connection is a file descriptor: serve raises its soft limit to the hard one, see 'ulimit -Hn').
        """)

    /// glibc would give each connection thread its own malloc arena, each
    /// keeping freed multi-megabyte upload buffers, and would raise its mmap
    /// threshold until such buffers live in the heap for good. Two arenas and
    /// a fixed 1 MiB threshold return them to the system when freed
    /// (tools/bench-round, K 10, d 3.9M: peak 751 MiB without, ~190 MiB with).
    static func limitMallocRetention() {
        #if canImport(Glibc)
        // mallopt(3) is in <malloc.h>, which Glibc's module does not import; so are
        // its M_ARENA_MAX (-8) and M_MMAP_THRESHOLD (-3).
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        _ = mallopt(-8, 2)
        _ = mallopt(-3, 1 << 20)
        #endif
    }

    /// The secrets key for `serve`: read from the key file; for a state from
    /// before sealing (its TOTP secret stored plain) and no key file yet, a new
    /// key, with which opening the state seals the secret.
    static func secretsKeyForServing(_ args: ParsedArguments, state: URL, log: Log) throws -> [UInt8] {
        let url = try SecretsKey.location(args, state: state)
        if FileManager.default.fileExists(atPath: url.path) { return try SecretsKey.read(url) }
        guard try openService(args).sealedSecretCount() == 0 else {
            throw CLIError(.noInput, "serve: the TOTP secrets of this state are sealed with a key that is not at \(url.path): give --key-file FILE")
        }
        let key = try SecretsKey.create(url)
        log.warning("secrets.seal", "sealing the TOTP secret stored plain with a new secrets key in \(url.path) (mode 0600): back it up apart from the state")
        return key
    }

    static func runServe(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let stateURL = URL(fileURLWithPath: try args.required("state"))
        if let exposure = StateDirectory.exposure(stateURL) {
            throw CLIError(.refused, "serve: refusing to serve state others can read (it holds the signing key and the TOTP secret): \(exposure)")
        }
        let log = try Log(args)
        let service = try openService(args, secretsKey: try secretsKeyForServing(args, state: stateURL, log: log))
        service.eventLog = log
        // Held until exit: a second serve, or a command that would change what this one holds in memory, is refused.
        do { _ = try StateDirectory.lockForServing(stateURL) } catch let e as StateLocked { throw CLIError(.refused, "serve: \(e)") }
        let listen = args.string("listen") ?? "127.0.0.1:8443"
        let address: SocketAddress
        do { address = try SocketAddress(parsing: listen) } catch { throw CLIError.usage("serve: --listen: \(error)") }
        var configuration = HTTPServer.Configuration(host: address.host, port: address.port)
        if let value = args.string("connections-per-address") {
            guard let n = Int(value), n > 0 else { throw CLIError.usage("serve: --connections-per-address expects a positive integer, got \"\(value)\"") }
            configuration.sourceLimits.connectionsPerAddress = n
        }
        if let value = args.string("requests-per-second") {
            guard let rate = Double(value), rate.isFinite, rate > 0 else { throw CLIError.usage("serve: --requests-per-second expects a positive number, got \"\(value)\"") }
            configuration.sourceLimits.requestsPerSecond = rate
            configuration.sourceLimits.requestBurst = 2 * rate
        }
        switch (args.string("tls-cert"), args.string("tls-key")) {
        case (let cert?, let key?):
            do { configuration.channels = try TLSChannels(certificateFile: cert, keyFile: key, clientCAFile: args.string("tls-client-ca")) } catch {
                throw CLIError(.dataError, "serve: \(error)")
            }
        case (nil, nil):
            guard args.string("tls-client-ca") == nil else { throw CLIError.usage("serve: --tls-client-ca needs --tls-cert and --tls-key") }
            guard address.isLoopback || args.flag("insecure") else {
                throw CLIError(.refused, "serve: refusing plain HTTP on \(configuration.host), which is not loopback: give --tls-cert and --tls-key, or --insecure behind a TLS-terminating proxy")
            }
        default:
            throw CLIError.usage("serve: --tls-cert and --tls-key go together")
        }
        // The ends of the chain and its unsigned tail, in time independent of the log's length; the whole chain with --verify-audit.
        if let problem = try args.flag("verify-audit") ? service.verifyAudit() : service.verifyAuditEnds() {
            throw CLIError(.dataError, "serve: the audit log is not intact (\(problem)); run 'sigilo-coordinator audit verify' and investigate before serving")
        }
        // The largest update: the service's 2^24 values, as 8-byte masked words (secure placement).
        configuration.limits.maximumBodyBytes = 80 + 8 * (1 << 24)
        TerminationSignals.block() // before the server's threads exist
        limitMallocRetention()
        let routes = CoordinatorRoutes(service: service)
        let server = HTTPServer(configuration: configuration, headCheck: { head, length, peer in
            routes.checkHead(head, bodyLength: length, peer: peer)
        }, immediate: { routes.immediate($0) }, deferredHandler: { request, peer, responder in
            routes.handle(request, peer: peer) { responder.respond($0) }
        })
        routes.includeMetrics { [weak server] in server.map { Self.render($0.statistics(), parkedLongPolls: routes.parkedLongPolls) } ?? "" }
        let bound: UInt16
        do { bound = try server.start() } catch { throw CLIError(.failure, "\(error)") }
        OutputStream.standardOutput.write("listening on \(SocketAddress(parsingBound: address, port: bound))\(configuration.channels is TLSChannels ? " (TLS)" : "")\n")
        OutputStream.standardOutput.flush()
        let capacity = server.statistics()
        log.info("serve.start", "serving up to \(capacity.connectionCap) connections (file descriptors: soft limit \(capacity.descriptorLimit.before == capacity.descriptorLimit.after ? "\(capacity.descriptorLimit.after)" : "raised from \(capacity.descriptorLimit.before) to \(capacity.descriptorLimit.after)"), 'ulimit -Hn' bounds it)")

        // Rounds open, close at their deadline and expire on a 0.2 s tick; a
        // round that closes on its last update wakes the tick, so the next opens at once.
        let stop = DispatchSemaphore(value: 0)
        let ticking = Thread {
            while stop.wait(timeout: .now()) == .timedOut {
                _ = service.roundFinished.wait(timeout: .now() + 0.2)
                do { try service.maintain(now: now()) } catch { log.error("serve.maintenance", "\(error)") }
            }
        }
        ticking.start()
        TerminationSignals.wait()
        log.info("serve.stop", "shutting down: finishing in-flight requests")
        server.shutdown(draining: { routes.stopWaiting() })
        stop.signal()
        while ticking.isExecuting { usleep(10_000) }
        log.info("serve.stop", "stopped")
    }

    /// The HTTP server's counters in Prometheus' text format.
    static func render(_ statistics: HTTPServer.Statistics, parkedLongPolls: Int) -> String {
        var out = "# TYPE sigilo_http_connections_open gauge\nsigilo_http_connections_open \(statistics.openConnections)\n"
        out += "# TYPE sigilo_http_connections_accepted_total counter\nsigilo_http_connections_accepted_total \(statistics.acceptedConnections)\n"
        out += "# TYPE sigilo_long_polls_parked gauge\nsigilo_long_polls_parked \(parkedLongPolls)\n"
        out += "# TYPE sigilo_http_refused_total counter\n"
        for (reason, count) in statistics.refused.sorted(by: { $0.key < $1.key }) { out += "sigilo_http_refused_total{reason=\"\(reason)\"} \(count)\n" }
        return out
    }

    // MARK: tenants

    static let weightCapOption = OptionSpec.value("weight-cap", "W", "The largest weight (expected sampled customers) the tenant may declare; default the plan's maximumTenantWeight.")

    static let inviteSpec = CommandSpec(name: "tenant invite", summary: "Create a one-time enrolment token (valid 24 h) for a new tenant.",
                                        usage: "sigilo-coordinator tenant invite NAME --state DIR [--weight-cap W]", options: [stateOption, weightCapOption],
                                        discussion: "The token is shown once; only its SHA-256 is stored.")

    static func runInvite(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("tenant invite: give exactly one tenant NAME") }
        let cap = try args.double("weight-cap", where: { $0 > 0 }, expectation: "a number > 0")
        let service = try openService(args)
        do {
            OutputStream.standardOutput.write(try service.invite(name: args.positional[0], weightCap: cap, now: now()) + "\n")
        } catch let e as CoordinatorError { throw CLIError(.usage, e.message) }
    }

    static let weightCapSpec = CommandSpec(
        name: "tenant weight-cap", summary: "Set the largest weight a tenant may declare, or 'plan' for the plan's default.",
        usage: "sigilo-coordinator tenant weight-cap ID (W | plan) --state DIR",
        options: [stateOption],
        discussion: """
        An update declaring more is refused (422 weight_above_cap) and raises an alert. Applies from the tenant's next update,
        also while 'serve' runs (the cap is read at every submission).
        """)

    static func runWeightCap(_ args: ParsedArguments) throws {
        guard args.positional.count == 2 else { throw CLIError.usage("tenant weight-cap: give a tenant ID and a cap (a number > 0, or 'plan')") }
        let value = args.positional[1]
        let cap: Double?
        if value == "plan" { cap = nil } else {
            guard let number = Double(value), number.isFinite, number > 0 else { throw CLIError.usage("tenant weight-cap: \"\(value)\" is not a number > 0 or 'plan'") }
            cap = number
        }
        let service = try openService(args)
        do { try service.setWeightCap(tenant: args.positional[0], to: cap, now: now()) } catch let e as CoordinatorError {
            throw CLIError(e.status == 404 ? .dataError : .usage, "tenant weight-cap: \(e.message)")
        }
        OutputStream.standardOutput.write("\(args.positional[0]): weight cap \(cap.map { String($0) } ?? "from the plan")\n")
    }

    static let revokeSpec = CommandSpec(name: "tenant revoke", summary: "Revoke a tenant; its next request is refused.",
                                        usage: "sigilo-coordinator tenant revoke ID --state DIR", options: [stateOption],
                                        discussion: "Refused (exit 77) while 'serve' runs on the state, whose open round the revocation may end: use POST /v1/admin/tenants/ID/revoke there.")

    static func runRevoke(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("tenant revoke: give exactly one tenant ID") }
        try lockForChange(args, command: "tenant revoke", instead: "POST /v1/admin/tenants/\(args.positional[0])/revoke on the running server")
        let service = try openService(args)
        do { try service.revoke(tenant: args.positional[0], now: now()) } catch let e as CoordinatorError { throw CLIError(.dataError, e.message) }
        OutputStream.standardOutput.write("revoked \(args.positional[0])\n")
    }

    static let listSpec = CommandSpec(name: "tenant list", summary: "List tenants (id, name, status), without keys.",
                                      usage: "sigilo-coordinator tenant list --state DIR [--json]", options: [stateOption, .flag("json", "Print JSON.")])

    static func runList(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let tenants = try openService(args).tenants()
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.array(tenants.map { JSON.object([("id", .string($0.id)), ("name", .string($0.name)), ("status", .string($0.status))]) }).rendered() + "\n")
        } else {
            for t in tenants { OutputStream.standardOutput.write("\(t.id)\t\(t.status)\t\(t.name)\n") }
        }
    }

    // MARK: plan

    static let planShowSpec = CommandSpec(name: "plan show", summary: "Print the current plan (JSON).",
                                          usage: "sigilo-coordinator plan show --state DIR", options: [stateOption])

    static func runPlanShow(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        guard let plan = try openService(args).plan() else { throw CLIError(.noInput, "no plan is set") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        OutputStream.standardOutput.write(String(decoding: try encoder.encode(plan), as: UTF8.self) + "\n")
    }

    static let planSetSpec = CommandSpec(name: "plan set", summary: "Install a plan file (protocol/PLAN.md); the first publishes model version 1.",
                                         usage: "sigilo-coordinator plan set FILE --state DIR", options: [stateOption],
                                         discussion: "Refused (exit 77) while 'serve' runs on the state: use 'sigilo-coordinator admin plan set' (PUT /v1/admin/plan) there.")

    static func runPlanSet(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("plan set: give exactly one plan FILE") }
        try lockForChange(args, command: "plan set", instead: "'sigilo-coordinator admin plan set FILE' (PUT /v1/admin/plan) on the running server")
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: args.positional[0])) } catch {
            throw CLIError(.noInput, "cannot read \(args.positional[0]): \(error.localizedDescription)")
        }
        let plan: Plan
        do { plan = try Plan.decodeOperatorFile(data) } catch let e as PlanError { throw CLIError(.dataError, "\(args.positional[0]): \(e.description)") }
        let service = try openService(args)
        let change: CoordinatorService.PlanChange
        do { change = try service.setPlan(plan, now: now()) } catch let e as CoordinatorError { throw CLIError(.dataError, e.message) }
        if let round = change.stagedUntilRound { OutputStream.standardOutput.write("round \(round) is open: the plan takes effect when it ends\n") }
        OutputStream.standardOutput.write("plan \(change.stagedUntilRound == nil ? "installed" : "staged"): \(plan.labels.count) labels, \(plan.dimension) parameters, q \(plan.sampleRate), z \(plan.noiseMultiplier), budget epsilon \(formatEpsilon(plan.maximumEpsilon)) at delta \(plan.delta)\n")
        if let labels = change.labels { OutputStream.standardOutput.write("intents: \(labels)\n") }
    }

    // MARK: models

    static let modelExportSpec = CommandSpec(
        name: "model export", summary: "Write a published model version (default: the latest) to a file.",
        usage: "sigilo-coordinator model export --to FILE [--version V] --state DIR",
        options: [stateOption, .value("to", "FILE", "Where to write the model file."), .value("version", "V", "Model version (default latest).")])

    static func runModelExport(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let service = try openService(args)
        let version = try args.int("version", range: 1...Int.max).map(UInt64.init) ?? service.status().modelVersion
        guard let version, let model = try service.model(version: version) else { throw CLIError(.noInput, "no such model version") }
        let path = try args.required("to")
        do { try Data(model.file).write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw CLIError(.ioError, "cannot write \(path): \(error.localizedDescription)")
        }
        let provenance = try service.modelProvenance(version: version)
        let origin = provenance?.round.map { "from round \($0), epsilon \(formatEpsilon(provenance!.epsilon)) at publication" } ?? "initial model"
        OutputStream.standardOutput.write("model version \(version) (sha256 \(model.sha256); \(origin)) written to \(path)\n")
    }

    // MARK: status

    static let statusSpec = CommandSpec(name: "status", summary: "Tenants, rounds, model version and privacy spent.",
                                        usage: "sigilo-coordinator status --state DIR [--json]", options: [stateOption, .flag("json", "Print JSON.")])

    static func runStatus(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let service = try openService(args)
        let status = try statusJSON(service).rendered()
        OutputStream.standardOutput.write(args.flag("json") ? status + "\n" : try statusText(status))
    }

    /// The status as one JSON object: `status --json` and GET /v1/admin/status (which `admin status` reads).
    static func statusJSON(_ service: CoordinatorService) throws -> JSON {
        let s = try service.status()
        let tenants = try service.tenants().filter { $0.status == "active" }
        return JSON.object([
            ("tenants_active", .integer(s.tenantsActive)), ("tenants_revoked", .integer(s.tenantsRevoked)),
            ("tenants_dormant", .array(s.tenantsDormant.map { .string($0) })),
            ("dormant_after_missed_rounds", .integer(s.dormantAfterMissedRounds)),
            ("model_version", s.modelVersion.map { .integer(Int($0)) } ?? .null), ("rounds_closed", .integer(s.roundsClosed)),
            ("rounds_abandoned", .integer(s.roundsAbandoned)), ("open_round", s.openRound.map { .integer(Int($0)) } ?? .null),
            ("epsilon", .number(s.epsilon)), ("delta", s.delta.map { .number($0) } ?? .null),
            ("maximum_epsilon", s.maximumEpsilon.map { .number($0) } ?? .null),
            ("tenants", .array(tenants.map { t in .object([
                ("id", .string(t.id)), ("name", .string(t.name)), ("last_seen", t.lastSeen.map { .string(Log.timestamp($0)) } ?? .null),
                ("last_round", t.lastRound.map { .integer(Int($0)) } ?? .null), ("missed_rounds", .integer(t.missedRounds)),
                ("dormant", .bool(s.tenantsDormant.contains(t.id))),
            ]) })),
        ])
    }

    /// The status JSON for people, wherever it was read (one renderer for the local and the remote command).
    static func statusText(_ rendered: String) throws -> String {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(rendered.utf8))) as? [String: Any] else {
            throw CLIError(.dataError, "status: the answer is not a JSON object")
        }
        func int(_ key: String) -> Int { o[key] as? Int ?? 0 }
        let dormant = o["tenants_dormant"] as? [String] ?? []
        let number = { (key: String) in (o[key] as? Double).map(formatEpsilon) ?? "-" }
        var out = "tenants: \(int("tenants_active")) active, \(int("tenants_revoked")) revoked"
        if !dormant.isEmpty {
            out += "; dormant (missed \(int("dormant_after_missed_rounds")) rounds in a row, not waited for until they poll): \(dormant.joined(separator: ", "))"
        }
        out += "\nmodel version: \((o["model_version"] as? Int).map(String.init) ?? "none")\n"
        out += "rounds: \(int("rounds_closed")) closed, \(int("rounds_abandoned")) abandoned\((o["open_round"] as? Int).map { ", round \($0) open" } ?? "")\n"
        out += "privacy: epsilon \(number("epsilon")) of \(number("maximum_epsilon")) at delta \((o["delta"] as? Double).map { "\($0)" } ?? "-")\n"
        let tenants = o["tenants"] as? [[String: Any]] ?? []
        if !tenants.isEmpty {
            out += "\nactive tenant\tlast seen\tlast round\tmissed in a row\tname\n"
            for t in tenants {
                out += "\(t["id"] as? String ?? "?")\t\(t["last_seen"] as? String ?? "never")\t\((t["last_round"] as? Int).map(String.init) ?? "none")\t"
                    + "\(t["missed_rounds"] as? Int ?? 0)\(t["dormant"] as? Bool == true ? " (dormant)" : "")\t\(t["name"] as? String ?? "")\n"
            }
        }
        return out
    }

    // MARK: auditors

    static let auditorAddSpec = CommandSpec(name: "auditor add", summary: "Create a read-only auditor (DPO) credential; shown once.",
                                            usage: "sigilo-coordinator auditor add NAME --state DIR", options: [stateOption])

    static func runAuditorAdd(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("auditor add: give exactly one NAME") }
        do {
            let issued = try openService(args).createAuditor(name: args.positional[0], by: .localOperator, now: now())
            OutputStream.standardOutput.write(issued.credential + "\n")
        } catch let e as CoordinatorError { throw CLIError(.usage, e.message) }
    }

    static let auditorRevokeSpec = CommandSpec(name: "auditor revoke", summary: "Revoke an auditor credential.",
                                               usage: "sigilo-coordinator auditor revoke ID --state DIR", options: [stateOption])

    static func runAuditorRevoke(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("auditor revoke: give exactly one ID") }
        do { try openService(args).revokeCredential(args.positional[0], by: .localOperator, now: now()) } catch let e as CoordinatorError {
            throw CLIError(.dataError, e.message)
        }
        OutputStream.standardOutput.write("revoked \(args.positional[0])\n")
    }

    static let auditorListSpec = CommandSpec(name: "auditor list", summary: "List auditor credentials (ids, names, revocation; never secrets).",
                                             usage: "sigilo-coordinator auditor list --state DIR", options: [stateOption])

    static func runAuditorList(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let time = ISO8601DateFormatter()
        for a in try openService(args).auditors() {
            OutputStream.standardOutput.write("\(a.id)\t\(a.name)\tcreated \(time.string(from: Date(timeIntervalSince1970: a.createdAt)))"
                + (a.revokedAt.map { "\trevoked \(time.string(from: Date(timeIntervalSince1970: $0)))" } ?? "\tactive") + "\n")
        }
    }

    static let sessionListSpec = CommandSpec(name: "session list", summary: "List open sessions: id (a prefix of the token's hash), credential, expiry.",
                                             usage: "sigilo-coordinator session list --state DIR", options: [stateOption])

    static func runSessionList(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        for s in try openService(args).sessions(now: now()) {
            OutputStream.standardOutput.write("\(s.id)\t\(s.credential)\texpires \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: s.expiresAt)))\n")
        }
    }

    static let sessionRevokeSpec = CommandSpec(
        name: "session revoke", summary: "End a session (by the id 'session list' shows) or all of them; also while serving.",
        usage: "sigilo-coordinator session revoke (ID | --all) --state DIR",
        options: [stateOption, .flag("all", "End every session.")])

    static func runSessionRevoke(_ args: ParsedArguments) throws {
        let all = args.flag("all")
        guard all ? args.positional.isEmpty : args.positional.count == 1 else { throw CLIError.usage("session revoke: give one session ID or --all") }
        do {
            let ended = try openService(args).revokeSessions(all ? nil : args.positional[0], by: .localOperator, now: now())
            OutputStream.standardOutput.write("ended \(ended) session(s)\n")
        } catch let e as CoordinatorError { throw CLIError(e.status == 404 ? .dataError : .usage, e.message) }
    }

    static let adminRotateSpec = CommandSpec(
        name: "admin rotate", summary: "Replace the admin credential and TOTP secret (shown once); the old ones and their sessions stop working.",
        usage: "sigilo-coordinator admin rotate --state DIR [--key-file FILE] [--secrets-to FILE]",
        options: [stateOption, SecretsKey.option,
                  .value("secrets-to", "FILE", "Write the new credential and TOTP secret to FILE (mode 0600, JSON) instead of the terminal.")],
        discussion: "Safe while serving: the server reads credentials per request. Needs the secrets key, which seals the new TOTP secret.")

    static func runAdminRotate(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let state = URL(fileURLWithPath: try args.required("state"))
        let service = try openService(args, secretsKey: try SecretsKey.read(try SecretsKey.location(args, state: state)))
        let secrets: CoordinatorService.AdminSecrets
        do { secrets = try service.rotateAdmin(by: .localOperator, now: now()) } catch let e as CoordinatorError { throw CLIError(.dataError, e.message) }
        try showAdminSecrets(secrets, args: args, heading: "rotated the admin credential and TOTP secret of \(state.path)")
    }

    // MARK: audit

    static let auditVerifySpec = CommandSpec(
        name: "audit verify", summary: "Check the audit log's hash chain and signed head; name the first bad entry.",
        usage: "sigilo-coordinator audit verify --state DIR [--segment FILE ...] [--checkpoint FILE ...]",
        options: [stateOption, .value("segment", "FILE", "An archived segment (audit archive), oldest first; they must chain into the log.", repeatable: true),
                  .value("checkpoint", "FILE", "A signed head kept earlier (audit export --checkpoint-to, GET /v1/audit/head); the log must extend it.",
                         repeatable: true)],
        discussion: """
        Streams the log (memory does not grow with it). After 'audit archive' the table's chain starts at a signed cut point;
        give the archived segments to check them too, as one chain ending exactly at the cut.
        The signed head lives in the database with the entries, so entries after it were appended without the coordinator's key.
        A checkpoint proves more: that the log was not rolled back or rewritten, even by someone holding the database and the key's
        signatures from before, up to the entry the checkpoint recorded.
        Exit 0 when intact, 65 when an entry was edited, deleted, reordered or appended without the key, or a checkpoint is not extended,
        66 when a checkpoint file cannot be read.
        """)

    static func runAuditVerify(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let service = try openService(args)
        let segments = args.strings("segment")
        let checkpoints = try args.strings("checkpoint").map { path -> (String, AuditChain.Checkpoint) in
            guard let data = FileManager.default.contents(atPath: path) else { throw CLIError(.noInput, "cannot read checkpoint \(path)") }
            guard let checkpoint = AuditChain.Checkpoint(json: data) else {
                throw CLIError(.dataError, "\(path) is not a checkpoint ({\"sequence\", \"hash\", \"signature\"} as audit export --checkpoint-to writes)")
            }
            return (path, checkpoint)
        }
        var archived = [Int64: [UInt8]]()
        let wanted = Set(checkpoints.map(\.1.head.sequence))
        if !segments.isEmpty, let problem = try AuditSegment.verify(segments, endingAt: try service.auditCut(), visit: { entry in
            if wanted.contains(entry.sequence) { archived[entry.sequence] = entry.hash }
        }) {
            throw CLIError(.dataError, "audit segments NOT intact: \(problem)")
        }
        if let problem = try service.verifyAudit() { throw CLIError(.dataError, "audit log NOT intact: \(problem)") }
        for (path, checkpoint) in checkpoints {
            if let problem = try service.auditProblem(extending: checkpoint, archived: archived[checkpoint.head.sequence]) {
                throw CLIError(.dataError, "audit log does NOT extend checkpoint \(path): \(problem)")
            }
        }
        let count = try service.auditEntryCount()
        let cut = try service.auditCut()
        let scope = cut.map { segments.isEmpty ? ", entries \($0.sequence + 1)...\(count) from the signed cut (earlier ones archived; give --segment to check them)"
                                              : ", \(segments.count) archived segment(s) through entry \($0.sequence) and the log after it" } ?? ""
        let extended = checkpoints.isEmpty ? "" : "; extends \(checkpoints.count) checkpoint(s) (entries \(checkpoints.map { String($0.1.head.sequence) }.joined(separator: ", ")))"
        OutputStream.standardOutput.write("audit log intact: \(count) entries\(scope), chain and signed head verified\(extended)\n")
    }

    static let auditExportSpec = CommandSpec(
        name: "audit export", summary: "Export the audit log as JSON Lines (one entry per line, with its chain hash) for the DPO.",
        usage: "sigilo-coordinator audit export --state DIR [--to FILE] [--checkpoint-to FILE]",
        options: [stateOption, .value("to", "FILE", "Write to FILE instead of standard output."),
                  .value("checkpoint-to", "FILE", "Also write the signed head (a checkpoint) to FILE, for 'audit verify --checkpoint'.")],
        discussion: """
        Verifies the chain first and refuses to export a broken log. Keep the checkpoint (or the last line's hash): it anchors later
        verifications, so a log rolled back or rewritten behind it is caught.
        Streams in pages: memory does not grow with the log. After 'audit archive' the export starts after the cut.
        """)

    static func runAuditExport(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let service = try openService(args)
        if let problem = try service.verifyAudit() { throw CLIError(.dataError, "audit log NOT intact: \(problem)") }
        // Taken before the entries: while serving, the export may hold more than the checkpoint covers, never fewer.
        let checkpoint = try service.auditCheckpoint()
        if let path = args.string("to") {
            try writeDurably(path) { handle in try exportEntries(to: handle) { try service.forEachAuditEntry($0) } }
        } else {
            try exportEntries(to: FileHandle.standardOutput) { try service.forEachAuditEntry($0) }
        }
        if let path = args.string("checkpoint-to") {
            guard let checkpoint else { throw CLIError(.dataError, "audit export: the log is empty; there is no head to keep") }
            try writeDurably(path) { try $0.write(contentsOf: Data((checkpoint.json + "\n").utf8)) }
            FileHandle.standardError.write(Data("checkpoint of entry \(checkpoint.head.sequence) written to \(path)\n".utf8))
        }
    }

    /// Writes entries as JSON Lines in buffered pieces.
    static func exportEntries(to handle: FileHandle,
                              _ entries: (((AuditEntry, [UInt8]) throws -> Void) throws -> Void)) throws {
        var buffer = ""
        try entries { entry, hash in
            buffer += CoordinatorRoutes.auditJSON(entry, hash: hash).rendered() + "\n"
            if buffer.utf8.count >= 1 << 20 { try handle.write(contentsOf: Data(buffer.utf8)); buffer = "" }
        }
        try handle.write(contentsOf: Data(buffer.utf8))
    }

    /// Writes FILE aside, syncs it and renames it into place: a reader never sees half of it, and it survives a crash once this returns.
    static func writeDurably(_ path: String, _ body: (FileHandle) throws -> Void) throws {
        let temporary = path + ".partial"
        guard FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: temporary) else {
            throw CLIError(.ioError, "cannot write \(temporary)")
        }
        do {
            try body(handle)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(atPath: temporary)
            throw CLIError(.ioError, "cannot write \(path): \(error)")
        }
        guard rename(temporary, path) == 0 else { throw CLIError(.ioError, "cannot rename \(temporary) to \(path)") }
    }

    static let auditArchiveSpec = CommandSpec(
        name: "audit archive", summary: "Move the audit log's oldest entries into a segment file, keeping the chain verifiable.",
        usage: "sigilo-coordinator audit archive --through SEQUENCE --to FILE --state DIR",
        options: [stateOption, .value("through", "SEQUENCE", "The last entry to archive."),
                  .value("to", "FILE", "The segment file to write (JSON Lines, as 'audit export'; must not exist).")],
        discussion: """
        Retention: verifies the log, writes entries up to SEQUENCE to FILE and syncs it, then in one transaction signs a cut
        point (that entry's sequence and hash) with the coordinator's key, deletes those entries from the database and records
        'audit.archive'. The log keeps verifying from the cut; 'audit verify --segment FILE' checks the segments and the log as
        one chain. Keep segments where the DPO keeps exports: the database no longer has them.
        """)

    static func runAuditArchive(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        guard let through = try args.int("through", range: 1...Int(Int64.max)) else { throw CLIError.usage("audit archive: give --through SEQUENCE") }
        let path = try args.required("to")
        guard !FileManager.default.fileExists(atPath: path) else { throw CLIError(.usage, "audit archive: \(path) exists; segments are never overwritten") }
        let service = try openService(args)
        let range: ClosedRange<Int64>
        do {
            range = try service.archiveAudit(through: Int64(through), now: now()) { entries in
                try writeDurably(path) { handle in try exportEntries(to: handle, entries) }
                return URL(fileURLWithPath: path).lastPathComponent
            }
        } catch let e as CoordinatorError { throw CLIError(e.status == 409 ? .dataError : .usage, "audit archive: \(e.message)") }
        OutputStream.standardOutput.write("archived entries \(range.lowerBound)...\(range.upperBound) to \(path); the log continues from a signed cut at entry \(range.upperBound)\n")
    }

    // MARK: backups

    static let backupSpec = CommandSpec(
        name: "backup", summary: "Write a consistent, checksummed backup of the state (safe while serving).",
        usage: "sigilo-coordinator backup --to FILE --state DIR",
        options: [stateOption, .value("to", "FILE", "Backup file to write (mode 0600; it holds the coordinator's signing key).")])

    static func runBackup(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("to")
        // Checked before the backup is recorded in the audit log, which would otherwise name a file never written.
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError(.ioError, "backup: the folder \(folder) does not exist; create it first")
        }
        let service = try openService(args)
        do {
            let written = try service.backup(to: URL(fileURLWithPath: path), now: now())
            OutputStream.standardOutput.write("backup written to \(path): \(written.bytes) bytes, sha256 \(written.sha256)\n")
        } catch let e as CoordinatorError { throw CLIError(.ioError, e.message) } catch { throw CLIError(.ioError, "backup: cannot write \(path): \(error)") }
    }

    static let restoreSpec = CommandSpec(
        name: "restore", summary: "Restore a backup into an empty state directory and verify its audit log.",
        usage: "sigilo-coordinator restore --from FILE --state DIR",
        options: [stateOption, .value("from", "FILE", "Backup file written by 'backup'.")])

    static func runRestore(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let from = try args.required("from"), path = try args.required("state")
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: from))) } catch {
            throw CLIError(.noInput, "cannot read \(from): \(error.localizedDescription)")
        }
        do {
            let archive = try BackupArchive.decode(bytes)
            let service = try CoordinatorService.restore(from: archive, into: URL(fileURLWithPath: path), now: now())
            let status = try service.status()
            OutputStream.standardOutput.write("restored \(from) into \(path): model version \(status.modelVersion.map(String.init) ?? "none"), \(status.roundsClosed) rounds closed, epsilon \(formatEpsilon(status.epsilon)); audit log verified\n")
            OutputStream.standardOutput.write("the TOTP secret stays sealed: serve it with the original state's secrets key (--key-file FILE)\n")
        } catch let e as CoordinatorError {
            throw CLIError(e.code == "not_empty" ? .refused : .dataError, "restore: \(e.message)")
        }
    }
}
