import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloHTTP

/// The tenant store behind one lock: SQLite connections are used by one thread at a time.
final class LockedStore: @unchecked Sendable {
    private let store: TenantStore
    private let lock = NSLock()

    init(_ store: TenantStore) { self.store = store }

    func callAsFunction<T>(_ body: (TenantStore) throws -> T) rethrows -> T {
        try lock.withLock { try body(store) }
    }
}

/// `sigilo-tenant serve`'s API: what each request means, apart from sockets.
///
/// Classification needs no database: the text is redacted, featurised and
/// answered from the model in memory. A message of a named customer is then
/// handed to the `MessageWriter`, which keeps it (redacted, sealed, unlabelled)
/// only if that customer's consent is on record when it is written.
final class TenantService: @unchecked Sendable {
    struct WebhookSecrets: Sendable {
        var appSecret: [UInt8]
        var verifyToken: [UInt8]
    }

    struct Settings: Sendable {
        /// Unlabelled messages older than this are deleted (and older webhook messages are not kept).
        var keepUnlabelledSeconds: Double = 30 * 86_400
        var top = 3
        var maximumBatch = 10_000
        /// The encoder file for models that read encoder features (nil: `EncoderLocation`'s default).
        var encoderPath: String?
    }

    static let smallBodyBytes = 16 << 10
    static let classifyBodyBytes = 16 << 20
    static let webhookBodyBytes = 3 << 20

    let models = ModelSlot()
    let metrics = ServiceMetrics()
    let writer: MessageWriter
    let settings: Settings
    private let store: LockedStore
    private let webhook: WebhookSecrets?
    private let lock = NSLock()
    private var tokens = [[UInt8]: String]()
    private var knownLabels: Set<String>?
    private var seenDataVersion: Int?
    private let log: Log

    init(store: TenantStore, webhook: WebhookSecrets?, settings: Settings, log: Log) {
        let locked = LockedStore(store)
        let metrics = metrics
        self.store = locked
        self.webhook = webhook
        self.settings = settings
        self.log = log
        writer = MessageWriter { group in
            do {
                let now = Date().timeIntervalSince1970
                let outcomes = try locked { store in
                    try store.database.transaction {
                        try group.map { message in
                            let outcome = try store.admit(key: message.key, customer: message.customer, redactedText: message.redacted, intent: nil,
                                                          source: message.source, consentStated: nil, now: now)
                            // The embedding that answered the message is kept with it, so its feedback trains without the encoder.
                            if let embedding = message.embedding, outcome == .stored {
                                try store.saveEmbeddings([(store.handle(message: message.key), embedding.values)], encoder: embedding.encoder)
                            }
                            return outcome
                        }
                    }
                }
                for outcome in outcomes { metrics.stored(Self.name(of: outcome)) }
            } catch {
                metrics.stored("failed", count: group.count)
                log.error("messages.store", "storing \(group.count) messages failed: \(error)")
            }
        }
    }

    static func name(of outcome: TenantStore.Admission) -> String {
        switch outcome {
        case .stored: "stored"
        case .duplicate, .labelled, .corrected: "duplicate"
        case .noConsent: "no_consent"
        case .erased: "erased"
        }
    }

    // MARK: - Keeping up with the store

    /// Takes up what other commands changed: agent tokens issued or revoked, a
    /// new global or personalised model. Cheap when nothing changed (one pragma).
    func refresh(force: Bool = false) throws {
        let version = try store { try $0.dataVersion() }
        let changed = lock.withLock { () -> Bool in
            defer { seenDataVersion = version }
            return force || seenDataVersion != version
        }
        guard changed else { return }
        let (identity, live, plan) = try store { (try ServingModel.identity(in: $0), try $0.liveAgentTokenDigests(), try TenantTool.cachedPlan($0)) }
        if models.current?.identity != identity {
            // Read under the store's lock, decoded (and any new encoder loaded) outside it.
            if let stored = try store({ try ServingModel.storedFile(in: $0) }) {
                let model = try ServingModel(file: stored.file, name: stored.name, identity: identity, previous: models.current,
                                             encoderPath: settings.encoderPath)
                models.swap(to: model)
                log.info("model.swap", "serving with the \(model.name) model")
            } else if models.current != nil {
                models.swap(to: nil)
                log.warning("model.swap", "no model left to serve with")
            }
        }
        // Feedback may use an intent's former name (the plan's formerLabels): it trains the label that took its place.
        var labels = models.current.map { Set($0.model.labels) } ?? plan.map { Set($0.labels) }
        labels?.formUnion(plan?.formerLabels.map { Array($0.keys) } ?? [])
        lock.withLock {
            tokens = live
            knownLabels = labels
        }
    }

