import Foundation
import SigiloCLI
import SigiloClient
import SigiloFederation

/// `sigilo-coordinator admin ...`: administration of a running coordinator
/// from anywhere, over HTTPS, through the admin API (protocol/SECURITY.md).
/// `admin login` opens a session with the admin credential and a TOTP code
/// (read from a file or typed, never from the command line) and keeps it in a
/// 0600 file; every other admin command uses that session.
enum AdminCommands {
    static let sessionOption = OptionSpec.value("session-file", "FILE",
                                                "Where the admin session is kept (default ~/.config/sigilo/admin-session.json, mode 0600).")

    static var commands: [(spec: CommandSpec, run: (ParsedArguments) throws -> Void)] {
        [(loginSpec, login), (logoutSpec, logout), (statusSpec, status),
         (tenantInviteSpec, tenantInvite), (tenantRevokeSpec, tenantRevoke), (tenantListSpec, tenantList),
         (planShowSpec, planShow), (planSetSpec, planSet),
         (auditorAddSpec, auditorAdd), (auditorRevokeSpec, auditorRevoke), (auditorListSpec, auditorList)]
    }

    // MARK: session

    /// What `login` keeps: where the coordinator is, how to trust it, the session.
    struct SavedSession: Codable {
        var url: String
        var coordinatorCA: String?
        var session: String
        var expires: Double
    }

    static func sessionPath(_ args: ParsedArguments) -> String {
        if let path = args.string("session-file") { return path }
        let environment = ProcessInfo.processInfo.environment
        let config = environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.config")
        return config + "/sigilo/admin-session.json"
    }

