import Foundation
import SigiloCrypto
import SigiloFederation
import SigiloHTTP
import SigiloPrivacy
import SigiloProtocol
import SigiloTLS

/// A refusal or failure talking to the coordinator.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let status: Int?
    public let code: String
    public let message: String
    public var description: String { status.map { "\($0) \(code): \(message)" } ?? "\(code): \(message)" }

    public init(status: Int?, code: String, message: String) {
        self.status = status
        self.code = code
        self.message = message
    }
}

/// The tenant side of protocol/PROTOCOL.md: signs every request with the
/// tenant's Ed25519 key. Synchronous by design: the tenant CLI does one thing
/// at a time. Speaks HTTP/1.1 over one kept-alive connection (`HTTPClient`),
/// HTTPS when the URL says so, trusting `caFile` or else the system's CAs.
public final class CoordinatorClient: @unchecked Sendable {
    public let baseURL: URL
    public private(set) var keyId: String
    /// The coordinator's public key, pinned at enrolment; models must be signed with it.
    public var coordinatorKey: [UInt8]?
    private(set) var key: Ed25519.KeyPair
    /// Why the coordinator had no round for this tenant at the last `currentRound` (its `Sigilo-No-Round` header).
    public private(set) var noRoundReason: String?
    /// The connection, or why there cannot be one (a bad URL, an unreadable CA file): reported by the first request.
    let http: Result<HTTPClient, ClientError>
    let timeout: Double
    let clock: () -> Int64

    public init(baseURL: URL, keyId: String, key: Ed25519.KeyPair, timeout: Double = 30, caFile: String? = nil,
                clock: @escaping () -> Int64 = { Int64(Date().timeIntervalSince1970) }) {
        self.baseURL = baseURL
        self.keyId = keyId
        self.key = key
        self.timeout = timeout
        self.clock = clock
        http = Self.connection(to: baseURL, caFile: caFile, timeout: timeout)
    }

    /// One kept-alive connection to `url`: HTTPS trusting `caFile` (else the system's CAs), or plain HTTP.
    static func connection(to url: URL, caFile: String?, timeout: Double) -> Result<HTTPClient, ClientError> {
        Result {
            guard let scheme = url.scheme, scheme == "http" || scheme == "https", let host = url.host, !host.isEmpty else {
                throw ClientError(status: nil, code: "bad_url", message: "\(url.absoluteString) is not an http(s) URL with a host")
            }
            let port = url.port ?? (scheme == "https" ? 443 : 80)
            guard (1...65535).contains(port) else { throw ClientError(status: nil, code: "bad_url", message: "port \(port) is out of range") }
            let channels: any ClientChannelFactory
            if scheme == "https" {
                do { channels = try TLSClientChannels(caFile: caFile) } catch {
                    throw ClientError(status: nil, code: "tls_setup", message: "\(error)")
                }
            } else {
                channels = PlainChannels()
            }
            return HTTPClient(host: host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port: UInt16(port), timeout: timeout, channels: channels)
        }.mapError { $0 as? ClientError ?? ClientError(status: nil, code: "bad_url", message: "\($0)") }
    }

