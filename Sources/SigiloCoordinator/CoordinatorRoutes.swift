import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloProtocol

/// Counters exported at /metrics (Prometheus text format).
final class Metrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Double] = [:]
    private var sources: [@Sendable () -> String] = []

    func add(_ name: String, _ value: Double = 1) { lock.withLock { counters[name, default: 0] += value } }

    /// Adds series rendered by someone else (the HTTP server's connection counters).
    func include(_ source: @escaping @Sendable () -> String) { lock.withLock { sources.append(source) } }

    /// The service's figures as last read, at most a second old: a scrape then
    /// costs no database work (Prometheus scrapes every 15 s or so; monitors
    /// that poll harder get the same second's figures).
    private var snapshot: (at: Double, status: CoordinatorService.Status, lockedOut: Int)?

    func render(now: Double, read: () throws -> (CoordinatorService.Status, Int)) rethrows -> String {
        let cached = lock.withLock { snapshot.flatMap { now - $0.at < 1 && now >= $0.at ? ($0.status, $0.lockedOut) : nil } }
        let (status, lockedOut) = try cached ?? read()
        if cached == nil { lock.withLock { snapshot = (now, status, lockedOut) } }
        return render(status: status, lockedOut: lockedOut)
    }

    func render(status: CoordinatorService.Status, lockedOut: Int) -> String {
        var out = ""
        out += "# TYPE sigilo_rounds_closed_total counter\nsigilo_rounds_closed_total \(status.roundsClosed)\n"
        out += "# TYPE sigilo_rounds_abandoned_total counter\nsigilo_rounds_abandoned_total \(status.roundsAbandoned)\n"
        out += "# TYPE sigilo_epsilon_spent gauge\nsigilo_epsilon_spent \(status.epsilon)\n"
        if let budget = status.maximumEpsilon { out += "# TYPE sigilo_epsilon_budget gauge\nsigilo_epsilon_budget \(budget)\n" }
        out += "# TYPE sigilo_tenants_active gauge\nsigilo_tenants_active \(status.tenantsActive)\n"
        out += "# TYPE sigilo_tenants_dormant gauge\nsigilo_tenants_dormant \(status.tenantsDormant.count)\n"
        out += "# TYPE sigilo_model_version gauge\nsigilo_model_version \(status.modelVersion ?? 0)\n"
        out += "# TYPE sigilo_auth_locked_out gauge\nsigilo_auth_locked_out \(lockedOut)\n"
        let (snapshot, included) = lock.withLock { (counters, sources) }
        // One # TYPE line per family, before its first series (the exposition format's rule):
        // NAME_sum and NAME_count make the summary NAME; every other accumulated series is a counter.
        var typed = Set<String>()
        for (name, value) in snapshot.sorted(by: { $0.key < $1.key }) {
            let series = name.prefix { $0 != "{" }
            var family = String(series), kind = "counter"
            for suffix in ["_sum", "_count"] where series.hasSuffix(suffix) {
                family = String(series.dropLast(suffix.count))
                kind = "summary"
            }
            if typed.insert(family).inserted { out += "# TYPE \(family) \(kind)\n" }
            out += "\(name) \(value)\n"
        }
        for source in included { out += source() }
        return out
    }
}

/// Maps HTTP requests to the coordinator service (protocol/PROTOCOL.md,
/// "Endpoints"). Every endpoint declares the access it needs in `endpoints`;
/// `handle` is the one place that enforces it, before any handler runs.
public struct CoordinatorRoutes: Sendable {
    let service: CoordinatorService
    let clock: @Sendable () -> Double
    let longPolls: LongPolls

    public init(service: CoordinatorService, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.service = service
        self.clock = clock
        longPolls = LongPolls(service: service)
    }

    /// Answers parked long-polls now and parks no more (before the server stops).
    public func stopWaiting() { longPolls.stop() }

    /// Long-polls parked now.
    public var parkedLongPolls: Int { longPolls.count }

