import Foundation
import SigiloCLI
import SigiloCrypto

/// The WhatsApp Business Platform (Cloud API) webhook: its signature and the
/// parts of its payload Sigilo reads. Pure: bytes in, values or errors out.
public enum WhatsAppWebhook {
    /// An incoming text message.
    public struct TextMessage: Equatable, Sendable {
        /// The sender's WhatsApp id (their number).
        public var from: String
        /// WhatsApp's message id ("wamid...."): what an attendant's feedback names.
        public var id: String
        public var timestamp: Int
        public var body: String
    }

    public struct Payload: Equatable, Sendable {
        public var texts: [TextMessage] = []
        /// Messages of other types (images, audio, reactions...): acknowledged, not classified.
        public var otherMessages = 0
        /// Delivery and read receipts: ignored.
        public var statuses = 0
    }

    public struct Refusal: Error, CustomStringConvertible, Equatable, Sendable {
        public let code: String
        public let description: String
    }

    /// Checks `X-Hub-Signature-256` ("sha256=" and the hex HMAC-SHA256 of the
    /// raw body under the app secret) in constant time.
    public static func verifySignature(_ header: String?, body: [UInt8], appSecret: [UInt8]) throws {
        guard let header else { throw Refusal(code: "unsigned", description: "missing X-Hub-Signature-256") }
        guard header.hasPrefix("sha256="), let given = Hex.decode(String(header.dropFirst(7))), given.count == SHA256.byteCount else {
            throw Refusal(code: "malformed_signature", description: "X-Hub-Signature-256 must be sha256= and 64 hex digits")
        }
        guard constantTimeEqual(HMACSHA256.authenticate(body, key: appSecret), given) else {
            throw Refusal(code: "bad_signature", description: "X-Hub-Signature-256 does not match the body under the app secret")
        }
    }

    /// The GET verification handshake: the challenge to echo, or why not.
    public static func verificationChallenge(query: Substring, verifyToken: [UInt8]) throws -> String {
        var fields = [String: String]()
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(parts[0]).removingPercentEncoding ?? ""
            let value = parts.count > 1 ? (String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "") : ""
            fields[name] = value
        }
        guard fields["hub.mode"] == "subscribe" else { throw Refusal(code: "bad_mode", description: "hub.mode must be subscribe") }
        guard let token = fields["hub.verify_token"], constantTimeEqual(SHA256.hash(Array(token.utf8)), SHA256.hash(verifyToken)) else {
            throw Refusal(code: "bad_verify_token", description: "hub.verify_token does not match")
        }
        guard let challenge = fields["hub.challenge"], !challenge.isEmpty, challenge.utf8.count <= 256 else {
            throw Refusal(code: "bad_challenge", description: "hub.challenge must be 1 to 256 bytes")
        }
        return challenge
    }

    /// Reads a notification; every field Sigilo uses is checked, and an error names its path.
    public static func parse(_ body: [UInt8], maximumTextBytes: Int = ImportCommand.maximumTextBytes) throws -> Payload {
        func fail(_ path: String, _ why: String) -> Refusal { Refusal(code: "bad_payload", description: "\(path): \(why)") }
        guard let root = (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] else {
            throw fail("body", "not a JSON object")
        }
        guard root["object"] as? String == "whatsapp_business_account" else { throw fail("object", "must be \"whatsapp_business_account\"") }
        guard let entries = root["entry"] as? [Any] else { throw fail("entry", "missing or not an array") }
        var payload = Payload()
        for (e, entry) in entries.enumerated() {
            guard let entry = entry as? [String: Any], let changes = entry["changes"] as? [Any] else {
                throw fail("entry[\(e)].changes", "missing or not an array")
            }
            for (c, change) in changes.enumerated() {
                let path = "entry[\(e)].changes[\(c)].value"
                guard let change = change as? [String: Any], let value = change["value"] as? [String: Any] else { throw fail(path, "missing or not an object") }
                if let statuses = value["statuses"] {
                    guard let list = statuses as? [Any] else { throw fail("\(path).statuses", "not an array") }
                    payload.statuses += list.count
                }
                guard let messages = value["messages"] else { continue }
                guard let list = messages as? [Any] else { throw fail("\(path).messages", "not an array") }
                for (m, item) in list.enumerated() {
                    let at = "\(path).messages[\(m)]"
                    guard let message = item as? [String: Any] else { throw fail(at, "not an object") }
                    func string(_ name: String, limit: Int) throws -> String {
                        guard let s = message[name] as? String, !s.isEmpty, s.utf8.count <= limit else {
                            throw fail("\(at).\(name)", "missing, empty or longer than \(limit) bytes")
                        }
                        return s
                    }
                    let from = try string("from", limit: 64), id = try string("id", limit: 256), type = try string("type", limit: 32)
                    guard let timestamp = Int(try string("timestamp", limit: 20)), timestamp >= 0 else { throw fail("\(at).timestamp", "not a non-negative integer") }
                    guard type == "text" else { payload.otherMessages += 1; continue }
                    guard let text = message["text"] as? [String: Any], let body = text["body"] as? String else { throw fail("\(at).text.body", "missing") }
                    guard body.utf8.count <= maximumTextBytes else { throw fail("\(at).text.body", "longer than \(maximumTextBytes) bytes") }
                    payload.texts.append(TextMessage(from: from, id: id, timestamp: timestamp, body: body))
                }
            }
        }
        return payload
    }
}
