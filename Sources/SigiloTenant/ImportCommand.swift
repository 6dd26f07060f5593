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
        usage: """
        sigilo-tenant import FILE... --state DIR (--key-file FILE | env SIGILO_TENANT_KEY) [--strict]
               sigilo-tenant import --format whatsapp-export FILE... --customer ID --consent granted|withheld [--author NAME] [--date-order dmy|mdy] --state DIR ...
        """,
        options: TenantTool.storeOptions + [
            .flag("strict", "Import nothing if any line is invalid."),
            .value("format", "FORMAT", "jsonl (default: labelled JSON Lines) or whatsapp-export (a WhatsApp 'export chat' text file, Android or iOS)."),
            .value("customer", "ID", "whatsapp-export: the customer the conversation is with (their WhatsApp number, say)."),
            .value("consent", "granted|withheld", "whatsapp-export: the customer's consent, which must be stated; withheld imports nothing."),
            .value("author", "NAME", "whatsapp-export: the customer's name as the export writes it (needed when the chat has more than one author)."),
            .value("date-order", "dmy|mdy", "whatsapp-export: day/month/year or month/day/year (default: inferred from the file)."),
        ],
        discussion: """
        jsonl, each line: {"customer", "text", "intent", "consent" (true/false), optional "time", optional "id"}. A line for a message
        already stored (same "id", or same customer, time and text) with another intent replaces the old label, and is counted so.
        whatsapp-export: the customer's messages become unlabelled messages (they train once labelled); the business's own replies,
        media placeholders and system lines are skipped; a message spanning several lines is kept whole.
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
        if let labels, !labels.contains(intent) { throw FieldError("unknown intent \"\(intent.prefix(64))\" (not in the plan's labels nor formerLabels)") }
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
        /// Stored messages whose label this import gave or changed.
        var relabelled = 0
        var skippedNoConsent = 0
        var refusedErased = 0
        var invalid = 0
        var customers = Set<String>()

        mutating func count(_ outcome: TenantStore.Admission) {
            switch outcome {
            case .stored: imported += 1
            case .duplicate: duplicates += 1
            case .labelled, .corrected: relabelled += 1
            case .noConsent: skippedNoConsent += 1
            case .erased: refusedErased += 1
            }
        }

        var line: String {
            "imported \(imported) messages from \(customers.count) customers; \(duplicates) duplicates skipped; "
                + (relabelled > 0 ? "\(relabelled) stored messages relabelled (the new label replaces the old); " : "")
                + "\(skippedNoConsent) skipped without consent; \(refusedErased) refused (customer erased); \(invalid) invalid lines\n"
        }
    }

    static func run(_ args: ParsedArguments) throws {
        guard !args.positional.isEmpty else { throw CLIError.usage("import: give one or more FILEs") }
        switch args.string("format") ?? "jsonl" {
        case "jsonl":
            for option in ["customer", "consent", "author", "date-order"] where args.string(option) != nil {
                throw CLIError.usage("import: --\(option) goes with --format whatsapp-export")
            }
        case "whatsapp-export": return try runChatExport(args)
        case let other: throw CLIError.usage("import: --format expects jsonl or whatsapp-export, got \"\(other)\"")
        }
        let store = try TenantTool.openStore(args)
        let labels = try TenantTool.cachedPlan(store).map { Set($0.labelIndex.keys) } // a former name still trains its successor
        var parsed = [(file: String, records: [ConversationRecord])]()
        var errors = [LineError]()
        for file in args.positional {
            var records = [ConversationRecord]()
            errors += try JSONLines.read(file) { object, _ in records.append(try record(object, labels: labels)) }
            parsed.append((file, records))
        }
        try report(errors, strict: args.flag("strict"))
        let files = parsed.map { _, records in
            records.map { r in
                Offer(key: r.id ?? "\(r.customer)\n\(r.time ?? "")\n\(r.text)", customer: r.customer, text: r.text, intent: r.intent, consent: r.consent)
            }
        }
        var summary = try admit(files, source: .export, into: store)
        summary.invalid = errors.count
        OutputStream.standardOutput.write(summary.line)
        EmbedCommand.afterImport(store)
        if !errors.isEmpty { throw CLIError(.dataError, "\(errors.count) invalid line(s) were not imported (listed above)") }
    }

    /// A message as an export offers it to the store: `key` names it (a second label for the same key corrects the first).
    struct Offer {
        var key: String
        var customer: String
        var text: String
        var intent: String?
        var consent: Bool
    }

    /// Offers each file's messages, redacted, in one transaction per file: a
    /// crash leaves each file fully imported or not at all.
    static func admit(_ files: [[Offer]], source: MessageSource, into store: TenantStore) throws -> Summary {
        let redactor = Redactor()
        let now = Date().timeIntervalSince1970
        var summary = Summary()
        for offers in files {
            try store.database.transaction {
                for offer in offers {
                    let outcome = try store.admit(key: offer.key, customer: offer.customer, redactedText: redactor.redact(offer.text),
                                                  intent: offer.intent, source: source, consentStated: offer.consent, now: now)
                    summary.count(outcome)
                    if outcome == .stored { summary.customers.insert(offer.customer) }
                }
            }
        }
        return summary
    }

    /// Lists invalid lines (the first 50) on standard error; with `strict`, any of them stops the import.
    static func report(_ errors: [LineError], strict: Bool) throws {
        for error in errors.prefix(50) { printError(error.description) }
        if errors.count > 50 { printError("... and \(errors.count - 50) more invalid lines") }
        if strict, !errors.isEmpty { throw CLIError(.dataError, "\(errors.count) invalid line(s); --strict: nothing imported") }
    }

    /// `--format whatsapp-export`: one customer's side of a chat, unlabelled, under the consent stated.
    static func runChatExport(_ args: ParsedArguments) throws {
        let customer = try args.required("customer")
        guard !customer.isEmpty, customer.utf8.count <= 256 else { throw CLIError.usage("import: --customer must be 1 to 256 bytes") }
        let consent: Bool
        switch try args.required("consent") {
        case "granted": consent = true
        case "withheld": consent = false
        case let other: throw CLIError.usage("import: --consent expects granted or withheld, got \"\(other)\"")
        }
        var order: WhatsAppExport.DateOrder?
        if let value = args.string("date-order") {
            guard let o = WhatsAppExport.DateOrder(rawValue: value) else { throw CLIError.usage("import: --date-order expects dmy or mdy, got \"\(value)\"") }
            order = o
        }
        let store = try TenantTool.openStore(args)
        var chats = [(file: String, parsed: WhatsAppExport.Parsed)]()
        var errors = [LineError]()
        for file in args.positional {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
                throw CLIError(.noInput, "cannot read \(file): \(error.localizedDescription)")
            }
            let parsed = WhatsAppExport.parse(data, file: file, order: order, maximumTextBytes: maximumTextBytes)
            errors += parsed.errors
            chats.append((file, parsed))
        }
        try report(errors, strict: args.flag("strict"))

        // Which author is the customer: named, or the only one; the business's replies are not the customer's messages.
        var selected = [(file: String, messages: [WhatsAppExport.Message])]()
        for (file, parsed) in chats {
            let authors = Set(parsed.messages.map(\.author))
            let author: String
            if let named = args.string("author") {
                guard authors.contains(named) || authors.isEmpty else {
                    throw CLIError(.dataError, "\(file): no messages from \"\(named)\"; its authors are: \(authors.sorted().map { "\"\($0)\"" }.joined(separator: ", "))")
                }
                author = named
            } else if authors.count <= 1 {
                author = authors.first ?? ""
            } else {
                throw CLIError.usage("import: \(file) has \(authors.count) authors (\(authors.sorted().map { "\"\($0)\"" }.joined(separator: ", "))); name the customer with --author")
            }
            selected.append((file, parsed.messages.filter { $0.author == author }))
        }
        let files = selected.map { _, messages in
            messages.map { Offer(key: "whatsapp-export\n\(customer)\n\($0.time)\n\($0.text)", customer: customer, text: $0.text, intent: nil, consent: consent) }
        }
        var summary = try admit(files, source: .chatExport, into: store)
        summary.invalid = errors.count
        let skipped = chats.reduce(0) { $0 + $1.parsed.skipped }
        let others = chats.reduce(0) { $0 + $1.parsed.messages.count } - selected.reduce(0) { $0 + $1.messages.count }
        OutputStream.standardOutput.write(summary.line.replacingOccurrences(of: "imported ", with: "imported (unlabelled) ", options: .anchored)
                                          + "skipped \(skipped) media, deleted and system lines and \(others) messages by other authors\n")
        EmbedCommand.afterImport(store)
        if !errors.isEmpty { throw CLIError(.dataError, "\(errors.count) invalid line(s) were not imported (listed above)") }
    }
}