    /// Adds the HTTP server's own counters to /metrics.
    public func includeMetrics(_ source: @escaping @Sendable () -> String) { service.metrics.include(source) }

    /// One endpoint: method, path pattern ("*" matches one segment), access, handler.
    public struct Endpoint: Sendable {
        public let method: String
        public let pattern: [String]
        public let access: Access
        let handler: @Sendable (CoordinatorRoutes, Call) throws -> HTTPResponse

        func parameters(_ parts: [Substring]) -> [String]? {
            guard parts.count == pattern.count else { return nil }
            var out = [String]()
            for (part, expected) in zip(parts, pattern) {
                if expected == "*" { out.append(String(part)) } else if part != expected { return nil }
            }
            return out
        }

        public var path: String { "/" + pattern.joined(separator: "/") }
    }

    /// A request being served, with the caller once authorised.
    struct Call {
        let request: HTTPRequest
        let principal: Principal?
        let parameters: [String]
        let now: Double
        let address: String
    }

    static let tenantOnly = Access.roles([.tenant])
    static let adminOnly = Access.roles([.admin])
    static let oversight = Access.roles([.admin, .auditor])

    /// Every endpoint and who may call it (protocol/SECURITY.md, "Authorisation matrix").
    public static let endpoints: [Endpoint] = [
        Endpoint(method: "GET", pattern: ["healthz"], access: .anyone) { _, _ in healthy },
        Endpoint(method: "GET", pattern: ["metrics"], access: oversight) { routes, call in
            let text = try routes.service.metrics.render(now: call.now) {
                (try routes.service.status(), routes.service.lockedOutCount(now: call.now))
            }
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")], body: Array(text.utf8))
        },
        Endpoint(method: "POST", pattern: ["v1", "enroll"], access: .anyone) { routes, call in try routes.enroll(call) },
        Endpoint(method: "GET", pattern: ["v1", "plan"], access: .roles([.tenant, .admin, .auditor])) { routes, _ in
            guard let plan = try routes.service.plan() else { throw CoordinatorError(404, "no_plan", "no plan is set") }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(try JSONEncoder().encode(plan)))
        },
        Endpoint(method: "GET", pattern: ["v1", "rounds", "current"], access: tenantOnly) { routes, call in try routes.currentRound(call) },
        Endpoint(method: "GET", pattern: ["v1", "models", "*"], access: .roles([.tenant, .admin])) { routes, call in try routes.model(call) },
        Endpoint(method: "POST", pattern: ["v1", "rounds", "*", "updates"], access: tenantOnly) { routes, call in try routes.submit(call) },
        // Secure rounds' other stages (protocol/PROTOCOL.md, "Secure aggregation").
        Endpoint(method: "POST", pattern: ["v1", "rounds", "*", "keys"], access: tenantOnly) { routes, call in
            let keys = try routes.secureBody(call) { try SecureRoundWire.advertisement($0) }
            try routes.service.advertise(tenant: call.principal!.id, round: try routes.roundParameter(call), encryptionKey: keys.encryptionKey,
                                         maskKey: keys.maskKey, seedCommitment: keys.seedCommitment, signature: keys.signature, now: call.now)
            return .json(202, JSON.object([("accepted", .bool(true))]).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "rounds", "*", "shares"], access: tenantOnly) { routes, call in
            let shares = try routes.secureBody(call) { try SecureRoundWire.shares($0) }
            try routes.service.shareKeys(tenant: call.principal!.id, round: try routes.roundParameter(call), shares: shares, now: call.now)
            return .json(202, JSON.object([("accepted", .bool(true))]).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "rounds", "*", "unmask"], access: tenantOnly) { routes, call in
            let reveals = try routes.secureBody(call) { try SecureRoundWire.reveals($0) }
            try routes.service.reveal(tenant: call.principal!.id, round: try routes.roundParameter(call), shares: reveals, now: call.now)
            return .json(202, JSON.object([("accepted", .bool(true))]).rendered())
        },

