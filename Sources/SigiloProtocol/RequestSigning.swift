import SigiloCrypto

/// The signed-request scheme (protocol/PROTOCOL.md, "Signed requests").
///
/// Every request carries five headers; the signature covers the method, the
/// path with its query, the key id, the timestamp, the nonce and the body's
/// SHA-256, so none of them can be changed or replayed elsewhere.
public enum RequestSigning {
    public static let keyIdHeader = "sigilo-key-id"
    public static let timestampHeader = "sigilo-timestamp"
    public static let nonceHeader = "sigilo-nonce"
    public static let contentHeader = "sigilo-content-sha256"
    public static let signatureHeader = "sigilo-signature"
    /// Accepted clock difference between tenant and coordinator, in seconds.
    public static let defaultSkewWindow: Int64 = 300

    /// The exact bytes that are signed.
    public static func canonicalMessage(method: String, path: String, keyId: String, timestamp: Int64,
                                        nonce: String, contentSHA256: String) -> [UInt8] {
        Array("sigilo-request-v1\n\(method)\n\(path)\n\(keyId)\n\(timestamp)\n\(nonce)\n\(contentSHA256)".utf8)
    }

    /// The headers to send with a request signed by `key`.
    public static func sign(method: String, path: String, body: [UInt8], keyId: String, key: Ed25519.KeyPair,
                            timestamp: Int64, nonce: [UInt8]) throws -> [(String, String)] {
        precondition(nonce.count == 16, "a nonce is 16 random bytes")
        let content = Hex.encode(SHA256.hash(body))
        let nonceHex = Hex.encode(nonce)
        let signature = try key.sign(canonicalMessage(method: method, path: path, keyId: keyId, timestamp: timestamp,
                                                      nonce: nonceHex, contentSHA256: content))
        return [(keyIdHeader, keyId), (timestampHeader, String(timestamp)), (nonceHeader, nonceHex),
                (contentHeader, content), (signatureHeader, Hex.encode(signature))]
    }

    /// The parts of a received request that verification looks at.
    public struct Credentials: Equatable, Sendable {
        public var keyId: String
        public var timestamp: Int64
        public var nonce: String
        public var contentSHA256: String
        public var signature: [UInt8]
    }

    /// Reads and checks the form of the five headers (`header` returns a
    /// header's value by lower-case name). Does not verify anything yet.
    public static func credentials(_ header: (String) -> String?) throws -> Credentials {
        func required(_ name: String) throws -> String {
            guard let value = header(name) else { throw ProtocolError(.missingHeader, "missing header \(name)") }
            return value
        }
        let keyId = try required(keyIdHeader)
        guard (1...64).contains(keyId.utf8.count), keyId.utf8.allSatisfy({ $0 == 0x2d || $0 == 0x5f || (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) }) else {
            throw ProtocolError(.malformedHeader, "\(keyIdHeader) must be 1-64 characters of a-z, 0-9, '-' or '_'")
        }
        let rawTimestamp = try required(timestampHeader)
        guard let timestamp = Int64(rawTimestamp), timestamp > 0 else {
            throw ProtocolError(.malformedHeader, "\(timestampHeader) must be Unix seconds, got \"\(rawTimestamp.prefix(32))\"")
        }
        let nonce = try required(nonceHeader)
        guard nonce.utf8.count == 32, Hex.decode(nonce) != nil, nonce == nonce.lowercased() else {
            throw ProtocolError(.malformedHeader, "\(nonceHeader) must be 32 lower-case hex digits")
        }
        let content = try required(contentHeader)
        guard content.utf8.count == 64, Hex.decode(content) != nil, content == content.lowercased() else {
            throw ProtocolError(.malformedHeader, "\(contentHeader) must be 64 lower-case hex digits")
        }
        let rawSignature = try required(signatureHeader)
        guard rawSignature.utf8.count == 128, let signature = Hex.decode(rawSignature) else {
            throw ProtocolError(.malformedHeader, "\(signatureHeader) must be 128 hex digits")
        }
        return Credentials(keyId: keyId, timestamp: timestamp, nonce: nonce, contentSHA256: content, signature: signature)
    }

    /// Verifies freshness, the body digest and the signature, cheapest first.
    /// Replay (a nonce seen before) is the caller's check: it owns the store.
    public static func verify(_ c: Credentials, method: String, path: String, body: [UInt8], publicKey: [UInt8],
                              now: Int64, skewWindow: Int64 = defaultSkewWindow) throws {
        try verify(c, method: method, path: path, bodyMatches: bodyMatches(c, body), publicKey: publicKey, now: now, skewWindow: skewWindow)
    }