    /// The key pair (tests build forged and stale clients from it).
    public var keyForTests: Ed25519.KeyPair { key }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: [UInt8]
    }

    /// Sends one signed request; error statuses become `ClientError`s with the server's code.
    public func send(_ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil) throws -> Response {
        let http = try http.get()
        let rng = SecureRandom()
        let nonce = (0..<16).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        var headers = try RequestSigning.sign(method: method, path: path, body: body, keyId: keyId, key: key, timestamp: clock(), nonce: nonce)
        if let contentType { headers.append(("Content-Type", contentType)) }
        let response = try Self.exchange(http, url: baseURL, method: method, path: path, headers: headers, body: body)
        var fields = [String: String]()
        for (name, value) in response.headers where fields[name] == nil { fields[name] = value }
        return Response(status: response.status, headers: fields, body: response.body)
    }

    /// One request and its 2xx answer: a failed connection becomes "unreachable" with a hint
    /// (`trusting`: as for `hint`), an error status a `ClientError` with the server's code and message.
    static func exchange(_ http: HTTPClient, url: URL, trusting: String = defaultTrust, method: String, path: String,
                         headers: [(String, String)], body: [UInt8]) throws -> HTTPClientResponse {
        let response: HTTPClientResponse
        do { response = try http.send(method: method, target: path, headers: headers, body: body) } catch {
            throw ClientError(status: nil, code: "unreachable", message: "\(url.absoluteString): \(error)" + hint(for: "\(error)", url: url, trusting: trusting))
        }
        guard (200..<300).contains(response.status) else {
            let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
            throw ClientError(status: response.status, code: object?["error"] as? String ?? "http_\(response.status)",
                              message: object?["message"] as? String ?? String(decoding: response.body.prefix(200), as: UTF8.self))
        }
        return response
    }

    static let defaultTrust = "sigilo-tenant enroll --coordinator-ca PEM"

    /// What to try when a connection fails in a way that usually means a
    /// mistaken URL scheme or an untrusted certificate, in the operator's terms.
    /// `trusting`: the command and option that trust a certificate.
    static func hint(for error: String, url: URL, trusting: String = defaultTrust) -> String {
        let lowered = error.lowercased()
        if url.scheme == "https", lowered.contains("certificate") {
            return " (a coordinator with its own CA or a self-signed certificate is trusted with '\(trusting)')"
        }
        if url.scheme == "https", lowered.contains("wrong version number") || lowered.contains("packet length") || lowered.contains("record layer") {
            return " (the coordinator answered in plain HTTP: is the URL meant to be http://?)"
        }
        // A TLS server meeting plain HTTP answers garbage, resets, or closes while the request is still being sent.
        if url.scheme == "http", ["reading the response", "reset", "malformed", "connection lost"].contains(where: lowered.contains) {
            return " (no HTTP answer: if the coordinator serves HTTPS, the URL must start with https://)"
        }
        return ""
    }

    /// Enrols this client's key with a one-time token; remembers the tenant id.
    @discardableResult
    public func enroll(token: String) throws -> String {
        let body = Array("{\"token\":\"\(token.filter { $0.isLetter || $0.isNumber || $0 == "_" })\",\"public_key\":\"\(Hex.encode(key.publicKey))\"}".utf8)
        let saved = keyId
        keyId = "enroll"
        defer { if keyId == "enroll" { keyId = saved } }
        let response = try send("POST", "/v1/enroll", body: body, contentType: "application/json")
        guard let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any], let id = object["tenant_id"] as? String,
              let keyHex = object["coordinator_public_key"] as? String, let pinned = Hex.decode(keyHex), pinned.count == 32 else {
            throw ClientError(status: response.status, code: "bad_response", message: "enrolment answer lacks tenant_id or coordinator_public_key")
        }
        keyId = id
        coordinatorKey = pinned
        return id
    }

    /// Replaces this tenant's identity key at the coordinator (signed by the
    /// current key, proven by the new one); later requests sign with `newKey`.
    public func rotateKey(to newKey: Ed25519.KeyPair) throws {
        let proof = try newKey.sign(KeyRotation.message(tenant: keyId, oldKey: key.publicKey, newKey: newKey.publicKey))
        let body = #"{"public_key":"\#(Hex.encode(newKey.publicKey))","proof":"\#(Hex.encode(proof))"}"#
        _ = try send("POST", "/v1/tenant/key", body: Array(body.utf8), contentType: "application/json")
        key = newKey
    }

    public func plan() throws -> Plan {
        do { return try Plan.decode(Data(try send("GET", "/v1/plan").body)) } catch let e as PlanError {
            throw ClientError(status: nil, code: "bad_plan", message: e.description)
        }
    }

    public struct RoundInfo: Sendable, Equatable {
        public var round: UInt64
        public var modelVersion: UInt64
        public var submitted: Bool
        /// Whether the round waits for something from this tenant now (its
        /// update; at secure placement, its answer to the current stage).
        public var awaited: Bool
        /// Whether it already answered what the round asks now (its update; a secure round's current stage).
        public var answered: Bool
        public var dimension: Int
        /// Secure placement: the round as this tenant is told of it at its current stage.
        public var secure: SecureAggregation.RoundView?
    }

    /// The open round, or nil. With `wait` > 0 the coordinator answers as soon
    /// as a round (or a secure round's stage) awaits this tenant, or after
    /// `wait` seconds (at most 30, and at most half the request timeout).
    public func currentRound(wait: Double = 0) throws -> RoundInfo? {
        let seconds = Int(min(30, wait, timeout / 2).rounded(.down))
        let response = try send("GET", seconds > 0 ? "/v1/rounds/current?wait=\(seconds)" : "/v1/rounds/current")
        guard response.status == 200 else {
            noRoundReason = response.headers.first { $0.key.lowercased() == "sigilo-no-round" }?.value
            return nil
        }
        guard let o = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any],
              let round = o["round"] as? Int, let version = o["model_version"] as? Int, let dimension = o["dimension"] as? Int else {
            throw ClientError(status: 200, code: "bad_response", message: "round answer is malformed")
        }
        let submitted = o["submitted"] as? Bool ?? false
        var secure: SecureAggregation.RoundView?
        if let view = o["secure"] as? [String: Any] {
            do {
                secure = try SecureRoundWire.view(view, round: UInt64(round), modelVersion: UInt64(version))
                for i in secure!.shares.indices { secure!.shares[i].to = keyId }
            } catch let e as SecureRoundWire.Malformed {
                throw ClientError(status: 200, code: "bad_response", message: "round answer's secure part is malformed: \(e.field)")
            } catch let e as SecureAggregationError {
                throw ClientError(status: 200, code: "bad_response", message: "round answer's secure parameters are invalid: \(e)")
            }
        }
        return RoundInfo(round: UInt64(round), modelVersion: UInt64(version), submitted: submitted,
                         awaited: o["awaited"] as? Bool ?? !submitted, answered: o["answered"] as? Bool ?? submitted, dimension: dimension, secure: secure)
    }

    /// Secure round, stage 1: this tenant's signed round keys.
    public func advertise(_ ad: SecureAggregation.Advertisement, round: UInt64) throws {
        _ = try send("POST", "/v1/rounds/\(round)/keys", body: Array(SecureRoundWire.advertisement(ad).utf8), contentType: "application/json")
    }

    /// Secure round, stage 2: the shares encrypted to each neighbour.
    public func sendShares(_ shares: [SecureAggregation.EncryptedShare], round: UInt64) throws {
        _ = try send("POST", "/v1/rounds/\(round)/shares", body: Array(SecureRoundWire.shares(shares).utf8), contentType: "application/json")
    }

    /// Secure round, stage 4: the shares this tenant reveals.
    public func reveal(_ shares: [SecureAggregation.RevealedShare], round: UInt64) throws {
        _ = try send("POST", "/v1/rounds/\(round)/unmask", body: Array(SecureRoundWire.reveals(shares).utf8), contentType: "application/json")
    }

    /// How `round` ended, as the coordinator signed it: its state (open,
    /// closed or abandoned) and the last secure stage it began.
    public func roundOutcome(_ round: UInt64) throws -> (state: String, stage: String?) {
        guard let coordinatorKey else { throw ClientError(status: nil, code: "no_coordinator_key", message: "no pinned coordinator key: enrol first") }
        let response = try send("GET", "/v1/rounds/\(round)/outcome")
        guard let o = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any], o["round"] as? Int == Int(round),
              let state = o["state"] as? String, ["open", "closed", "abandoned"].contains(state) else {
            throw ClientError(status: response.status, code: "bad_response", message: "round \(round)'s outcome is malformed")
        }
        let stage = o["secure_stage"] as? String
        do {
            try RoundOutcome.verify(round: round, state: state, stage: stage, signature: o["signature"] as? String, coordinatorKey: coordinatorKey)
        } catch let e as ProtocolError {
            throw ClientError(status: response.status, code: "outcome_signature_invalid", message: e.message)
        }
        return (state, stage)
    }

    /// A model file, verified against its SHA-256 and the coordinator's signature over both.
    public func model(version: UInt64) throws -> [UInt8] {
        try verifiedModel(try send("GET", "/v1/models/\(version)"), version: version)
    }

    /// The newest published model and its version, verified the same way: the
    /// signature covers the version the coordinator names, so it cannot pass
    /// off an old model as new without the pinned key.
    public func latestModel() throws -> (version: UInt64, file: [UInt8]) {
        let response = try send("GET", "/v1/models/latest")
        guard let named = response.headers[ModelProvenance.versionHeader], let version = UInt64(named) else {
            throw ClientError(status: response.status, code: "bad_response", message: "the latest model's answer does not name its version")
        }
        return (version, try verifiedModel(response, version: version))
    }

    private func verifiedModel(_ response: Response, version: UInt64) throws -> [UInt8] {
        guard let coordinatorKey else {
            throw ClientError(status: nil, code: "no_coordinator_key", message: "no pinned coordinator key: enrol first")
        }
        do {
            try ModelProvenance.verify(file: response.body, version: version, sha256: response.headers[ModelProvenance.digestHeader],
                                       signature: response.headers[ModelProvenance.signatureHeader], coordinatorKey: coordinatorKey)
        } catch let e as ProtocolError {
            throw ClientError(status: response.status, code: e.code == .badSignature ? "model_signature_invalid" : "model_digest_mismatch", message: e.message)
        }
        return response.body
    }

    /// Submits an update; returns whether the coordinator saw it as a duplicate.
    public func submit(_ update: UpdateEnvelope) throws -> Bool {
        try submit(encoded: update.encoded(), round: update.round)
    }

    /// Submits an update's wire bytes as they are (a tenant resending exactly what it sent before).
    public func submit(encoded: [UInt8], round: UInt64) throws -> Bool {
        let response = try send("POST", "/v1/rounds/\(round)/updates", body: encoded, contentType: "application/octet-stream")
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        return object?["duplicate"] as? Bool ?? false
    }
}