        Endpoint(method: "GET", pattern: ["v1", "rounds", "*", "outcome"], access: tenantOnly) { routes, call in
            let id = try routes.roundParameter(call)
            guard let outcome = try routes.service.roundOutcome(id) else { throw CoordinatorError(404, "unknown_round", "no round \(id)") }
            return .json(200, JSON.object([("round", .integer(Int(id))), ("state", .string(outcome.state)),
                                           ("secure_stage", outcome.stage.map { .string($0) } ?? .null), ("signature", .string(outcome.signature))]).rendered())
        },

        Endpoint(method: "POST", pattern: ["v1", "admin", "session"], access: .adminWithFreshTOTP) { routes, call in
            let session = try routes.service.openSession(for: call.principal!, now: call.now)
            return .json(201, JSON.object([("session", .string(session.token)), ("expires", .number(session.expires))]).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "admin", "tenants"], access: adminOnly) { routes, call in
            let name = try routes.stringField(call, "name")
            let token = try routes.service.invite(name: name, weightCap: try routes.weightCapField(call, required: false), by: call.principal!, now: call.now)
            return .json(201, JSON.object([("name", .string(name)), ("token", .string(token))]).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "admin", "tenants", "*", "revoke"], access: adminOnly) { routes, call in
            try routes.service.revoke(tenant: call.parameters[0], by: call.principal!, now: call.now)
            return .json(200, JSON.object([("revoked", .string(call.parameters[0]))]).rendered())
        },
        Endpoint(method: "PUT", pattern: ["v1", "admin", "tenants", "*", "weight-cap"], access: adminOnly) { routes, call in
            let cap = try routes.weightCapField(call, required: true)
            try routes.service.setWeightCap(tenant: call.parameters[0], to: cap, by: call.principal!, now: call.now)
            return .json(200, JSON.object([("tenant", .string(call.parameters[0])), ("weight_cap", cap.map { .number($0) } ?? .null)]).rendered())
        },
        Endpoint(method: "PUT", pattern: ["v1", "admin", "plan"], access: adminOnly) { routes, call in
            let plan: Plan
            do { plan = try Plan.decodeOperatorFile(Data(call.request.body)) } catch let e as PlanError { throw CoordinatorError(400, "bad_plan", e.description) }
            let change = try routes.service.setPlan(plan, by: call.principal!, now: call.now)
            return .json(200, JSON.object([("dimension", .integer(plan.dimension)),
                                           ("staged_until_round", change.stagedUntilRound.map { .integer(Int($0)) } ?? .null),
                                           ("labels_changed", change.labels.map(JSON.string) ?? .null)]).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "admin", "auditors"], access: adminOnly) { routes, call in
            let issued = try routes.service.createAuditor(name: try routes.stringField(call, "name"), by: call.principal!, now: call.now)
            return .json(201, JSON.object([("id", .string(issued.id)), ("credential", .string(issued.credential))]).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "admin", "auditors", "*", "revoke"], access: adminOnly) { routes, call in
            try routes.service.revokeCredential(call.parameters[0], by: call.principal!, now: call.now)
            return .json(200, JSON.object([("revoked", .string(call.parameters[0]))]).rendered())
        },
        // A tenant's new identity key, proven by both keys (protocol/PROTOCOL.md, "Key rotation").
        Endpoint(method: "POST", pattern: ["v1", "tenant", "key"], access: .roles([.tenant])) { routes, call in
            guard let object = (try? JSONSerialization.jsonObject(with: Data(call.request.body))) as? [String: Any] else {
                throw CoordinatorError(400, "bad_body", "key rotation body must be a JSON object")
            }
            guard let key = (object["public_key"] as? String).flatMap(Hex.decode), key.count == 32 else {
                throw CoordinatorError(400, "bad_body", "\"public_key\" must be 64 hex digits")
            }
            guard let proof = (object["proof"] as? String).flatMap(Hex.decode), proof.count == 64 else {
                throw CoordinatorError(400, "bad_body", "\"proof\" must be 128 hex digits")
            }
            try routes.service.rotateKey(tenant: call.principal!.id, newKey: key, proof: proof, now: call.now)
            return .json(200, JSON.object([("tenant_id", .string(call.principal!.id))]).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "admin", "auditors"], access: adminOnly) { routes, _ in
            .json(200, JSON.array(try routes.service.auditors().map {
                JSON.object([("id", .string($0.id)), ("name", .string($0.name)), ("created_at", .number($0.createdAt)),
                             ("revoked_at", $0.revokedAt.map { .number($0) } ?? .null)])
            }).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "admin", "sessions"], access: adminOnly) { routes, call in
            .json(200, JSON.array(try routes.service.sessions(now: call.now).map {
                JSON.object([("id", .string($0.id)), ("credential", .string($0.credential)), ("expires", .number($0.expiresAt))])
            }).rendered())
        },
        Endpoint(method: "POST", pattern: ["v1", "admin", "sessions", "*", "revoke"], access: adminOnly) { routes, call in
            try routes.service.revokeSessions(call.parameters[0], by: call.principal!, now: call.now)
            return .json(200, JSON.object([("revoked", .string(call.parameters[0]))]).rendered())
        },

