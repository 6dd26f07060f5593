internal import COpenSSL

/// X25519 Diffie-Hellman (RFC 7748) through OpenSSL: two tenants that know
/// each other's public key derive the same 32-byte secret, which nobody
/// relaying the public keys learns. Secure aggregation derives the masks
/// that hide each tenant's update from these secrets.
public enum X25519 {
    public static let keyBytes = 32

    public struct KeyPair: Sendable {
        public let privateKey: [UInt8]
        public let publicKey: [UInt8]

        /// A fresh key pair from OpenSSL's secure generator.
        public static func generate() throws -> KeyPair {
            var seed = [UInt8](repeating: 0, count: keyBytes)
            guard RAND_bytes(&seed, Int32(keyBytes)) == 1 else { throw CryptoError("no secure randomness for an X25519 key") }
            return try KeyPair(privateKey: seed)
        }

        /// The key pair of a stored 32-byte private key.
        public init(privateKey: [UInt8]) throws {
            guard privateKey.count == keyBytes else { throw CryptoError("an X25519 private key is 32 bytes, got \(privateKey.count)") }
            guard let key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, privateKey, privateKey.count) else {
                throw CryptoError("OpenSSL refused the X25519 private key")
            }
            defer { EVP_PKEY_free(key) }
            var pub = [UInt8](repeating: 0, count: keyBytes)
            var length = keyBytes
            guard EVP_PKEY_get_raw_public_key(key, &pub, &length) == 1, length == keyBytes else {
                throw CryptoError("cannot derive the X25519 public key")
            }
            self.privateKey = privateKey
            self.publicKey = pub
        }

        /// The secret shared with the owner of `peer`. Refuses a peer key of
        /// small order (an all-zero result), which would make the secret public.
        public func sharedSecret(with peer: [UInt8]) throws -> [UInt8] {
            guard peer.count == keyBytes else { throw CryptoError("an X25519 public key is 32 bytes, got \(peer.count)") }
            guard let mine = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nil, privateKey, privateKey.count) else {
                throw CryptoError("OpenSSL refused the X25519 private key")
            }
            defer { EVP_PKEY_free(mine) }
            guard let theirs = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nil, peer, peer.count) else {
                throw CryptoError("OpenSSL refused the X25519 public key")
            }
            defer { EVP_PKEY_free(theirs) }
            guard let ctx = EVP_PKEY_CTX_new(mine, nil) else { throw CryptoError("OpenSSL out of memory") }
            defer { EVP_PKEY_CTX_free(ctx) }
            var secret = [UInt8](repeating: 0, count: keyBytes)
            var length = keyBytes
            // OpenSSL itself fails the derivation when the result is all zeros.
            guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_derive_set_peer(ctx, theirs) == 1,
                  EVP_PKEY_derive(ctx, &secret, &length) == 1, length == keyBytes else {
                throw CryptoError("X25519 key agreement failed (invalid or small-order public key)")
            }
            return secret
        }
    }
}

/// HKDF with SHA-256 (RFC 5869), extract then expand, through OpenSSL.
public enum HKDFSHA256 {
    public static func derive(key: [UInt8], salt: [UInt8], info: [UInt8], length: Int) throws -> [UInt8] {
        guard (1...(255 * 32)).contains(length) else { throw CryptoError("HKDF-SHA256 output must be 1...8160 bytes, got \(length)") }
        guard let ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nil) else { throw CryptoError("OpenSSL out of memory") }
        defer { EVP_PKEY_CTX_free(ctx) }
        var out = [UInt8](repeating: 0, count: length)
        var produced = length
        guard EVP_PKEY_derive_init(ctx) == 1, EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) == 1,
              EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt, Int32(salt.count)) == 1,
              EVP_PKEY_CTX_set1_hkdf_key(ctx, key, Int32(key.count)) == 1,
              EVP_PKEY_CTX_add1_hkdf_info(ctx, info, Int32(info.count)) == 1,
              EVP_PKEY_derive(ctx, &out, &produced) == 1, produced == length else {
            throw CryptoError("HKDF-SHA256 failed")
        }
        return out
    }
}

/// The AES-256-CTR keystream (AES-256 in counter mode over zeros) through
/// OpenSSL: a pseudorandom byte stream of any length from a 32-byte key and
/// a 16-byte initial counter block.
public enum AES256CTR {
    /// Fills `buffer` with the keystream.
    public static func keystream(key: [UInt8], counter: [UInt8], into buffer: UnsafeMutableRawBufferPointer) throws {
        guard key.count == 32 else { throw CryptoError("an AES-256 key is 32 bytes, got \(key.count)") }
        guard counter.count == 16 else { throw CryptoError("an AES-CTR counter block is 16 bytes, got \(counter.count)") }
        guard let ctx = EVP_CIPHER_CTX_new() else { throw CryptoError("OpenSSL out of memory") }
        defer { EVP_CIPHER_CTX_free(ctx) }
        guard EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), nil, key, counter) == 1 else { throw CryptoError("AES-CTR setup failed") }
        guard let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        memset(base, 0, buffer.count)
        // Encrypted in place, in chunks that fit OpenSSL's Int32 lengths.
        var offset = 0
        while offset < buffer.count {
            let chunk = min(1 << 24, buffer.count - offset)
            var written: Int32 = 0
            guard EVP_EncryptUpdate(ctx, base + offset, &written, base + offset, Int32(chunk)) == 1, Int(written) == chunk else {
                throw CryptoError("AES-CTR keystream failed")
            }
            offset += chunk
        }
    }
}
