internal import COpenSSL

/// AES-256-GCM authenticated encryption through OpenSSL (never hand-written).
///
/// Sealed form: 12-byte random nonce || ciphertext || 16-byte tag. A fresh
/// random nonce per message; with 96-bit nonces a key can seal 2^32 messages
/// before the collision risk reaches 2^-32, far beyond a tenant's store.
public struct AES256GCM: Sendable {
    public static let keyBytes = 32
    static let nonceBytes = 12
    static let tagBytes = 16
    private let key: [UInt8]

    public init(key: [UInt8]) throws {
        guard key.count == Self.keyBytes else { throw CryptoError("an AES-256 key is 32 bytes, got \(key.count)") }
        self.key = key
    }

    /// Encrypts and authenticates `plaintext`; `context` is authenticated but not encrypted.
    public func seal(_ plaintext: [UInt8], context: [UInt8] = []) throws -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: Self.nonceBytes)
        guard RAND_bytes(&nonce, Int32(nonce.count)) == 1 else { throw CryptoError("no secure randomness for a nonce") }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("OpenSSL out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: plaintext.count + 16)
        var length: Int32 = 0, total: Int32 = 0
        guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) == 1,
              context.isEmpty || EVP_EncryptUpdate(ctx, nil, &length, context, Int32(context.count)) == 1,
              EVP_EncryptUpdate(ctx, &out, &length, plaintext, Int32(plaintext.count)) == 1 else {
            throw CryptoError("AES-GCM encryption failed")
        }
        total = length
        let finalOK = out.withUnsafeMutableBufferPointer { EVP_EncryptFinal_ex(ctx, $0.baseAddress! + Int(total), &length) }
        guard finalOK == 1 else { throw CryptoError("AES-GCM encryption failed") }
        total += length
        var tag = [UInt8](repeating: 0, count: Self.tagBytes)
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(Self.tagBytes), &tag) == 1 else { throw CryptoError("AES-GCM tag failed") }
        return nonce + out[0..<Int(total)] + tag
    }

    /// Decrypts sealed bytes; fails if anything (or the context) was altered or the key is wrong.
    public func open(_ sealed: [UInt8], context: [UInt8] = []) throws -> [UInt8] {
        guard sealed.count >= Self.nonceBytes + Self.tagBytes else { throw CryptoError("sealed data is too short") }
        let nonce = Array(sealed[0..<Self.nonceBytes])
        let body = Array(sealed[Self.nonceBytes..<(sealed.count - Self.tagBytes)])
        var tag = Array(sealed[(sealed.count - Self.tagBytes)...])
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("OpenSSL out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: body.count + 16)
        var length: Int32 = 0
        guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce) == 1,
              context.isEmpty || EVP_DecryptUpdate(ctx, nil, &length, context, Int32(context.count)) == 1,
              EVP_DecryptUpdate(ctx, &out, &length, body, Int32(body.count)) == 1 else {
            throw CryptoError("AES-GCM decryption failed")
        }
        let total = length
        guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(Self.tagBytes), &tag) == 1 else { throw CryptoError("AES-GCM tag failed") }
        let finalOK = out.withUnsafeMutableBufferPointer { EVP_DecryptFinal_ex(ctx, $0.baseAddress! + Int(total), &length) }
        guard finalOK == 1 else { throw CryptoError("authentication failed: wrong key or altered data") }
        return Array(out[0..<Int(total + length)])
    }
}

/// HMAC-SHA256 through OpenSSL.
public enum HMACSHA256 {
    public static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] { hmac(EVP_sha256(), 32, message, key: key) }
}

/// OpenSSL's one-shot HMAC with `digest`, whose output is `size` bytes.
func hmac(_ digest: OpaquePointer?, _ size: Int, _ message: [UInt8], key: [UInt8]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: size)
    var length: UInt32 = 0
    let result = HMAC(digest, key, Int32(key.count), message, message.count, &out, &length)
    precondition(result != nil && Int(length) == size, "OpenSSL HMAC failed")
    return out
}
