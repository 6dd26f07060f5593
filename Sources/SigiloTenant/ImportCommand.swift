import Foundation
import SigiloCLI
import SigiloText

/// A validated line of a conversation export.
public struct ConversationRecord: Equatable, Sendable {
    public var id: String?
    public var customer: String
    public var text: String
    public var intent: String
    public var consent: Bool
    public var time: String?
}

/// `sigilo-tenant import`: conversation exports into the encrypted store.
public enum ImportCommand {
    static let spec = CommandSpec(
        name: "import",
        summary: "Import conversation exports (JSON Lines) into the encrypted store, redacted, consented only.",
        usage: "sigilo-tenant import FILE... --state DIR (--key-file FILE | env SIGILO_TENANT_KEY) [--strict]",
        options: TenantTool.storeOptions + [.flag("strict", "Import nothing if any line is invalid.")],
        discussion: """
        Each line: {"customer", "text", "intent", "consent" (true/false), optional "time", optional "id"}.
        Invalid lines are reported as FILE:LINE: reason. Exit codes: 0 all lines imported or skipped by rule, 65 some lines invalid.
        """)

    public static let maximumTextBytes = 4096

    /// JSON `true`/`false` only (Foundation on Linux also bridges 0 and 1 to Bool).
    static func isJSONBool(_ value: Any) -> Bool {
        type(of: value as AnyObject) == type(of: NSNumber(value: true) as AnyObject)
    }

    /// Validates one export line; `labels`, when given, are the plan's intents.
    public static func record(_ o: [String: Any], labels: Set<String>?) throws -> ConversationRecord {
        let customer = try FieldError.requireString(o, "customer")
        guard customer.utf8.count <= 256 else { throw FieldError("\"customer\" is longer than 256 bytes") }
        let text = try FieldError.requireString(o, "text")
        guard text.utf8.count <= maximumTextBytes else { throw FieldError("\"text\" is longer than \(maximumTextBytes) bytes") }
        let intent = try FieldError.requireString(o, "intent")
        if let labels, !labels.contains(intent) { throw FieldError("unknown intent \"\(intent.prefix(64))\" (not in the plan's labels)") }
        guard let consentValue = o["consent"] else { throw FieldError("missing \"consent\"") }
        guard isJSONBool(consentValue), let consent = consentValue as? Bool else { throw FieldError("\"consent\" must be true or false") }
        var time: String?
        if let t = o["time"] {
            guard let s = t as? String, s.utf8.count <= 64 else { throw FieldError("\"time\" must be a string of at most 64 bytes") }
            time = s
        }
        var id: String?
        if let i = o["id"] {
            guard let s = i as? String, !s.isEmpty, s.utf8.count <= 256 else { throw FieldError("\"id\" must be a non-empty string of at most 256 bytes") }
            id = s
        }
        return ConversationRecord(id: id, customer: customer, text: text, intent: intent, consent: consent, time: time)
    }

    struct Summary {
        var imported = 0
        var duplicates = 0
        var skippedNoConsent = 0
        var refusedErased = 0
        var invalid = 0
        var customers = Set<String>()
    }

    static func run(_ args: ParsedArguments) throws {
        guard !args.positional.isEmpty else { throw CLIError.usage("import: give one or more FILEs") }
        let store = try TenantTool.openStore(args)
        let labels = try TenantTool.cachedPlan(store).map { Set($0.labels) }
        let redactor = Redactor()
        var parsed = [(file: String, records: [ConversationRecord])]()
        var errors = [LineError]()
        for file in args.positional {
            var records = [ConversationRecord]()
            errors += try JSONLines.read(file) { object, _ in records.append(try record(object, labels: labels)) }
            parsed.append((file, records))
        }
        for error in errors.prefix(50) { printError(error.description) }
        if errors.count > 50 { printError("... and \(errors.count - 50) more invalid lines") }
        if args.flag("strict"), !errors.isEmpty {
            throw CLIError(.dataError, "\(errors.count) invalid line(s); --strict: nothing imported")
        }
        var summary = Summary()
        summary.invalid = errors.count
        let now = Date().timeIntervalSince1970
        for (_, records) in parsed {
            // One transaction per file: a crash leaves each file fully imported or not at all.
            try store.database.transaction {
                for r in records {
                    let customer = store.handle(customer: r.customer)
                    let state = try store.customerState(customer)
                    if state?.erased == true { summary.refusedErased += 1; continue }
                    guard r.consent, state?.consent != false else { summary.skippedNoConsent += 1; continue }
                    let key = r.id ?? "\(r.customer)\n\(r.time ?? "")\n\(r.text)"
                    let message = store.handle(message: key)
                    var exists = false
                    try store.database.run("SELECT 1 FROM messages WHERE handle = ?", [.blob(message)]) { _ in exists = true }
                    if exists { summary.duplicates += 1; continue }
                    if state == nil {
                        try store.database.run("INSERT INTO customers(handle, sealed_id, consent, updated_at) VALUES (?, ?, 1, ?)",
                                               [.blob(customer), .blob(try store.cipher.seal(Array(r.customer.utf8), context: customer)), .real(now)])
                    }
                    let redacted = redactor.redact(r.text)
                    try store.database.run("INSERT INTO messages(handle, customer, sealed_text, intent, imported_at) VALUES (?, ?, ?, ?, ?)",
                                           [.blob(message), .blob(customer), .blob(try store.cipher.seal(Array(redacted.utf8), context: customer)),
                                            .text(r.intent), .real(now)])
                    summary.imported += 1
                    summary.customers.insert(r.customer)
                }
            }
        }
        OutputStream.standardOutput.write("""
        imported \(summary.imported) messages from \(summary.customers.count) customers; \(summary.duplicates) duplicates skipped; \
        \(summary.skippedNoConsent) skipped without consent; \(summary.refusedErased) refused (customer erased); \(summary.invalid) invalid lines

        """)
        if !errors.isEmpty { throw CLIError(.dataError, "\(errors.count) invalid line(s) were not imported (listed above)") }
    }
}
