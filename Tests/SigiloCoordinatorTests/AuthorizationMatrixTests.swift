import Foundation
import Testing
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloFederation
import SigiloHTTP

/// Every endpoint x every role x {valid, missing TOTP, wrong TOTP, bad
/// signature or secret, revoked}: the expected status, and a refused request
/// changes no state.
@Suite struct AuthorizationMatrixTests {
    enum Caller: String, CaseIterable {
        case anonymous
        case tenant, tenantBadSignature, tenantRevoked
        case admin, adminSession, adminMissingTOTP, adminWrongTOTP, adminBadSecret
        case auditor, auditorBadSecret, auditorRevoked

        /// The role a valid caller acts in; nil for callers that must fail authentication.
        var validRole: Role? {
            switch self {
            case .tenant: return .tenant
            case .admin, .adminSession: return .admin
            case .auditor: return .auditor
            default: return nil
            }
        }

        var expectedFailure: Int? {
            switch self {
            case .anonymous, .tenantBadSignature, .adminMissingTOTP, .adminWrongTOTP, .adminBadSecret, .auditorBadSecret: return 401
            case .tenantRevoked, .auditorRevoked: return 403
            default: return nil
            }
        }
    }

    /// Who may call what, written out independently of the routes' own table.
    static let expectedRoles: [String: Set<Role>] = [
        "GET /healthz": [.tenant, .admin, .auditor], "POST /v1/enroll": [.tenant, .admin, .auditor],
        "GET /metrics": [.admin, .auditor],
        "GET /v1/plan": [.tenant, .admin, .auditor], "GET /v1/rounds/current": [.tenant], "GET /v1/models/*": [.tenant, .admin],
        "POST /v1/rounds/*/updates": [.tenant], "POST /v1/rounds/*/keys": [.tenant], "POST /v1/rounds/*/shares": [.tenant],
        "POST /v1/rounds/*/unmask": [.tenant], "GET /v1/rounds/*/outcome": [.tenant],
        "POST /v1/admin/session": [.admin], "POST /v1/admin/tenants": [.admin], "POST /v1/admin/tenants/*/revoke": [.admin],
        "PUT /v1/admin/tenants/*/weight-cap": [.admin],
        "PUT /v1/admin/plan": [.admin], "POST /v1/admin/auditors": [.admin], "POST /v1/admin/auditors/*/revoke": [.admin],
        "GET /v1/admin/status": [.admin, .auditor],
        "GET /v1/audit/tenants": [.admin, .auditor], "GET /v1/audit/ledger": [.admin, .auditor], "GET /v1/audit/models": [.admin, .auditor],
        "GET /v1/audit/log": [.admin, .auditor], "GET /v1/audit/verify": [.admin, .auditor], "GET /v1/audit/head": [.admin, .auditor],
        "GET /v1/admin/auditors": [.admin], "POST /v1/tenant/key": [.tenant], "GET /v1/admin/sessions": [.admin], "POST /v1/admin/sessions/*/revoke": [.admin],
    ]