    /// Deletes unlabelled messages past their time; returns how many.
    func expireUnlabelled(now: Double) throws -> Int {
        try store { try $0.deleteUnlabelled(before: now - settings.keepUnlabelledSeconds) }
    }

    // MARK: - Requests

    /// Refuses, before the body is read, what is unauthenticated or too large.
    func checkHead(_ head: HTTPRequest, bodyLength: Int) -> HTTPResponse? {
        let limit: Int
        switch head.path {
        case "/v1/whatsapp/webhook": limit = Self.webhookBodyBytes
        case "/v1/classify": limit = Self.classifyBodyBytes
        case "/v1/feedback", "/v1/consent", "/metrics": limit = Self.smallBodyBytes
        default: return nil
        }
        if head.path != "/v1/whatsapp/webhook", let refusal = authorize(head) { return refusal }
        guard bodyLength <= limit else {
            if head.path == "/v1/whatsapp/webhook" { metrics.webhookRefused("too_large") }
            return .error(413, code: "too_large", message: "\(head.path) takes bodies of at most \(limit) bytes; this one declares \(bodyLength)")
        }
        return nil
    }

    /// Answers that need neither a worker nor a credential.
    func immediate(_ request: HTTPRequest) -> HTTPResponse? {
        guard request.path == "/healthz" else { return nil }
        guard request.method == "GET" else { return .error(405, code: "method_not_allowed", message: "/healthz takes GET") }
        var model = "null"
        if let name = models.current?.name { model = "\"\(name)\"" }
        return .json(200, #"{"status":"ok","model":\#(model)}"#)
    }

    func handle(_ request: HTTPRequest) -> HTTPResponse {
        let started = DispatchTime.now().uptimeNanoseconds
        let route: String
        let response: HTTPResponse
        switch (request.method, String(request.path)) {
        case ("POST", "/v1/classify"): (route, response) = ("classify", authorize(request) ?? classify(request))
        case ("POST", "/v1/feedback"): (route, response) = ("feedback", authorize(request) ?? feedback(request))
        case ("POST", "/v1/consent"): (route, response) = ("consent", authorize(request) ?? consent(request))
        case ("GET", "/metrics"):
            (route, response) = ("metrics", authorize(request) ?? HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")],
                                                                              body: Array(metrics.render(model: models.current, swaps: models.swaps).utf8)))
        case ("GET", "/v1/whatsapp/webhook"): (route, response) = ("webhook", verifyWebhook(request))
        case ("POST", "/v1/whatsapp/webhook"): (route, response) = ("webhook", receiveWebhook(request))
        case (_, "/v1/classify"), (_, "/v1/feedback"), (_, "/v1/consent"):
            (route, response) = ("other", .error(405, code: "method_not_allowed", message: "\(request.path) takes POST"))
        case (_, "/metrics"): (route, response) = ("other", .error(405, code: "method_not_allowed", message: "/metrics takes GET"))
        case (_, "/v1/whatsapp/webhook"): (route, response) = ("webhook", .error(405, code: "method_not_allowed", message: "the webhook takes GET and POST"))
        default: (route, response) = ("other", .error(404, code: "not_found", message: "no such endpoint: \(request.path.prefix(128))"))
        }
        metrics.request(route: route, status: response.status, seconds: Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9)
        return response
    }