    /// As `verify`, with the body's digest compared beforehand (`bodyMatches`),
    /// so that hashing a large body can happen outside a caller's lock.
    public static func verify(_ c: Credentials, method: String, path: String, bodyMatches: Bool, publicKey: [UInt8],
                              now: Int64, skewWindow: Int64 = defaultSkewWindow) throws {
        try fresh(c, now: now, skewWindow: skewWindow)
        guard bodyMatches else { throw ProtocolError(.bodyDigestMismatch, "body does not match \(contentHeader)") }
        try signed(c, method: method, path: path, publicKey: publicKey)
    }

    /// Whether `body` is the one the credentials declare (constant time).
    public static func bodyMatches(_ c: Credentials, _ body: [UInt8]) -> Bool {
        constantTimeEqual(SHA256.hash(body), Hex.decode(c.contentSHA256)!)
    }

    /// Verifies what can be verified before the body arrives: freshness, and
    /// the signature (which covers the body's declared digest, not the body).
    /// A server uses it to refuse a forged or stale upload without reading it;
    /// `verify` must still run on the whole request.
    public static func verifyHead(_ c: Credentials, method: String, path: String, publicKey: [UInt8],
                                  now: Int64, skewWindow: Int64 = defaultSkewWindow) throws {
        try fresh(c, now: now, skewWindow: skewWindow)
        try signed(c, method: method, path: path, publicKey: publicKey)
    }

    private static func fresh(_ c: Credentials, now: Int64, skewWindow: Int64) throws {
        guard abs(now - c.timestamp) <= skewWindow else {
            throw ProtocolError(.staleTimestamp, "request timestamp is \(c.timestamp - now) s from the coordinator's clock (window ±\(skewWindow) s)")
        }
    }

    private static func signed(_ c: Credentials, method: String, path: String, publicKey: [UInt8]) throws {
        let message = canonicalMessage(method: method, path: path, keyId: c.keyId, timestamp: c.timestamp,
                                       nonce: c.nonce, contentSHA256: c.contentSHA256)
        guard Ed25519.verify(signature: c.signature, message: message, publicKey: publicKey) else {
            throw ProtocolError(.badSignature, "signature does not verify for key \(c.keyId)")
        }
    }
}

/// What the coordinator signs for each published model, so a tenant can tell
/// that a model really comes from the coordinator it enrolled with.
public enum ModelProvenance {
    public static let signatureHeader = "sigilo-model-signature"
    public static let digestHeader = "sigilo-model-sha256"
    public static let versionHeader = "sigilo-model-version"

    public static func message(version: UInt64, sha256: String) -> [UInt8] {
        Array("sigilo-model-v1\n\(version)\n\(sha256)".utf8)
    }

    /// Checks a received model file against its digest and the coordinator's signature.
    public static func verify(file: [UInt8], version: UInt64, sha256: String?, signature: String?, coordinatorKey: [UInt8]) throws {
        let actual = Hex.encode(SHA256.hash(file))
        guard let sha256, constantTimeEqual(Array(sha256.utf8), Array(actual.utf8)) else {
            throw ProtocolError(.checksumMismatch, "model \(version) does not match its SHA-256")
        }
        guard let signature, let bytes = Hex.decode(signature),
              Ed25519.verify(signature: bytes, message: message(version: version, sha256: actual), publicKey: coordinatorKey) else {
            throw ProtocolError(.badSignature, "model \(version) is not signed by the coordinator this tenant enrolled with")
        }
    }
}

/// How a round ended, as the coordinator states it (GET
/// /v1/rounds/ROUND/outcome), signed with its key: a tenant withdraws the
/// charge of a secure round abandoned before its unmask stage on this
/// statement, and a false one is evidence against the coordinator that made it.
public enum RoundOutcome {
    /// `state`: open, closed or abandoned; `stage`: the last secure stage the round began (nil for a plain round).
    public static func message(round: UInt64, state: String, stage: String?) -> [UInt8] {
        Array("sigilo-round-outcome-v1\n\(round)\n\(state)\n\(stage ?? "-")".utf8)
    }

    public static func verify(round: UInt64, state: String, stage: String?, signature: String?, coordinatorKey: [UInt8]) throws {
        guard let signature, let bytes = Hex.decode(signature),
              Ed25519.verify(signature: bytes, message: message(round: round, state: state, stage: stage), publicKey: coordinatorKey) else {
            throw ProtocolError(.badSignature, "round \(round)'s outcome is not signed by the coordinator this tenant enrolled with")
        }
    }
}

/// A tenant replacing its identity key: the request is signed by the old key
/// (as every tenant request), and the body carries the new key with this
/// message signed by the new key, so the coordinator accepts only a key whose
/// holder also holds the old one, for this tenant, replacing exactly that key.
public enum KeyRotation {
    public static func message(tenant: String, oldKey: [UInt8], newKey: [UInt8]) -> [UInt8] {
        Array("sigilo-key-rotation-v1\n\(tenant)\n\(Hex.encode(oldKey))\n\(Hex.encode(newKey))".utf8)
    }
}
