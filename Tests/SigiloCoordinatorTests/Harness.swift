import Foundation
@testable import SigiloCoordinator
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloProtocol
import SigiloSQLite

/// A coordinator in this process, driven through its routes (the HTTP
/// handler, without sockets) on a clock the test moves.
final class Harness: @unchecked Sendable {
    let directory: URL
    let service: CoordinatorService
    let routes: CoordinatorRoutes
    private let clockBox: ClockBox
    let admin: CoordinatorService.AdminSecrets
    let plan: Plan

    final class ClockBox: @unchecked Sendable {
        var now = 1_900_000_000.0
    }

    var now: Double {
        get { clockBox.now }
        set { clockBox.now = newValue }
    }

    init(identityLockout: FailureLimiter.Policy = .init(limit: 5, window: 600, lockout: 900),
         addressLockout: FailureLimiter.Policy = .init(limit: 20, window: 600, lockout: 900),
         plan: Plan? = nil) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sigilo-coord-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        service = try CoordinatorService(directory: directory, identityLockout: identityLockout, addressLockout: addressLockout,
                                         secretsKey: Self.secretsKey)
        let box = ClockBox()
        clockBox = box
        routes = CoordinatorRoutes(service: service, clock: { box.now })
        admin = try service.createAdmin(now: box.now)
        self.plan = plan ?? Plan(labels: ["a", "b", "c"], bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                                 maximumEpsilon: 50, placement: .central, minimumTenants: 2, roundSeconds: 600,
                                 serverOptimizer: .init(kind: .fedavg))
        try service.setPlan(self.plan, now: box.now)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    /// The key sealing the admin's TOTP secret in tests (a real state keeps it in a file outside the directory).
    static let secretsKey = [UInt8](repeating: 0x5e, count: 32)

    /// Enrols a tenant through the service; returns its id and key.
    func enrollTenant(_ name: String) throws -> (id: String, key: Ed25519.KeyPair) {
        let key = try Ed25519.KeyPair.generate()
        let token = try service.invite(name: name, now: now)
        return (try service.enroll(token: token, publicKey: key.publicKey, now: now), key)
    }

    /// A request as the server would parse it.
    func request(_ method: String, _ target: String, body: [UInt8] = [], headers: [(String, String)] = []) -> HTTPRequest {
        HTTPRequest(method: method, target: target, headers: headers.map { (name: $0.0.lowercased(), value: $0.1) }, body: body, keepAlive: true)
    }

    func send(_ method: String, _ target: String, body: [UInt8] = [], headers: [(String, String)] = [], from peer: String = "10.0.0.1:5000") -> HTTPResponse {
        routes.handle(request(method, target, body: body, headers: headers), peer: peer)
    }

    /// Headers of a request signed by a tenant at the harness's time.
    func signed(_ method: String, _ target: String, body: [UInt8] = [], tenant: String, key: Ed25519.KeyPair) throws -> [(String, String)] {
        try RequestSigning.sign(method: method, path: target, body: body, keyId: tenant, key: key, timestamp: Int64(now), nonce: secureRandomBytes(16))
    }

    /// Admin headers with a TOTP code valid now; the clock moves to a fresh step first (codes are single-use).
    func adminHeaders() -> [(String, String)] {
        now += 30
        return [("Authorization", "Bearer \(admin.credential)"), ("Sigilo-TOTP", admin.totp.code(step: TOTP.step(at: now)))]
    }

    /// Every row of the tables that hold state (not the audit log, nonces or counters).
    func snapshot() throws -> [String] {
        let database = try Database(path: directory.appendingPathComponent(CoordinatorService.databaseName).path)
        var out = [String]()
        // Not the nonces nor a tenant's last contact: both record that some earlier request was accepted (written with a later batch).
        for table in ["tenants", "enrollment_tokens", "plans", "models", "rounds", "submissions", "ledger", "optimizer", "credentials", "sessions"] {
            let columns = table == "tenants"
                ? "id, name, public_key, status, enrolled_at, revoked_at, last_address, agreement_key, weight_cap, missed_rounds" : "*"
            try database.run("SELECT \(columns) FROM \(table) ORDER BY rowid") { row in
                out.append(table + ":" + (0..<row.columnCount).map { Hex.encode(row.blob($0)) }.joined(separator: "|"))
            }
        }
        return out
    }

    static func json(_ response: HTTPResponse) -> [String: Any] {
        ((try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]) ?? [:]
    }
}