    /// The client of the saved session; says what to do when there is none or it expired.
    static func client(_ args: ParsedArguments) throws -> AdminClient {
        let path = sessionPath(args)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CLIError(.noInput, "no admin session in \(path): run 'sigilo-coordinator admin login --url URL' first")
        }
        guard let saved = try? JSONDecoder().decode(SavedSession.self, from: data) else {
            throw CLIError(.dataError, "\(path) is not an admin session file; log in again")
        }
        guard saved.expires > Date().timeIntervalSince1970 else {
            throw CLIError(.refused, "the admin session in \(path) expired at \(Log.timestamp(saved.expires)): log in again")
        }
        guard let url = URL(string: saved.url) else { throw CLIError(.dataError, "\(path): bad url \(saved.url)") }
        return AdminClient(baseURL: url, caFile: saved.coordinatorCA, session: saved.session)
    }

    /// Runs a request; the coordinator's refusal becomes an error naming its code.
    static func call<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as ClientError {
            switch e.status {
            case nil: throw CLIError(.failure, "\(what): \(e)")
            case 401?: throw CLIError(.refused, "\(what): \(e) (log in again: 'sigilo-coordinator admin login')")
            case 403?: throw CLIError(.refused, "\(what): \(e)")
            case (400..<500)?: throw CLIError(.dataError, "\(what): \(e)")
            default: throw CLIError(.failure, "\(what): \(e)")
            }
        }
    }

    static let loginSpec = CommandSpec(
        name: "admin login", summary: "Open an admin session on a running coordinator (credential + TOTP code) and keep it in a 0600 file.",
        usage: "sigilo-coordinator admin login --url URL [--coordinator-ca PEM] [--credential-file FILE] [--session-file FILE]",
        options: [.value("url", "URL", "The coordinator: https://HOST:PORT (http only to this machine's loopback)."),
                  .value("coordinator-ca", "PEM", "Trust only this CA or self-signed certificate for https, not the system's CAs; remembered."),
                  .value("credential-file", "FILE", "A file holding the admin credential, or the JSON that init --secrets-to wrote (default: asked)."),
                  sessionOption],
        discussion: """
        The TOTP code is asked on the terminal (or read as a line from standard input); without --credential-file, the
        credential is asked first. Neither is ever taken from the command line, where 'ps' would show it. The session
        lasts as the coordinator grants it; 'admin logout' ends it.
        """)

    static func login(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let urlText = try args.required("url")
        guard let url = URL(string: urlText), url.scheme == "https" || url.scheme == "http", url.host != nil else {
            throw CLIError.usage("admin login: --url expects https://HOST:PORT, got \"\(urlText)\"")
        }
        let ca = args.string("coordinator-ca").map { URL(fileURLWithPath: $0).path }
        if let ca, !FileManager.default.isReadableFile(atPath: ca) { throw CLIError(.noInput, "admin login: cannot read --coordinator-ca \(ca)") }
        let credential: String
        if let file = args.string("credential-file") {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError(.noInput, "admin login: cannot read --credential-file \(file)") }
            if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                guard let value = object["admin_credential"] as? String else { throw CLIError(.dataError, "admin login: \(file) has no \"admin_credential\"") }
                credential = value
            } else {
                credential = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        } else {
            credential = try readSecret(prompt: "admin credential: ")
        }
        let code = try readSecret(prompt: "TOTP code: ")
        guard !credential.isEmpty, !code.isEmpty else { throw CLIError.usage("admin login: the credential and the TOTP code cannot be empty") }
        let client = AdminClient(baseURL: url, caFile: ca)
        let opened = try call("admin login") { try client.openSession(credential: credential, totpCode: code) }
        let path = sessionPath(args)
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
            throw CLIError(.ioError, "admin login: cannot create \(folder): \(error.localizedDescription)")
        }
        let saved = SavedSession(url: url.absoluteString, coordinatorCA: ca, session: opened.token, expires: opened.expires)
        try writePrivateFile(path, String(decoding: try JSONEncoder().encode(saved), as: UTF8.self), replacing: true)
        OutputStream.standardOutput.write("logged in to \(url.absoluteString) until \(Log.timestamp(opened.expires)); session kept in \(path) (mode 0600)\n")
    }

    /// A line from standard input; on a terminal, asked on standard error with echo off.
    static func readSecret(prompt: String) throws -> String {
        let terminal = isatty(0) != 0
        var saved = termios()
        if terminal {
            FileHandle.standardError.write(Data(prompt.utf8))
            tcgetattr(0, &saved)
            var quiet = saved
            quiet.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(0, TCSANOW, &quiet)
        }
        defer { if terminal { tcsetattr(0, TCSANOW, &saved); FileHandle.standardError.write(Data("\n".utf8)) } }
        guard let line = readLine(strippingNewline: true) else { throw CLIError.usage("admin login: no input for \(prompt.dropLast(2))") }
        return line.trimmingCharacters(in: .whitespaces)
    }

    static let logoutSpec = CommandSpec(name: "admin logout", summary: "End the admin session on the coordinator and delete the session file.",
                                        usage: "sigilo-coordinator admin logout [--session-file FILE]", options: [sessionOption])

    static func logout(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let client = try Self.client(args)
        let id = AdminClient.sessionID(client.session!)
        _ = try call("admin logout") { try client.send("POST", "/v1/admin/sessions/\(id)/revoke") }
        try? FileManager.default.removeItem(atPath: sessionPath(args))
        OutputStream.standardOutput.write("logged out: session \(id) ended\n")
    }

    // MARK: reading

    static let statusSpec = CommandSpec(name: "admin status", summary: "Tenants (last contact, last round), rounds, model version and privacy spent.",
                                        usage: "sigilo-coordinator admin status [--json] [--session-file FILE]",
                                        options: [.flag("json", "Print JSON."), sessionOption])

    static func status(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let client = try Self.client(args)
        let body = String(decoding: try call("admin status") { try client.send("GET", "/v1/admin/status") }, as: UTF8.self)
        OutputStream.standardOutput.write(args.flag("json") ? body + "\n" : try CoordinatorTool.statusText(body))
    }

    static let tenantListSpec = CommandSpec(name: "admin tenant list", summary: "List tenants (id, status, name).",
                                            usage: "sigilo-coordinator admin tenant list [--json] [--session-file FILE]",
                                            options: [.flag("json", "Print JSON."), sessionOption])

    static func tenantList(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let client = try Self.client(args)
        let body = try call("admin tenant list") { try client.send("GET", "/v1/audit/tenants") }
        if args.flag("json") { return OutputStream.standardOutput.write(String(decoding: body, as: UTF8.self) + "\n") }
        for t in (try? JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]]) ?? [] {
            OutputStream.standardOutput.write("\(t["id"] as? String ?? "?")\t\(t["status"] as? String ?? "?")\t\(t["name"] as? String ?? "")\n")
        }
    }

    static let planShowSpec = CommandSpec(name: "admin plan show", summary: "Print the coordinator's current plan (JSON).",
                                          usage: "sigilo-coordinator admin plan show [--session-file FILE]", options: [sessionOption])

    static func planShow(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let client = try Self.client(args)
        OutputStream.standardOutput.write(String(decoding: try call("admin plan show") { try client.send("GET", "/v1/plan") }, as: UTF8.self) + "\n")
    }

    static let auditorListSpec = CommandSpec(name: "admin auditor list", summary: "List auditor credentials (never secrets).",
                                             usage: "sigilo-coordinator admin auditor list [--session-file FILE]", options: [sessionOption])

    static func auditorList(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let client = try Self.client(args)
        let body = try call("admin auditor list") { try client.send("GET", "/v1/admin/auditors") }
        for a in (try? JSONSerialization.jsonObject(with: Data(body)) as? [[String: Any]]) ?? [] {
            let revoked = (a["revoked_at"] as? Double).map { "revoked \(Log.timestamp($0))" } ?? "active"
            OutputStream.standardOutput.write("\(a["id"] as? String ?? "?")\t\(a["name"] as? String ?? "")\tcreated \((a["created_at"] as? Double).map(Log.timestamp) ?? "?")\t\(revoked)\n")
        }
    }

    // MARK: changing

    static let tenantInviteSpec = CommandSpec(
        name: "admin tenant invite", summary: "Create a one-time enrolment token for a new tenant (printed once).",
        usage: "sigilo-coordinator admin tenant invite NAME [--weight-cap W] [--session-file FILE]",
        options: [.value("weight-cap", "W", "The largest weight this tenant may declare (default: the plan's)."), sessionOption])

    static func tenantInvite(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("admin tenant invite: give exactly one tenant NAME") }
        let cap = try args.double("weight-cap", where: { $0 > 0 }, expectation: "a number > 0")
        let client = try Self.client(args)
        let body = JSON.object([("name", .string(args.positional[0]))] + (cap.map { [("weight_cap", JSON.number($0))] } ?? [])).rendered()
        let answer = try client.json(try call("admin tenant invite") { try client.send("POST", "/v1/admin/tenants", body: Array(body.utf8), contentType: "application/json") })
        OutputStream.standardOutput.write((answer["token"] as? String ?? "") + "\n")
    }

    static let tenantRevokeSpec = CommandSpec(name: "admin tenant revoke", summary: "Revoke a tenant; its next request is refused.",
                                              usage: "sigilo-coordinator admin tenant revoke ID [--session-file FILE]", options: [sessionOption])

    static func tenantRevoke(_ args: ParsedArguments) throws { try revoke(args, kind: "tenant", collection: "tenants") }

    /// POST /v1/admin/COLLECTION/ID/revoke for the one ID given.
    static func revoke(_ args: ParsedArguments, kind: String, collection: String) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("admin \(kind) revoke: give exactly one \(kind) ID") }
        let client = try Self.client(args)
        _ = try call("admin \(kind) revoke") { try client.send("POST", "/v1/admin/\(collection)/\(pathComponent(args.positional[0]))/revoke") }
        OutputStream.standardOutput.write("revoked \(args.positional[0])\n")
    }

    static let planSetSpec = CommandSpec(name: "admin plan set", summary: "Install a plan file (protocol/PLAN.md) on the running coordinator.",
                                         usage: "sigilo-coordinator admin plan set FILE [--session-file FILE]", options: [sessionOption])

    static func planSet(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("admin plan set: give exactly one plan FILE") }
        let file = args.positional[0]
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError(.noInput, "cannot read \(file)") }
        // Checked here first, so a mistake is named with the file before anything is sent.
        let plan: Plan
        do { plan = try Plan.decodeOperatorFile(data) } catch let e as PlanError { throw CLIError(.dataError, "\(file): \(e.description)") }
        let client = try Self.client(args)
        let answer = try client.json(try call("admin plan set") { try client.send("PUT", "/v1/admin/plan", body: Array(data), contentType: "application/json") })
        if let round = answer["staged_until_round"] as? Int { OutputStream.standardOutput.write("round \(round) is open: the plan takes effect when it ends\n") }
        OutputStream.standardOutput.write("plan \(answer["staged_until_round"] is Int ? "staged" : "installed"): \(plan.labels.count) labels, \(plan.dimension) parameters, budget epsilon \(formatEpsilon(plan.maximumEpsilon)) at delta \(plan.delta)\n")
        if let labels = answer["labels_changed"] as? String { OutputStream.standardOutput.write("intents: \(labels)\n") }
    }

    static let auditorAddSpec = CommandSpec(name: "admin auditor add", summary: "Create a read-only auditor (DPO) credential; printed once.",
                                            usage: "sigilo-coordinator admin auditor add NAME [--session-file FILE]", options: [sessionOption])

    static func auditorAdd(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("admin auditor add: give exactly one NAME") }
        let client = try Self.client(args)
        let body = JSON.object([("name", .string(args.positional[0]))]).rendered()
        let answer = try client.json(try call("admin auditor add") { try client.send("POST", "/v1/admin/auditors", body: Array(body.utf8), contentType: "application/json") })
        OutputStream.standardOutput.write((answer["credential"] as? String ?? "") + "\n")
    }

    static let auditorRevokeSpec = CommandSpec(name: "admin auditor revoke", summary: "Revoke an auditor credential.",
                                               usage: "sigilo-coordinator admin auditor revoke ID [--session-file FILE]", options: [sessionOption])

    static func auditorRevoke(_ args: ParsedArguments) throws { try revoke(args, kind: "auditor", collection: "auditors") }

    /// An id as one path segment: anything but letters, digits, '-' and '_' is refused rather than sent.
    static func pathComponent(_ id: String) throws -> String {
        guard !id.isEmpty, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            throw CLIError.usage("\"\(id)\" is not an id (letters, digits, '-' and '_')")
        }
        return id
    }
}
