internal import COpenSSL

/// Why a key or signature operation failed.
public struct CryptoError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Ed25519 signatures through OpenSSL's EVP interface (RFC 8032; never hand-written).
public enum Ed25519 {
    public static let publicKeyBytes = 32
    public static let privateKeyBytes = 32
    public static let signatureBytes = 64

    /// A key pair. The private key is the 32-byte RFC 8032 seed.
    public struct KeyPair: Sendable {
        public let privateKey: [UInt8]
        public let publicKey: [UInt8]

        /// A fresh key pair from OpenSSL's CSPRNG.
        public static func generate() throws -> KeyPair {
            var seed = [UInt8](repeating: 0, count: privateKeyBytes)
            guard RAND_bytes(&seed, Int32(seed.count)) == 1 else { throw CryptoError("no secure randomness for a key") }
            return try KeyPair(privateKey: seed)
        }

        /// The key pair of a 32-byte private key (seed).
        public init(privateKey: [UInt8]) throws {
            guard privateKey.count == privateKeyBytes else {
                throw CryptoError("an Ed25519 private key is \(privateKeyBytes) bytes, got \(privateKey.count)")
            }
            guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, privateKey, privateKey.count) else {
                throw CryptoError("OpenSSL rejected the Ed25519 private key")
            }
            defer { EVP_PKEY_free(key) }
            var length = publicKeyBytes
            var pub = [UInt8](repeating: 0, count: publicKeyBytes)
            guard EVP_PKEY_get_raw_public_key(key, &pub, &length) == 1, length == publicKeyBytes else {
                throw CryptoError("OpenSSL could not derive the Ed25519 public key")
            }
            self.privateKey = privateKey
            self.publicKey = pub
        }

        /// The signature of `message`.
        public func sign(_ message: [UInt8]) throws -> [UInt8] {
            guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, privateKey, privateKey.count) else {
                throw CryptoError("OpenSSL rejected the Ed25519 private key")
            }
            defer { EVP_PKEY_free(key) }
            guard let context = EVP_MD_CTX_new() else { throw CryptoError("OpenSSL out of memory") }
            defer { EVP_MD_CTX_free(context) }
            guard EVP_DigestSignInit(context, nil, nil, nil, key) == 1 else { throw CryptoError("EVP_DigestSignInit failed") }
            var length = signatureBytes
            var signature = [UInt8](repeating: 0, count: signatureBytes)
            guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1, length == signatureBytes else {
                throw CryptoError("EVP_DigestSign failed")
            }
            return signature
        }
    }

    /// Whether `signature` is a valid signature of `message` under `publicKey`.
    public static func verify(signature: [UInt8], message: [UInt8], publicKey: [UInt8]) -> Bool {
        guard signature.count == signatureBytes, publicKey.count == publicKeyBytes,
              let key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, publicKey, publicKey.count) else { return false }
        defer { EVP_PKEY_free(key) }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, key) == 1 else { return false }
        return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
    }
}

/// Hexadecimal encoding and decoding of byte strings.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String { SHA256.hex(bytes) }

    /// The bytes of an even-length hexadecimal string, or nil.
    public static func decode(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(chars.count / 2)
        func value(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x61...0x66: return c - 0x61 + 10
            case 0x41...0x46: return c - 0x41 + 10
            default: return nil
            }
        }
        var i = 0
        while i < chars.count {
            guard let hi = value(chars[i]), let lo = value(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
