import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloFederation
import SigiloHTTP

/// Counters exported at /metrics (Prometheus text format).
final class Metrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Double] = [:]

    func add(_ name: String, _ value: Double = 1) { lock.withLock { counters[name, default: 0] += value } }

    func render(status: CoordinatorService.Status) -> String {
        var out = ""
        out += "# TYPE sigilo_rounds_closed_total counter\nsigilo_rounds_closed_total \(status.roundsClosed)\n"
        out += "# TYPE sigilo_rounds_abandoned_total counter\nsigilo_rounds_abandoned_total \(status.roundsAbandoned)\n"
        out += "# TYPE sigilo_epsilon_spent gauge\nsigilo_epsilon_spent \(status.epsilon)\n"
        out += "# TYPE sigilo_tenants_active gauge\nsigilo_tenants_active \(status.tenantsActive)\n"
        out += "# TYPE sigilo_model_version gauge\nsigilo_model_version \(status.modelVersion ?? 0)\n"
        let snapshot = lock.withLock { counters }
        for (name, value) in snapshot.sorted(by: { $0.key < $1.key }) { out += "\(name) \(value)\n" }
        return out
    }
}

/// Maps HTTP requests to the coordinator service (protocol/PROTOCOL.md, "Endpoints").
public struct CoordinatorRoutes: Sendable {
    let service: CoordinatorService
    let metrics = Metrics()
    let clock: @Sendable () -> Double

    public init(service: CoordinatorService, clock: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.service = service
        self.clock = clock
    }

    public func handle(_ request: HTTPRequest, peer: String) -> HTTPResponse {
        let start = DispatchTime.now().uptimeNanoseconds
        let response: HTTPResponse
        do {
            response = try route(request)
        } catch let error as CoordinatorError {
            metrics.add("sigilo_requests_refused_total{code=\"\(error.code)\"}")
            response = .error(error.status, code: error.code, message: error.message)
        } catch {
            response = .error(500, code: "internal", message: "internal error")
        }
        metrics.add("sigilo_requests_total{status=\"\(response.status)\"}")
        metrics.add("sigilo_request_seconds_sum", Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        return response
    }

    func route(_ request: HTTPRequest) throws -> HTTPResponse {
        let path = request.path
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        switch (request.method, parts.count) {
        case ("GET", _) where path == "/healthz":
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain")], body: Array("ok\n".utf8))
        case ("GET", _) where path == "/metrics":
            return HTTPResponse(status: 200, headers: [("Content-Type", "text/plain; version=0.0.4")],
                                body: Array(metrics.render(status: try service.status()).utf8))
        case ("POST", _) where path == "/v1/enroll":
            return try enroll(request)
        case ("GET", _) where path == "/v1/plan":
            _ = try authenticate(request)
            guard let plan = try service.plan() else { throw CoordinatorError(404, "no_plan", "no plan is set") }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: Array(try JSONEncoder().encode(plan)))
        case ("GET", _) where path == "/v1/rounds/current":
            let tenant = try authenticate(request)
            guard let round = try service.currentRound(for: tenant), let plan = try service.plan() else { return HTTPResponse(status: 204) }
            return .json(200, JSON.object([
                ("round", .integer(Int(round.id))), ("model_version", .integer(Int(round.modelVersion))), ("state", .string("open")),
                ("deadline", .number(round.deadline)), ("submitted", .bool(round.submitted)), ("sample_rate", .number(plan.sampleRate)),
                ("noise_multiplier", .number(plan.noiseMultiplier)), ("clip_norm", .number(plan.clipNorm)),
                ("placement", .string(plan.placement.rawValue)), ("dimension", .integer(round.dimension)), ("delta", .number(plan.delta)),
            ]).rendered())
        case ("GET", 3) where parts[0] == "v1" && parts[1] == "models":
            _ = try authenticate(request)
            guard let version = UInt64(parts[2]), let model = try service.model(version: version) else {
                throw CoordinatorError(404, "unknown_model", "no model version \(parts[2])")
            }
            return HTTPResponse(status: 200, headers: [("Content-Type", "application/octet-stream"), ("Sigilo-Model-SHA256", model.sha256),
                                                       ("Sigilo-Model-Signature", try service.modelSignature(version: version, sha256: model.sha256))],
                                body: model.file)
        case ("POST", 4) where parts[0] == "v1" && parts[1] == "rounds" && parts[3] == "updates":
            let tenant = try authenticate(request)
            guard let round = UInt64(parts[2]) else { throw CoordinatorError(404, "unknown_round", "no round \(parts[2])") }
            do {
                let duplicate = try service.submit(tenant: tenant, round: round, body: request.body, now: clock())
                metrics.add(duplicate ? "sigilo_updates_duplicate_total" : "sigilo_updates_accepted_total")
                return .json(202, JSON.object([("accepted", .bool(true)), ("duplicate", .bool(duplicate))]).rendered())
            } catch let error as CoordinatorError {
                metrics.add("sigilo_updates_rejected_total{reason=\"\(error.code)\"}")
                throw error
            }
        default:
            if ["/healthz", "/metrics", "/v1/enroll", "/v1/plan", "/v1/rounds/current"].contains(String(path)) {
                throw CoordinatorError(405, "method_not_allowed", "\(request.method) is not allowed on \(path)")
            }
            throw CoordinatorError(404, "not_found", "no endpoint \(request.method) \(path)")
        }
    }

    func authenticate(_ request: HTTPRequest) throws -> String {
        try service.authenticate(method: request.method, target: request.target, body: request.body, header: { request.header($0) }, now: clock())
    }

    func enroll(_ request: HTTPRequest) throws -> HTTPResponse {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
            throw CoordinatorError(400, "bad_body", "enrolment body must be a JSON object")
        }
        guard let token = object["token"] as? String, !token.isEmpty, token.utf8.count <= 128 else {
            throw CoordinatorError(400, "bad_body", "\"token\" must be a non-empty string")
        }
        guard let keyHex = object["public_key"] as? String, let key = Hex.decode(keyHex), key.count == 32 else {
            throw CoordinatorError(400, "bad_body", "\"public_key\" must be 64 hex digits")
        }
        _ = try service.authenticate(method: request.method, target: request.target, body: request.body,
                                     header: { request.header($0) }, now: clock(), enrollmentKey: key)
        let id = try service.enroll(token: token, publicKey: key, now: clock())
        metrics.add("sigilo_enrolments_total")
        return .json(201, JSON.object([("tenant_id", .string(id)), ("coordinator_public_key", .string(service.publicKeyHex))]).rendered())
    }
}