    /// `Authorization: Bearer sga_...`, a live agent token.
    func authorize(_ request: HTTPRequest) -> HTTPResponse? {
        guard let value = request.header("authorization"), value.hasPrefix("Bearer ") else {
            return HTTPResponse.error(401, code: "unauthenticated", message: "send an agent token as \"Authorization: Bearer ...\" ('sigilo-tenant agent-token create')")
                .adding(("WWW-Authenticate", "Bearer"))
        }
        let digest = SHA256.hash(Array(value.utf8.dropFirst(7)))
        guard lock.withLock({ tokens[digest] }) != nil else {
            return HTTPResponse.error(401, code: "bad_token", message: "this agent token is unknown or revoked").adding(("WWW-Authenticate", "Bearer"))
        }
        return nil
    }

    // MARK: classify

    struct BadRequest: Error { let message: String }

    /// One message of a classify request, checked.
    struct Incoming {
        var text: String
        var customer: String?
        var messageID: String
    }

    /// `path` prefixes field names in errors: "" for a single message, "messages[3]." in a batch.
    static func incoming(_ object: Any, at path: String) throws -> Incoming {
        let place = path.isEmpty ? "body" : String(path.dropLast())
        guard let o = object as? [String: Any] else { throw BadRequest(message: "\(place): expected a JSON object") }
        if let unknown = o.keys.first(where: { !["text", "customer", "conversation", "message_id"].contains($0) }) {
            throw BadRequest(message: "\(place): unknown field \"\(unknown.prefix(64))\" (fields: text, customer, conversation, message_id)")
        }
        func optional(_ name: String) throws -> String? {
            guard let value = o[name] else { return nil }
            guard let s = value as? String, !s.isEmpty, s.utf8.count <= 256 else { throw BadRequest(message: "\(path)\(name): must be a string of 1 to 256 bytes") }
            return s
        }
        guard let text = o["text"] as? String, !text.isEmpty, text.utf8.count <= ImportCommand.maximumTextBytes else {
            throw BadRequest(message: "\(path)text: must be a string of 1 to \(ImportCommand.maximumTextBytes) bytes")
        }
        _ = try optional("conversation") // accepted for the agent's convenience; not stored
        return Incoming(text: text, customer: try optional("customer"), messageID: try optional("message_id") ?? newMessageID())
    }

    /// "sg_" and 96 random bits: unique enough to name a message for feedback, and linked to nothing.
    static func newMessageID() -> String {
        var generator = SystemRandomNumberGenerator()
        let a = generator.next() as UInt64, b = generator.next() as UInt32
        return "sg_" + String(a, radix: 16).leftPadded(16) + String(b, radix: 16).leftPadded(8)
    }

