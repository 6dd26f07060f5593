import Foundation
import SigiloCLI
import SigiloFederation
import SigiloHTTP

/// The `sigilo-coordinator` program.
public enum CoordinatorTool {
    static let stateOption = OptionSpec.value("state", "DIR", "State directory (created by init).")

    public static func main(_ arguments: [String]) -> Never {
        runCommand {
            // Two-word commands ("tenant invite") become one name.
            var args = arguments
            if args.count >= 2, ["tenant", "plan", "model"].contains(args[0]), !args[1].hasPrefix("-") {
                args = ["\(args[0]) \(args[1])"] + args.dropFirst(2)
            }
            try dispatch(
                program: "sigilo-coordinator",
                summary: "sigilo-coordinator: aggregates tenants' differentially private updates into a shared intent model.",
                arguments: args,
                commands: [
                    (initSpec, runInit), (serveSpec, runServe),
                    (inviteSpec, runInvite), (revokeSpec, runRevoke), (listSpec, runList),
                    (planShowSpec, runPlanShow), (planSetSpec, runPlanSet), (modelExportSpec, runModelExport), (statusSpec, runStatus),
                ])
        }
    }

    static func openService(_ args: ParsedArguments) throws -> CoordinatorService {
        let path = try args.required("state")
        let url = URL(fileURLWithPath: path)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent(CoordinatorService.databaseName).path) else {
            throw CLIError(.noInput, "\(path) holds no coordinator state; run 'sigilo-coordinator init --state \(path)' first")
        }
        do { return try CoordinatorService(directory: url) } catch {
            throw CLIError(.failure, "cannot open coordinator state in \(path): \(error)")
        }
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    // MARK: init

    static let initSpec = CommandSpec(name: "init", summary: "Create a coordinator state directory (mode 0700) and its database.",
                                      usage: "sigilo-coordinator init --state DIR", options: [stateOption])

    static func runInit(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("state")
        let url = URL(fileURLWithPath: path)
        if FileManager.default.fileExists(atPath: url.appendingPathComponent(CoordinatorService.databaseName).path) {
            throw CLIError(.failure, "\(path) already holds coordinator state; refusing to overwrite it")
        }
        do {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            _ = try CoordinatorService(directory: url)
        } catch {
            throw CLIError(.ioError, "cannot initialise \(path): \(error)")
        }
        OutputStream.standardOutput.write("initialised coordinator state in \(path)\nnext: sigilo-coordinator plan set FILE --state \(path)\n")
    }

    // MARK: serve

    static let serveSpec = CommandSpec(
        name: "serve", summary: "Serve the HTTP API (loopback by default) until SIGTERM or SIGINT.",
        usage: "sigilo-coordinator serve --state DIR [--listen 127.0.0.1:PORT]",
        options: [stateOption, .value("listen", "HOST:PORT", "Address to listen on (default 127.0.0.1:8443; port 0 picks a free one).")],
        discussion: "Prints 'listening on HOST:PORT' once ready. On SIGTERM/SIGINT it stops accepting, finishes in-flight requests and exits 0.")

