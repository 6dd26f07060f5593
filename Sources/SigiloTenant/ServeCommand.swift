import Foundation
import SigiloCLI
import SigiloHTTP
import SigiloTLS

/// `sigilo-tenant serve`: the live classification service a business's agent calls.
enum ServeCommand {
    static let spec = CommandSpec(
        name: "serve",
        summary: "Serve classification, attendants' feedback, consent events and the WhatsApp webhook (loopback by default).",
        usage: "sigilo-tenant serve --state DIR --key-file FILE [--listen 127.0.0.1:PORT [--tls-cert FILE --tls-key FILE] [--insecure] | --socket PATH] "
            + "[--whatsapp-app-secret-file FILE --whatsapp-verify-token-file FILE] [--keep-unlabelled-days D] [--workers N]",
        options: TenantTool.storeOptions + [
            .value("listen", "HOST:PORT", "Address to listen on (default 127.0.0.1:8780; port 0 picks a free one; IPv6 as [::1]:8780)."),
            .value("socket", "PATH", "Listen on a Unix-domain socket instead (mode 0600: callers run as this user)."),
            .value("tls-cert", "FILE", "PEM certificate chain: serve HTTPS."), .value("tls-key", "FILE", "PEM private key of --tls-cert."),
            .flag("insecure", "Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy you trust)."),
            .value("whatsapp-app-secret-file", "FILE", "The Meta app secret that signs webhook deliveries (X-Hub-Signature-256); mode 0600."),
            .value("whatsapp-verify-token-file", "FILE", "The verify token of the webhook's GET handshake; mode 0600."),
            .value("keep-unlabelled-days", "D", "Delete messages no attendant labelled after D days (default 30)."),
            .value("workers", "N", "Threads that answer requests (default: the number of cores)."),
            TenantTool.encoderOption,
        ] + Log.options,
        discussion: """
        Prints 'listening on HOST:PORT' (or 'listening on unix:PATH') once ready. Callers send "Authorization: Bearer TOKEN" with a token from
        'sigilo-tenant agent-token create'; the webhook is authenticated by WhatsApp's own signature instead.
          POST /v1/classify   {"text", "customer"?, "conversation"?, "message_id"?} or {"messages": [...]}: intent, confidence, top,
                              decision (answer|handoff), reason, message_id. A named customer's message is kept (redacted, sealed,
                              unlabelled) only if their consent is on record, for an attendant's feedback.
          POST /v1/feedback   {"message_id", "intent"}: labels a kept message (it then trains); otherwise counted and discarded.
          POST /v1/consent    {"customer", "consent": true|false}: a withdrawal deletes the customer's messages.
          GET|POST /v1/whatsapp/webhook, GET /healthz, GET /metrics (with a token).
        A new model from run, pull or personalise, and tokens issued or revoked, are taken up within 0.2 s without a restart.
        On SIGTERM/SIGINT it finishes in-flight requests, writes the messages still queued and exits 0.
        """)

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let log = try Log(args)
        let store = try TenantTool.openStore(args)
        var settings = TenantService.Settings()
        if let days = try args.double("keep-unlabelled-days", where: { $0 > 0 && $0 <= 3650 }, expectation: "a number of days in (0, 3650]") {
            settings.keepUnlabelledSeconds = days * 86_400
        }
        settings.encoderPath = args.string("encoder")
        let webhook = try webhookSecrets(args)
        let socketPath = args.string("socket")
        if socketPath != nil {
            for option in ["listen", "tls-cert", "tls-key"] where args.string(option) != nil {
                throw CLIError.usage("serve: --socket serves local callers in plain HTTP; --\(option) goes with --listen")
            }
        }
        let address: SocketAddress
        do { address = try SocketAddress(parsing: args.string("listen") ?? "127.0.0.1:8780") } catch { throw CLIError.usage("serve: --listen: \(error)") }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var configuration = HTTPServer.Configuration(host: address.host, port: address.port, eventLoops: 1,
                                                     workers: try args.int("workers", range: 1...256) ?? max(2, cores))
        configuration.limits.maximumBodyBytes = TenantService.classifyBodyBytes
        configuration.unixSocketPath = socketPath
        // An agent on the same host is one address making many requests: the per-address limits are for the open internet.
        configuration.sourceLimits.requestsPerSecond = 1_000_000
        configuration.sourceLimits.requestBurst = 2_000_000
        configuration.sourceLimits.connectionsPerAddress = 10_000
        switch (args.string("tls-cert"), args.string("tls-key")) {
        case (let cert?, let key?):
            do { configuration.channels = try TLSChannels(certificateFile: cert, keyFile: key, clientCAFile: nil) } catch {
                throw CLIError(.dataError, "serve: \(error)")
            }
        case (nil, nil):
            guard address.isLoopback || args.flag("insecure") else {
                throw CLIError(.refused, "serve: refusing plain HTTP on \(address.host), which is not loopback: give --tls-cert and --tls-key, or --insecure behind a TLS-terminating proxy")
            }
        default:
            throw CLIError.usage("serve: --tls-cert and --tls-key go together")
        }