    func classify(_ request: HTTPRequest) -> HTTPResponse {
        let messages: [Incoming]
        let batch: Bool
        do {
            guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) else { throw BadRequest(message: "body: not JSON") }
            if let o = object as? [String: Any], let list = o["messages"] {
                guard o.count == 1 else { throw BadRequest(message: "body: a batch has only \"messages\"") }
                guard let items = list as? [Any], !items.isEmpty, items.count <= settings.maximumBatch else {
                    throw BadRequest(message: "messages: must be an array of 1 to \(settings.maximumBatch) objects")
                }
                messages = try items.enumerated().map { try Self.incoming($1, at: "messages[\($0)].") }
                batch = true
            } else {
                messages = [try Self.incoming(object, at: "")]
                batch = false
            }
        } catch let error as BadRequest {
            return .error(400, code: "bad_request", message: error.message)
        } catch {
            return .error(400, code: "bad_request", message: "\(error)")
        }
        guard let model = models.current else {
            return .error(503, code: "no_model", message: "no model yet: take part in a round ('sigilo-tenant run') or 'pull' one")
        }
        var body = [UInt8]()
        body.reserveCapacity(batch ? 256 * messages.count : 256)
        if batch { body += #"{"results":["#.utf8 }
        writer.enqueue(answer(messages, with: model, source: .service, into: &body))
        if batch { body += "]}".utf8 }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: body)
    }

    /// Answers `messages` in order, as comma-separated JSON objects appended to
    /// `body`; returns those of a named customer, to offer to the store.
    func answer(_ messages: [Incoming], with model: ServingModel, source: MessageSource, into body: inout [UInt8]) -> [MessageWriter.Pending] {
        var scratch = ServingModel.Scratch()
        var pending = [MessageWriter.Pending]()
        let answers = model.answers(messages.map(\.text), top: settings.top, scratch: &scratch)
        let encoder = model.extractor.encoderDigest
        for (i, (message, answer)) in zip(messages, answers).enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            model.render(answer, messageID: message.messageID, into: &body)
            if let customer = message.customer {
                pending.append(.init(key: message.messageID, customer: customer, redacted: answer.redacted, source: source,
                                     embedding: encoder.flatMap { e in answer.embedding.map { (encoder: e, values: $0) } }))
            }
        }
        metrics.decisions(answers.map(\.reason))
        if model.extractor.encoder != nil { metrics.encoded(messages: messages.count, seconds: Double(scratch.encoderNanoseconds) / 1e9) }
        return pending
    }

    // MARK: feedback and consent

    func jsonObject(_ request: HTTPRequest, fields: Set<String>) throws -> [String: Any] {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
            throw BadRequest(message: "body: not a JSON object")
        }
        if let unknown = o.keys.first(where: { !fields.contains($0) }) {
            throw BadRequest(message: "unknown field \"\(unknown.prefix(64))\" (fields: \(fields.sorted().joined(separator: ", ")))")
        }
        return o
    }

    func feedback(_ request: HTTPRequest) -> HTTPResponse {
        let id: String, intent: String
        do {
            let o = try jsonObject(request, fields: ["message_id", "intent"])
            guard let m = o["message_id"] as? String, !m.isEmpty, m.utf8.count <= 256 else { throw BadRequest(message: "message_id: must be a string of 1 to 256 bytes") }
            guard let i = o["intent"] as? String, !i.isEmpty, i.utf8.count <= 128 else { throw BadRequest(message: "intent: must be a string of 1 to 128 bytes") }
            if let labels = lock.withLock({ knownLabels }), !labels.contains(i) {
                metrics.feedback("unknown_intent")
                throw BadRequest(message: "intent: \"\(i.prefix(64))\" is not one of the model's intents")
            }
            (id, intent) = (m, i)
        } catch let error as BadRequest {
            return .error(400, code: "bad_request", message: error.message)
        } catch {
            return .error(400, code: "bad_request", message: "\(error)")
        }
        writer.flush() // the message it labels may still be on its way to the store
        let outcome: TenantStore.Feedback
        do {
            outcome = try store { store in
                try store.database.transaction {
                    let outcome = try store.label(key: id, intent: intent, now: Date().timeIntervalSince1970)
                    if outcome == .notStored { try store.increment("feedback_discarded") }
                    return outcome
                }
            }
        } catch {
            log.error("feedback", "feedback failed: \(error)")
            return .error(500, code: "store_failed", message: "the label could not be stored; try again")
        }
        var fields: [(String, JSON)] = [("message_id", .string(id)), ("intent", .string(intent))]
        switch outcome {
        case .labelled:
            metrics.feedback("labelled")
            fields.append(("kept", .bool(true)))
        case .corrected(let previous):
            metrics.feedback("corrected")
            fields += [("kept", .bool(true)), ("corrected_from", .string(previous))]
        case .unchanged:
            metrics.feedback("unchanged")
            fields += [("kept", .bool(true)), ("unchanged", .bool(true))]
        case .notStored:
            metrics.feedback("discarded")
            fields += [("kept", .bool(false)), ("reason", .string("no message with this id is stored: its customer has not consented, withdrew or was forgotten, or it expired unlabelled; the label is discarded"))]
        }
        return .json(200, JSON.object(fields).rendered())
    }

    func consent(_ request: HTTPRequest) -> HTTPResponse {
        let customer: String, granted: Bool
        do {
            let o = try jsonObject(request, fields: ["customer", "consent"])
            guard let c = o["customer"] as? String, !c.isEmpty, c.utf8.count <= 256 else { throw BadRequest(message: "customer: must be a string of 1 to 256 bytes") }
            guard let value = o["consent"], ImportCommand.isJSONBool(value), let g = value as? Bool else { throw BadRequest(message: "consent: must be true or false") }
            (customer, granted) = (c, g)
        } catch let error as BadRequest {
            return .error(400, code: "bad_request", message: error.message)
        } catch {
            return .error(400, code: "bad_request", message: "\(error)")
        }
        writer.flush() // a withdrawal must also delete the messages still on their way
        let change: TenantStore.ConsentChange
        do {
            change = try store { try $0.setConsent(customer: customer, granted: granted, now: Date().timeIntervalSince1970) }
            if change.personalModelDeleted { try refresh(force: true) }
        } catch {
            log.error("consent", "consent failed: \(error)")
            return .error(500, code: "store_failed", message: "the consent could not be recorded; try again")
        }
        return .json(200, JSON.object([
            ("consent", .bool(granted)), ("customer_was_known", .bool(!change.newCustomer)),
            ("messages_deleted", .integer(change.messagesDeleted)), ("personalised_model_deleted", .bool(change.personalModelDeleted)),
        ]).rendered())
    }

    // MARK: WhatsApp webhook

    func verifyWebhook(_ request: HTTPRequest) -> HTTPResponse {
        guard let webhook else { return .error(404, code: "webhook_not_configured", message: "serve was started without --whatsapp-app-secret-file and --whatsapp-verify-token-file") }
        do {
            let challenge = try WhatsAppWebhook.verificationChallenge(query: request.query, verifyToken: webhook.verifyToken)
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array(challenge.utf8))
        } catch let refusal as WhatsAppWebhook.Refusal {
            metrics.webhookRefused(refusal.code)
            return .error(403, code: refusal.code, message: refusal.description)
        } catch {
            return .error(403, code: "refused", message: "\(error)")
        }
    }

    func receiveWebhook(_ request: HTTPRequest) -> HTTPResponse {
        guard let webhook else { return .error(404, code: "webhook_not_configured", message: "serve was started without --whatsapp-app-secret-file and --whatsapp-verify-token-file") }
        let payload: WhatsAppWebhook.Payload
        do {
            try WhatsAppWebhook.verifySignature(request.header("x-hub-signature-256"), body: request.body, appSecret: webhook.appSecret)
            payload = try WhatsAppWebhook.parse(request.body)
        } catch let refusal as WhatsAppWebhook.Refusal {
            metrics.webhookRefused(refusal.code)
            return .error(refusal.code == "bad_payload" ? 400 : 401, code: refusal.code, message: refusal.description)
        } catch {
            return .error(400, code: "bad_payload", message: "\(error)")
        }
        let model = models.current
        guard payload.texts.isEmpty || model != nil else {
            return .error(503, code: "no_model", message: "no model yet: the platform will deliver these messages again")
        }
        var body = Array(#"{"results":["#.utf8)
        // A delivery older than unlabelled messages are kept (a replay, say) is answered, not kept.
        let cutoff = Date().timeIntervalSince1970 - settings.keepUnlabelledSeconds
        let incoming = payload.texts.map { Incoming(text: $0.body, customer: Double($0.timestamp) < cutoff ? nil : $0.from, messageID: $0.id) }
        let stale = incoming.filter { $0.customer == nil }.count
        let pending = model.map { answer(incoming, with: $0, source: .webhook, into: &body) } ?? []
        if stale > 0 { metrics.stored("stale", count: stale) }
        writer.enqueue(pending)
        writer.flush() // acknowledged only once durable: the platform does not deliver an acknowledged message again
        body += #"],"other_messages":\#(payload.otherMessages),"statuses":\#(payload.statuses),"too_old_to_keep":\#(stale)}"#.utf8
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: body)
    }
}

extension HTTPResponse {
    func adding(_ header: (String, String)) -> HTTPResponse {
        var copy = self
        copy.headers.append(header)
        return copy
    }
}

extension String {
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