    static func runServe(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let service = try openService(args)
        let listen = args.string("listen") ?? "127.0.0.1:8443"
        let parts = listen.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]) else { throw CLIError.usage("serve: --listen expects HOST:PORT, got \"\(listen)\"") }
        var configuration = HTTPServer.Configuration(host: String(parts[0]), port: port)
        configuration.limits.maximumBodyBytes = 80 + 4 * (1 << 24)
        TerminationSignals.block() // before the server's threads exist
        let routes = CoordinatorRoutes(service: service)
        let server = HTTPServer(configuration: configuration) { request, peer in routes.handle(request, peer: peer) }
        let bound: UInt16
        do { bound = try server.start() } catch { throw CLIError(.failure, "\(error)") }
        OutputStream.standardOutput.write("listening on \(configuration.host):\(bound)\n")
        OutputStream.standardOutput.flush()

        // Rounds open, close and expire on a one-second tick.
        let stop = DispatchSemaphore(value: 0)
        let ticking = Thread {
            while stop.wait(timeout: .now() + 0.2) == .timedOut {
                do { try service.maintain(now: now()) } catch { printError("maintenance: \(error)") }
            }
        }
        ticking.start()
        TerminationSignals.wait()
        printError("shutting down: finishing in-flight requests")
        server.shutdown()
        stop.signal()
        while ticking.isExecuting { usleep(10_000) }
        printError("stopped")
    }

    // MARK: tenants

    static let inviteSpec = CommandSpec(name: "tenant invite", summary: "Create a one-time enrolment token (valid 24 h) for a new tenant.",
                                        usage: "sigilo-coordinator tenant invite NAME --state DIR", options: [stateOption],
                                        discussion: "The token is shown once; only its SHA-256 is stored.")

    static func runInvite(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("tenant invite: give exactly one tenant NAME") }
        let service = try openService(args)
        do {
            OutputStream.standardOutput.write(try service.invite(name: args.positional[0], now: now()) + "\n")
        } catch let e as CoordinatorError { throw CLIError(.usage, e.message) }
    }

    static let revokeSpec = CommandSpec(name: "tenant revoke", summary: "Revoke a tenant; its next request is refused.",
                                        usage: "sigilo-coordinator tenant revoke ID --state DIR", options: [stateOption])

    static func runRevoke(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("tenant revoke: give exactly one tenant ID") }
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
                                         usage: "sigilo-coordinator plan set FILE --state DIR", options: [stateOption])

    static func runPlanSet(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("plan set: give exactly one plan FILE") }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: args.positional[0])) } catch {
            throw CLIError(.noInput, "cannot read \(args.positional[0]): \(error.localizedDescription)")
        }
        let plan: Plan
        do { plan = try Plan.decode(data) } catch let e as PlanError { throw CLIError(.dataError, "\(args.positional[0]): \(e.description)") }
        let service = try openService(args)
        do { try service.setPlan(plan, now: now()) } catch let e as CoordinatorError { throw CLIError(.dataError, e.message) }
        OutputStream.standardOutput.write("plan installed: \(plan.labels.count) labels, \(plan.dimension) parameters, q \(plan.sampleRate), z \(plan.noiseMultiplier), budget epsilon \(plan.maximumEpsilon) at delta \(plan.delta)\n")
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
        let origin = provenance?.round.map { "from round \($0), epsilon \(provenance!.epsilon) at publication" } ?? "initial model"
        OutputStream.standardOutput.write("model version \(version) (sha256 \(model.sha256); \(origin)) written to \(path)\n")
    }

    // MARK: status

    static let statusSpec = CommandSpec(name: "status", summary: "Tenants, rounds, model version and privacy spent.",
                                        usage: "sigilo-coordinator status --state DIR [--json]", options: [stateOption, .flag("json", "Print JSON.")])

    static func runStatus(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let s = try openService(args).status()
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.object([
                ("tenants_active", .integer(s.tenantsActive)), ("tenants_revoked", .integer(s.tenantsRevoked)),
                ("model_version", s.modelVersion.map { .integer(Int($0)) } ?? .null), ("rounds_closed", .integer(s.roundsClosed)),
                ("rounds_abandoned", .integer(s.roundsAbandoned)), ("open_round", s.openRound.map { .integer(Int($0)) } ?? .null),
                ("epsilon", .number(s.epsilon)), ("delta", s.delta.map { .number($0) } ?? .null),
                ("maximum_epsilon", s.maximumEpsilon.map { .number($0) } ?? .null),
            ]).rendered() + "\n")
        } else {
            OutputStream.standardOutput.write("""
            tenants: \(s.tenantsActive) active, \(s.tenantsRevoked) revoked
            model version: \(s.modelVersion.map(String.init) ?? "none")
            rounds: \(s.roundsClosed) closed, \(s.roundsAbandoned) abandoned\(s.openRound.map { ", round \($0) open" } ?? "")
            privacy: epsilon \(s.epsilon) of \(s.maximumEpsilon.map { String($0) } ?? "-") at delta \(s.delta.map { String($0) } ?? "-")

            """)
        }
    }
}