        // What `status --json` prints, for `admin status` and monitoring.
        Endpoint(method: "GET", pattern: ["v1", "admin", "status"], access: oversight) { routes, _ in
            .json(200, try CoordinatorTool.statusJSON(routes.service).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "audit", "tenants"], access: oversight) { routes, _ in
            .json(200, JSON.array(try routes.service.tenants().map {
                JSON.object([("id", .string($0.id)), ("name", .string($0.name)), ("status", .string($0.status)), ("enrolled_at", .number($0.enrolledAt))])
            }).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "audit", "ledger"], access: oversight) { routes, _ in
            let status = try routes.service.status()
            let rows = try routes.service.ledgerRows().map {
                JSON.object([("round", .integer(Int($0.round))), ("sample_rate", .number($0.sampleRate)),
                             ("noise_multiplier", .number($0.noiseMultiplier)), ("charged_at", .number($0.chargedAt)),
                             ("charged", .string(Log.timestamp($0.chargedAt)))])
            }
            return .json(200, JSON.object([("epsilon", .number(status.epsilon)), ("delta", status.delta.map { .number($0) } ?? .null),
                                           ("maximum_epsilon", status.maximumEpsilon.map { .number($0) } ?? .null), ("rounds", .array(rows))]).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "audit", "models"], access: oversight) { routes, _ in
            .json(200, JSON.array(try routes.service.modelVersions().map {
                JSON.object([("version", .integer(Int($0.version))), ("sha256", .string($0.sha256)),
                             ("parent", $0.parent.map { .integer(Int($0)) } ?? .null), ("round", $0.round.map { .integer(Int($0)) } ?? .null),
                             ("epsilon", .number($0.epsilon)), ("created_at", .number($0.createdAt))])
            }).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "audit", "log"], access: oversight) { routes, call in
            let query = call.request.query
            var after: Int64 = 0, limit = 1000
            for pair in query.split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { throw CoordinatorError(400, "bad_query", "query must be after=N&limit=M") }
                switch kv[0] {
                case "after": guard let v = Int64(kv[1]), v >= 0 else { throw CoordinatorError(400, "bad_query", "after must be an integer >= 0") }; after = v
                case "limit": guard let v = Int(kv[1]), (1...10_000).contains(v) else { throw CoordinatorError(400, "bad_query", "limit must be 1...10000") }; limit = v
                default: throw CoordinatorError(400, "bad_query", "unknown query parameter \(kv[0])")
                }
            }
            let entries = try routes.service.auditEntries(after: after, limit: limit)
            return .json(200, JSON.array(entries.map { auditJSON($0.entry, hash: $0.hash) }).rendered())
        },
        Endpoint(method: "GET", pattern: ["v1", "audit", "verify"], access: oversight) { routes, _ in
            let problem = try routes.service.verifyAudit()
            return .json(200, JSON.object([("intact", .bool(problem == nil)), ("problem", problem.map { .string($0) } ?? .null)]).rendered())
        },
        // The signed head as a checkpoint for auditors to keep (`audit verify --checkpoint`).
        Endpoint(method: "GET", pattern: ["v1", "audit", "head"], access: oversight) { routes, _ in
            guard let checkpoint = try routes.service.auditCheckpoint() else { throw CoordinatorError(404, "no_audit_head", "the audit log is empty") }
            return .json(200, checkpoint.json)
        },
    ]

    /// Answers one request (and blocks until it is answered: for tests and tools; the server uses the callback form).
    public func handle(_ request: HTTPRequest, peer: String) -> HTTPResponse {
        final class Box: @unchecked Sendable { var response: HTTPResponse? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        handle(request, peer: peer) { box.response = $0; done.signal() }
        done.wait()
        return box.response!
    }

    /// Answers one request through `respond`, at once or, for a long-poll, when
    /// a round opens or its wait ends (from another thread).
    public func handle(_ request: HTTPRequest, peer: String, respond: @escaping @Sendable (HTTPResponse) -> Void) {
        let start = DispatchTime.now().uptimeNanoseconds
        let now = clock()
        let address = Self.host(of: peer)
        let presented = PresentedCredentials(header: { request.header($0) })
        var principal: Principal?
        // Anonymous health probes and requests for no endpoint are counted, not written one by one to the
        // audit log (which an unauthenticated client could otherwise grow without bound).
        var audited = false
        let poll = request.method == "GET" && request.path == "/v1/rounds/current"
        let finish: @Sendable (HTTPResponse, Principal?, Bool) -> Void = { [service] response, principal, audited in
            service.metrics.add("sigilo_requests_total{status=\"\(response.status)\"}")
            service.metrics.add("sigilo_request_seconds_sum", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            service.metrics.add("sigilo_request_seconds_count")
            // A tenant's answered poll for the current round is counted, not audited: thousands of tenants poll
            // all day, and the poll changes nothing (its nonce and the tenant's last contact are still written).
            if poll, principal != nil, response.status < 400 {
                service.metrics.add("sigilo_polls_total")
                respond(response)
            } else if audited || principal != nil {
                service.recordRequest(actor: principal?.id ?? presented.claimedIdentity ?? "anonymous", role: principal?.role.rawValue ?? "unauthenticated",
                                      method: request.method, path: String(request.path.prefix(256)), status: response.status,
                                      code: response.status >= 400 ? Self.errorCode(response) : nil, address: address, now: now) { respond(response) }
            } else {
                service.metrics.add("sigilo_unaudited_requests_total")
                respond(response)
            }
        }
        let response: HTTPResponse
        do {
            let (endpoint, parameters) = try Self.match(request)
            audited = !(endpoint.access == .anyone && endpoint.method == "GET")
            if endpoint.access != .anyone {
                principal = try service.authorize(presented, access: endpoint.access, method: request.method, target: request.target,
                                                  body: request.body, address: address, now: now)
            }
            let call = Call(request: request, principal: principal, parameters: parameters, now: now, address: address)
            if endpoint.path == "/v1/rounds/current", let wait = try Self.longPollWait(request), wait > 0 {
                return try pollRound(call, wait: wait) { [principal, audited] in finish($0, principal, audited) }
            }
            response = try endpoint.handler(self, call)
        } catch {
            response = refusal(error)
        }
        finish(response, principal, audited)
    }

    /// The answer to a liveness probe, given on the server's event loop: it
    /// needs neither the service's lock nor a worker, so it stays fast while
    /// both are busy. Everything else goes to `handle`.
    public func immediate(_ request: HTTPRequest) -> HTTPResponse? {
        guard request.method == "GET", request.path == "/healthz" else { return nil }
        service.metrics.add("sigilo_requests_total{status=\"200\"}")
        service.metrics.add("sigilo_unaudited_requests_total")
        return Self.healthy
    }

    static let healthy = HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("ok\n".utf8))

    /// What the server asks before reading a body: is there such an endpoint,
    /// is the declared size within what it takes, and do the credentials, the
    /// signature over the declared digest, the timestamp and the nonce check
    /// out. nil lets the body come; the full checks run again once it is here.
    public func checkHead(_ head: HTTPRequest, bodyLength: Int, peer: String) -> HTTPResponse? {
        do {
            let (endpoint, _) = try Self.match(head)
            let limit = try maximumBody(for: endpoint)
            guard bodyLength <= limit else {
                throw CoordinatorError(413, "body_too_large", "\(endpoint.method) \(endpoint.path) takes at most \(limit) bytes; \(bodyLength) declared")
            }
            if endpoint.access != .anyone {
                try service.authorizeHead(PresentedCredentials(header: { head.header($0) }), access: endpoint.access, method: head.method,
                                          target: head.target, address: Self.host(of: peer), now: clock())
            }
            return nil
        } catch {
            service.metrics.add("sigilo_requests_refused_before_body_total")
            return refusal(error)
        }
    }

    /// The largest body an endpoint takes: an update of the plan's dimension
    /// (8 bytes a value when masked), else what its JSON can need.
    func maximumBody(for endpoint: Endpoint) throws -> Int {
        switch endpoint.path {
        case "/v1/rounds/*/updates":
            guard let plan = try service.plan() else { throw CoordinatorError(409, "no_plan", "no plan is set") }
            return UpdateEnvelope.headerBytes + plan.dimension * (plan.placement == .secure ? 8 : 4)
        case "/v1/admin/plan":
            return 1 << 20
        case "/v1/rounds/*/shares", "/v1/rounds/*/unmask":
            // One entry per neighbour (about 300 bytes for a share, 200 for a revealed one).
            return (64 << 10) + 512 * (service.secureDegree ?? 0)
        default:
            return 64 << 10
        }
    }

    private func refusal(_ error: any Error) -> HTTPResponse {
        guard let error = error as? CoordinatorError else { return .error(500, code: "internal", message: "internal error") }
        service.metrics.add("sigilo_requests_refused_total{code=\"\(error.code)\"}")
        var refused = HTTPResponse.error(error.status, code: error.code, message: error.message)
        if let wait = error.retryAfter { refused.headers.append(("Retry-After", String(wait))) }
        return refused
    }

    /// The endpoint for a request: 404 when no path matches, 405 when only the method is wrong.
    static func match(_ request: HTTPRequest) throws -> (Endpoint, [String]) {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true)
        var pathMatched = false
        for endpoint in endpoints {
            guard let parameters = endpoint.parameters(parts) else { continue }
            if endpoint.method == request.method { return (endpoint, parameters) }
            pathMatched = true
        }
        if pathMatched { throw CoordinatorError(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)") }
        throw CoordinatorError(404, "not_found", "no endpoint \(request.method) \(request.path)")
    }

    static func host(of peer: String) -> String {
        guard let colon = peer.lastIndex(of: ":") else { return peer }
        return String(peer[..<colon])
    }

    static func errorCode(_ response: HTTPResponse) -> String? {
        ((try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any])?["error"] as? String
    }

    static func auditJSON(_ entry: AuditEntry, hash: [UInt8]) -> JSON {
        // "time" is what the chain covers (epoch seconds, exact); "at" is the same instant for people (RFC 3339, UTC).
        JSON.object([("sequence", .integer(Int(entry.sequence))), ("time", .number(entry.time)), ("at", .string(Log.timestamp(entry.time))), ("actor", .string(entry.actor)),
                     ("role", .string(entry.role)), ("action", .string(entry.action)), ("object", .string(entry.object)),
                     ("outcome", .string(entry.outcome)), ("address", .string(entry.address)), ("detail", .string(entry.detail)),
                     ("hash", .string(Hex.encode(hash)))])
    }

    // MARK: - Handlers

    /// `"weight_cap"`: a number > 0, or null for the plan's; absent is nil unless `required`.
    func weightCapField(_ call: Call, required: Bool) throws -> Double? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(call.request.body))) as? [String: Any] else {
            throw CoordinatorError(400, "bad_body", "body must be a JSON object")
        }
        guard let value = object["weight_cap"] else {
            if required { throw CoordinatorError(400, "bad_body", "\"weight_cap\" must be a number > 0, or null for the plan's") }
            return nil
        }
        if value is NSNull { return nil }
        guard let number = SecureRoundWire.jsonNumber(value), number > 0 else {
            throw CoordinatorError(400, "bad_body", "\"weight_cap\" must be a number > 0, or null for the plan's")
        }
        return number
    }

    func stringField(_ call: Call, _ name: String) throws -> String {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(call.request.body))) as? [String: Any] else {
            throw CoordinatorError(400, "bad_body", "body must be a JSON object")
        }
        guard let value = object[name] as? String else { throw CoordinatorError(400, "bad_body", "\"\(name)\" must be a string") }
        return value
    }

    /// The seconds a round query may wait (`?wait=S`, at most 30), nil without a query.
    static func longPollWait(_ request: HTTPRequest) throws -> Double? {
        let query = request.query
        guard !query.isEmpty else { return nil }
        guard query.hasPrefix("wait="), let seconds = Double(query.dropFirst(5)), seconds.isFinite, (0...30).contains(seconds) else {
            throw CoordinatorError(400, "bad_query", "the only query is wait=SECONDS with SECONDS in 0...30")
        }
        return seconds
    }

    /// The open round, or 204 when there is none this tenant has yet to answer.
    func currentRound(_ call: Call) throws -> HTTPResponse {
        _ = try Self.longPollWait(call.request)
        return try roundAnswer(call, final: true)!
    }

    /// A long-poll: answered now when a round awaits this tenant, else parked
    /// until one opens or `wait` seconds pass (no thread waits for it).
    func pollRound(_ call: Call, wait: Double, respond: @escaping @Sendable (HTTPResponse) -> Void) throws {
        let seen = service.roundsOpenedSoFar // read before looking, so an opening in between is not missed
        if let ready = try roundAnswer(call, final: false) { return respond(ready) }
        longPolls.park(seen: seen, deadline: Date().addingTimeInterval(wait)) { [self] final in
            do {
                guard let answer = try roundAnswer(call, final: final) else { return false }
                respond(answer)
            } catch {
                respond(refusal(error))
            }
            return true
        }
    }

    /// The round this tenant may answer; when there is none, 204 if `final`, else nil.
    func roundAnswer(_ call: Call, final: Bool) throws -> HTTPResponse? {
        let current = try service.currentRound(for: call.principal!.id, now: call.now)
        guard let round = current, round.awaited || final, let plan = try service.plan() else {
            guard final else { return nil }
            // No body on a 204: the reason goes in a header the tenant shows its operator.
            return HTTPResponse(status: 204, headers: [("Sigilo-No-Round", service.noRoundReason(for: call.principal!.id))])
        }
        return .json(200, JSON.object([
            ("round", .integer(Int(round.id))), ("model_version", .integer(Int(round.modelVersion))), ("state", .string("open")),
            ("deadline", .number(round.deadline)), ("submitted", .bool(round.submitted)), ("sample_rate", .number(plan.sampleRate)),
            ("noise_multiplier", .number(plan.noiseMultiplier)), ("clip_norm", .number(plan.clipNorm)),
            ("placement", .string(plan.placement.rawValue)), ("dimension", .integer(round.dimension)), ("delta", .number(plan.delta)),
            ("tenant", .string(call.principal!.id)), ("awaited", .bool(round.awaited)), ("answered", .bool(round.answered)),
        ] + (round.secure.map { [("secure", JSON.rendered(SecureRoundWire.render($0)))] } ?? [])).rendered())
    }

    /// `/v1/models/VERSION`, or `/v1/models/latest`: what a tenant fetches when it has no round to
    /// learn the current version from (its budget is spent, say). The signature covers the version.
    func model(_ call: Call) throws -> HTTPResponse {
        let wanted = call.parameters[0]
        let found: (version: UInt64, file: [UInt8], sha256: String)?
        if wanted == "latest" {
            found = try service.latestModel()
        } else {
            found = try UInt64(wanted).flatMap { version in try service.model(version: version).map { (version, $0.file, $0.sha256) } }
        }
        guard let found else { throw CoordinatorError(404, "unknown_model", wanted == "latest" ? "no model is published yet" : "no model version \(wanted)") }
        return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream"), ("Sigilo-Model-Version", String(found.version)),
                                                   ("Sigilo-Model-SHA256", found.sha256),
                                                   ("Sigilo-Model-Signature", try service.modelSignature(version: found.version, sha256: found.sha256))],
                            body: found.file)
    }

    /// The ROUND of `/v1/rounds/ROUND/...`.
    func roundParameter(_ call: Call) throws -> UInt64 {
        guard let round = UInt64(call.parameters[0]) else { throw CoordinatorError(404, "unknown_round", "no round \(call.parameters[0])") }
        return round
    }

    /// A secure stage's answer decoded, or a 400 naming the field that is wrong.
    func secureBody<T>(_ call: Call, _ decode: ([String: Any]) throws -> T) throws -> T {
        do { return try decode(try SecureRoundWire.body(call.request.body)) } catch let e as SecureRoundWire.Malformed {
            throw CoordinatorError(400, "bad_body", "malformed or missing field: \(e.field)")
        }
    }

    func submit(_ call: Call) throws -> HTTPResponse {
        let round = try roundParameter(call)
        do {
            // A signed request's Sigilo-Content-SHA256 was checked against the body by `authorize`: no need to hash 4 x d bytes again.
            let digest = call.request.header(RequestSigning.contentHeader)
            let duplicate = try service.submit(tenant: call.principal!.id, round: round, body: call.request.body, bodyDigest: digest, now: call.now)
            service.metrics.add(duplicate ? "sigilo_updates_duplicate_total" : "sigilo_updates_accepted_total")
            return .json(202, JSON.object([("accepted", .bool(true)), ("duplicate", .bool(duplicate))]).rendered())
        } catch let error as CoordinatorError {
            service.metrics.add("sigilo_updates_rejected_total{reason=\"\(error.code)\"}")
            throw error
        }
    }

    func enroll(_ call: Call) throws -> HTTPResponse {
        let request = call.request
        if let wait = service.lockedOut(address: call.address, now: call.now) {
            throw CoordinatorError.lockedOut(for: wait)
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
            throw CoordinatorError(400, "bad_body", "enrolment body must be a JSON object")
        }
        guard let token = object["token"] as? String, !token.isEmpty, token.utf8.count <= 128 else {
            throw CoordinatorError(400, "bad_body", "\"token\" must be a non-empty string")
        }
        guard let keyHex = object["public_key"] as? String, let key = Hex.decode(keyHex), key.count == 32 else {
            throw CoordinatorError(400, "bad_body", "\"public_key\" must be 64 hex digits")
        }
        do {
            try service.verifyEnrollmentSignature(method: request.method, target: request.target, body: request.body,
                                                  header: { request.header($0) }, publicKey: key, now: call.now)
            let id = try service.enroll(token: token, publicKey: key, now: call.now)
            service.metrics.add("sigilo_enrolments_total")
            return .json(201, JSON.object([("tenant_id", .string(id)), ("coordinator_public_key", .string(service.publicKeyHex))]).rendered())
        } catch let error as CoordinatorError where error.status == 401 {
            try service.recordFailedAuthentication(identity: nil, address: call.address, reason: error.code, now: call.now)
            throw error
        }
    }
}
