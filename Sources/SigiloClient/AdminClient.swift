import Foundation
import SigiloCrypto
import SigiloHTTP

/// The administrator's side of protocol/PROTOCOL.md, "Administration": a
/// session opened with the admin credential and a TOTP code, then requests
/// carrying that session. Credentials travel only over HTTPS, or plain HTTP to
/// a loopback address (a coordinator on this machine).
public final class AdminClient: @unchecked Sendable {
    public let baseURL: URL
    /// "Session TOKEN" once a session is open or restored.
    public var session: String?
    let http: Result<HTTPClient, ClientError>

    public init(baseURL: URL, caFile: String? = nil, session: String? = nil, timeout: Double = 30) {
        self.baseURL = baseURL
        self.session = session
        let loopback = ["127.0.0.1", "::1", "localhost"].contains(baseURL.host?.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) ?? "")
        if baseURL.scheme == "http", !loopback {
            http = .failure(ClientError(status: nil, code: "insecure_url",
                                        message: "\(baseURL.absoluteString): admin credentials go only over https (or http to this machine's loopback)"))
        } else {
            http = CoordinatorClient.connection(to: baseURL, caFile: caFile, timeout: timeout)
        }
    }

    /// Opens a session (POST /v1/admin/session); returns the token and its expiry.
    public func openSession(credential: String, totpCode: String) throws -> (token: String, expires: Double) {
        let object = try json(send("POST", "/v1/admin/session", authorization: [("Authorization", "Bearer \(credential)"), ("Sigilo-TOTP", totpCode)]))
        guard let token = object["session"] as? String, let expires = object["expires"] as? Double else {
            throw ClientError(status: nil, code: "bad_answer", message: "the session answer lacks \"session\" or \"expires\"")
        }
        session = token
        return (token, expires)
    }

    /// The session's id as `session list` shows it: the first 16 hex digits of the SHA-256 of its
    /// token's secret (a token is "CREDENTIAL-ID.SECRET").
    public static func sessionID(_ token: String) -> String {
        let secret = token.split(separator: ".", maxSplits: 1).last.map(String.init) ?? token
        return String(Hex.encode(SHA256.hash(Array(secret.utf8))).prefix(16))
    }

    /// A request with the session; error statuses become `ClientError`s with the server's code.
    public func send(_ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil) throws -> [UInt8] {
        guard let session else { throw ClientError(status: nil, code: "no_session", message: "no admin session: log in first") }
        var headers = [("Authorization", "Session \(session)")]
        if let contentType { headers.append(("Content-Type", contentType)) }
        return try send(method, path, body: body, authorization: headers)
    }

    /// `send`, the body read as a JSON object.
    public func json(_ body: [UInt8]) throws -> [String: Any] {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw ClientError(status: nil, code: "bad_answer", message: "the coordinator's answer is not a JSON object")
        }
        return object
    }

    private func send(_ method: String, _ path: String, body: [UInt8] = [], authorization headers: [(String, String)]) throws -> [UInt8] {
        try CoordinatorClient.exchange(http.get(), url: baseURL, trusting: "sigilo-coordinator admin login --coordinator-ca PEM",
                                       method: method, path: path, headers: headers, body: body).body
    }
}
