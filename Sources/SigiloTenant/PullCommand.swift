import Foundation
import SigiloCLI
import SigiloClient
import SigiloFederation
import SigiloModel

/// `sigilo-tenant pull`: the coordinator's newest global model, cached for
/// `personalise` and `classify`, without taking part in a round. A tenant whose
/// budget is spent has no round to learn the current version from, yet the
/// model published after its last round is the best it will get. Nothing
/// about the tenant's customers is sent: the request names only the tenant.
enum PullCommand {
    static let spec = CommandSpec(
        name: "pull",
        summary: "Fetch and cache the coordinator's newest global model without taking part in a round.",
        usage: "sigilo-tenant pull --state DIR --key-file FILE [--json]",
        options: TenantTool.storeOptions + [.flag("json", "Print one JSON object.")],
        discussion: """
        The model is used only if it matches its SHA-256 and the coordinator key pinned at enrolment signed it with
        its version; a version older than the one cached is refused. 'run' pulls by itself once the budget is spent.
        Exit codes: 0 cached or already up to date, 1 coordinator unreachable or refusing, or its model unusable,
        64 not enrolled, 66 no model published yet.
        """)

    struct Pulled {
        var version: UInt64
        var previous: UInt64?
        var message: String
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let pulled = try pull(try TenantTool.openStore(args))
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.object([
                ("version", .integer(Int(pulled.version))), ("previous_version", pulled.previous.map { .integer(Int($0)) } ?? .null),
            ]).rendered() + "\n")
        } else {
            OutputStream.standardOutput.write(pulled.message + "\n")
        }
    }

    static func pull(_ store: TenantStore) throws -> Pulled {
        let client = try TenantTool.client(store)
        let previous = try store.latestModelVersion()
        do {
            let latest = try client.latestModel()
            if let previous, latest.version <= previous {
                guard latest.version == previous else {
                    throw CLIError(.failure, "the coordinator's newest model is version \(latest.version), older than the cached \(previous): kept \(previous)")
                }
                return Pulled(version: previous, previous: previous, message: "global model version \(previous) is already the newest")
            }
            let note = try TenantTool.acceptModel(latest.file, version: latest.version, plan: try client.plan(), store: store).note
            var message = "cached global model version \(latest.version)" + (previous.map { " (had \($0))" } ?? "")
            if let note { message += "; " + note } else if try store.personalModelOrigin() != nil { message += "; " + (try PersonaliseCommand.describe(store)) }
            return Pulled(version: latest.version, previous: previous, message: message)
        } catch let e as ClientError {
            throw CLIError(e.code == "unknown_model" ? .noInput : .failure, "coordinator: \(e)")
        }
    }
}