    @Test func everyEndpointEveryRoleEveryCredentialState() throws {
        #expect(Set(CoordinatorRoutes.endpoints.map { "\($0.method) \($0.path)" }) == Set(Self.expectedRoles.keys))
        // Generous lock-out limits: this test fails authentication on purpose, many times.
        let h = try Harness(identityLockout: .init(limit: 100_000, window: 600, lockout: 900),
                            addressLockout: .init(limit: 100_000, window: 600, lockout: 900))
        let tenant = try h.enrollTenant("loja")
        let revokedTenant = try h.enrollTenant("antiga")
        try h.service.revoke(tenant: revokedTenant.id, now: h.now)
        let auditor = try h.service.createAuditor(name: "dpo", by: .localOperator, now: h.now)
        let revokedAuditor = try h.service.createAuditor(name: "ex-dpo", by: .localOperator, now: h.now)
        try h.service.revokeCredential(revokedAuditor.id, by: .localOperator, now: h.now)
        let planJSON = Array(try JSONEncoder().encode(h.plan))

        func session() throws -> String {
            let response = h.send("POST", "/v1/admin/session", headers: h.adminHeaders())
            return try #require(Harness.json(response)["session"] as? String)
        }

        func headers(_ caller: Caller, _ method: String, _ target: String, _ body: [UInt8]) throws -> [(String, String)] {
            switch caller {
            case .anonymous: return []
            case .tenant: return try h.signed(method, target, body: body, tenant: tenant.id, key: tenant.key)
            case .tenantBadSignature:
                return try h.signed(method, target, body: body, tenant: tenant.id, key: Ed25519.KeyPair.generate())
            case .tenantRevoked: return try h.signed(method, target, body: body, tenant: revokedTenant.id, key: revokedTenant.key)
            case .admin: return h.adminHeaders()
            case .adminSession: return [("Authorization", "Session \(try session())")]
            case .adminMissingTOTP: return [("Authorization", "Bearer \(h.admin.credential)")]
            case .adminWrongTOTP:
                let right = h.admin.totp.code(step: TOTP.step(at: h.now))
                return [("Authorization", "Bearer \(h.admin.credential)"), ("Sigilo-TOTP", right == "000000" ? "111111" : "000000")]
            case .adminBadSecret: return [("Authorization", "Bearer admin.\(String(repeating: "ab", count: 32))"), ("Sigilo-TOTP", h.admin.totp.code(step: TOTP.step(at: h.now)))]
            case .auditor: return [("Authorization", "Bearer \(auditor.credential)")]
            case .auditorBadSecret: return [("Authorization", "Bearer \(auditor.id).\(String(repeating: "cd", count: 32))")]
            case .auditorRevoked: return [("Authorization", "Bearer \(revokedAuditor.credential)")]
            }
        }

        /// A concrete request for each endpoint, harmless when authorised.
        func concrete(_ endpoint: CoordinatorRoutes.Endpoint) -> (target: String, body: [UInt8]) {
            switch endpoint.path {
            case "/v1/models/*": return ("/v1/models/1", [])
            case "/v1/rounds/*/outcome": return ("/v1/rounds/1/outcome", [])
            case "/v1/rounds/*/updates": return ("/v1/rounds/1/updates", [1, 2, 3])
            case "/v1/rounds/*/keys", "/v1/rounds/*/shares", "/v1/rounds/*/unmask":
                return (endpoint.path.replacingOccurrences(of: "*", with: "1"), Array("{}".utf8))
            case "/v1/admin/tenants/*/revoke": return ("/v1/admin/tenants/tenant-999/revoke", [])
            case "/v1/admin/auditors/*/revoke": return ("/v1/admin/auditors/auditor-999/revoke", [])
            case "/v1/admin/tenants": return (endpoint.path, Array(#"{"name":"nova"}"#.utf8))
            case "/v1/admin/auditors": return (endpoint.path, Array(#"{"name":"outro"}"#.utf8))
            case "/v1/admin/plan": return (endpoint.path, planJSON)
            case "/v1/enroll": return (endpoint.path, Array("{}".utf8))
            default: return (endpoint.path, [])
            }
        }

        var checked = 0
        for endpoint in CoordinatorRoutes.endpoints {
            let (target, body) = concrete(endpoint)
            var publicStatuses = Set<Int>()
            for caller in Caller.allCases {
                let requestHeaders = try headers(caller, endpoint.method, target, body)
                let before = try h.snapshot()
                let response = h.send(endpoint.method, target, body: body, headers: requestHeaders)
                let context = "\(caller.rawValue) \(endpoint.method) \(target) -> \(response.status) \(String(decoding: response.body, as: UTF8.self))"
                checked += 1
                if endpoint.access == .anyone {
                    publicStatuses.insert(response.status)
                    continue
                }
                if let failure = caller.expectedFailure {
                    #expect(response.status == failure, "\(context)")
                    #expect(try h.snapshot() == before, "refused request changed state: \(context)")
                } else if let role = caller.validRole {
                    let allowed = Self.expectedRoles["\(endpoint.method) \(endpoint.path)", default: []].contains(role)
                        && !(caller == .adminSession && endpoint.path == "/v1/admin/session")
                    if allowed {
                        #expect(![401, 403, 429].contains(response.status), "\(context)")
                    } else {
                        #expect(response.status == 403, "\(context)")
                        #expect(try h.snapshot() == before, "refused request changed state: \(context)")
                    }
                }
            }
            // Public endpoints answer the same whoever asks.
            if endpoint.access == .anyone { #expect(publicStatuses.count == 1, "\(endpoint.path): \(publicStatuses)") }
        }
        #expect(checked == CoordinatorRoutes.endpoints.count * Caller.allCases.count)
    }

    @Test func unknownPathsAndMethodsAreRefusedBeforeAuthentication() throws {
        let h = try Harness()
        #expect(h.send("GET", "/v1/nothing").status == 404)
        #expect(h.send("DELETE", "/v1/plan").status == 405)
        #expect(h.send("GET", "/v1/plan", headers: [("Authorization", "Basic abc")]).status == 400)
    }

    @Test func sessionsExpireAndCannotOpenSessions() throws {
        let h = try Harness()
        let opened = h.send("POST", "/v1/admin/session", headers: h.adminHeaders())
        #expect(opened.status == 201)
        let token = try #require(Harness.json(opened)["session"] as? String)
        #expect(h.send("GET", "/v1/audit/ledger", headers: [("Authorization", "Session \(token)")]).status == 200)
        #expect(h.send("POST", "/v1/admin/session", headers: [("Authorization", "Session \(token)")]).status == 403)
        h.now += adminSessionSeconds + 1
        #expect(h.send("GET", "/v1/audit/ledger", headers: [("Authorization", "Session \(token)")]).status == 401)
    }

    @Test func aTOTPCodeIsAcceptedOnce() throws {
        let h = try Harness()
        let headers = h.adminHeaders()
        #expect(h.send("GET", "/v1/audit/ledger", headers: headers).status == 200)
        let replay = h.send("GET", "/v1/audit/ledger", headers: headers)
        #expect(replay.status == 401)
        #expect(Harness.json(replay)["error"] as? String == "bad_totp")
    }
}
