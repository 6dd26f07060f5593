/// A protocol violation, with the HTTP status it renders to and a precise message.
public struct ProtocolError: Error, CustomStringConvertible, Equatable, Sendable {
    public enum Code: String, Sendable {
        case malformedUpdate = "malformed_update"
        case checksumMismatch = "checksum_mismatch"
        case unsupportedVersion = "unsupported_version"
        case nonFiniteValue = "non_finite_value"
        case missingHeader = "missing_header"
        case malformedHeader = "malformed_header"
        case staleTimestamp = "stale_timestamp"
        case bodyDigestMismatch = "body_digest_mismatch"
        case badSignature = "bad_signature"
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// 401 for authentication failures, 400 for everything malformed.
    public var httpStatus: Int {
        switch code {
        case .staleTimestamp, .badSignature, .bodyDigestMismatch: return 401
        default: return 400
        }
    }
}