        TerminationSignals.block() // before any thread exists
        let service = TenantService(store: store, webhook: webhook, settings: settings, log: log)
        try service.refresh(force: true)
        if service.models.current == nil {
            log.warning("model.none", "no model yet: classify answers 503 until 'sigilo-tenant run' or 'pull' brings one (taken up without a restart)")
        }
        // At start and hourly: messages no attendant labelled in time are deleted (data minimisation).
        func expireUnlabelled(now: Double) throws {
            let expired = try service.expireUnlabelled(now: now)
            if expired > 0 { log.info("messages.expire", "deleted \(expired) unlabelled messages older than \(settings.keepUnlabelledSeconds / 86_400) days") }
        }
        try expireUnlabelled(now: Date().timeIntervalSince1970)
        service.writer.start()
        let server = HTTPServer(configuration: configuration, headCheck: { head, length, _ in service.checkHead(head, bodyLength: length) },
                                immediate: { service.immediate($0) }, deferredHandler: { request, _, responder in
            responder.respond(service.handle(request))
        })
        let bound: UInt16
        do { bound = try server.start() } catch { throw CLIError(.failure, "serve: \(error)") }
        let listening = socketPath.map { "unix:\($0)" } ?? "\(SocketAddress(parsingBound: address, port: bound))\(configuration.channels is TLSChannels ? " (TLS)" : "")"
        OutputStream.standardOutput.write("listening on \(listening)\n")
        OutputStream.standardOutput.flush()

        // The main thread keeps up with the store until a termination signal. It decodes each new model, which on a
        // busy core would delay answers by many milliseconds: at the lowest priority it uses only the time they leave.
        // (Linux gives each thread its own nice value; the server's threads, started above, keep theirs.)
        #if canImport(Glibc)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 19)
        #endif
        var lastExpiry = Date().timeIntervalSince1970
        while TerminationSignals.wait(timeout: 0.2) == nil {
            do { try service.refresh() } catch { log.error("model.refresh", "\(error)") }
            let now = Date().timeIntervalSince1970
            if now - lastExpiry > 3600 {
                lastExpiry = now
                do { try expireUnlabelled(now: now) } catch { log.error("messages.expire", "\(error)") }
            }
        }
        log.info("serve.stop", "shutting down: finishing in-flight requests")
        server.shutdown()
        service.writer.stop()
        log.info("serve.stop", "stopped")
    }

    /// Both webhook secrets from files only the operator can read, or neither.
    static func webhookSecrets(_ args: ParsedArguments) throws -> TenantService.WebhookSecrets? {
        switch (args.string("whatsapp-app-secret-file"), args.string("whatsapp-verify-token-file")) {
        case (nil, nil): return nil
        case (let secret?, let token?): return .init(appSecret: try readSecret(secret), verifyToken: try readSecret(token))
        default: throw CLIError.usage("serve: --whatsapp-app-secret-file and --whatsapp-verify-token-file go together")
        }
    }

    static func readSecret(_ path: String) throws -> [UInt8] {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path), let data = FileManager.default.contents(atPath: path) else {
            throw CLIError(.noInput, "serve: cannot read \(path)")
        }
        if let mode = attributes[.posixPermissions] as? Int, mode & 0o077 != 0 {
            throw CLIError(.refused, "serve: \(path) is accessible by group or others (mode \(String(mode, radix: 8))); run: chmod 600 \(path)")
        }
        let secret = Array(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        guard !secret.isEmpty, secret.count <= 1024 else { throw CLIError(.dataError, "serve: \(path) must hold a secret of 1 to 1024 bytes") }
        return secret
    }
}

/// `sigilo-tenant agent-token`: the bearer tokens agents present to `serve`.
enum AgentTokenCommand {
    static let spec = CommandSpec(
        name: "agent-token",
        summary: "Issue (create NAME), revoke (revoke NAME) or list the tokens agents present to 'serve'.",
        usage: "sigilo-tenant agent-token create|revoke NAME | list --state DIR --key-file FILE",
        options: TenantTool.storeOptions,
        discussion: """
        create prints the token once (only its SHA-256 is kept); a running 'serve' accepts it, or stops accepting a revoked one,
        within 0.2 s. Exit codes: 0 done, 1 a token of that name exists (create) or no live token has it (revoke), 64 bad arguments.
        """)

    static func run(_ args: ParsedArguments) throws {
        let now = Date().timeIntervalSince1970
        switch (args.positional.first, args.positional.count) {
        case ("create", 2):
            let token = try TenantTool.openStore(args).createAgentToken(name: args.positional[1], now: now)
            printError("agent token \"\(args.positional[1])\" (shown once; send as \"Authorization: Bearer ...\"):")
            OutputStream.standardOutput.write(token + "\n")
        case ("revoke", 2):
            guard try TenantTool.openStore(args).revokeAgentToken(name: args.positional[1], now: now) else {
                throw CLIError(.failure, "agent-token: no live token named \"\(args.positional[1])\"")
            }
            OutputStream.standardOutput.write("revoked agent token \"\(args.positional[1])\"\n")
        case ("list", 1):
            let formatter = ISO8601DateFormatter()
            for token in try TenantTool.openStore(args).agentTokens() {
                let state = token.revokedAt.map { "revoked \(formatter.string(from: Date(timeIntervalSince1970: $0)))" } ?? "live"
                OutputStream.standardOutput.write("\(token.name)\tcreated \(formatter.string(from: Date(timeIntervalSince1970: token.createdAt)))\t\(state)\n")
            }
        default:
            throw CLIError.usage("agent-token: expected 'create NAME', 'revoke NAME' or 'list'")
        }
    }
}
