import Testing
import SigiloCrypto

@Suite struct CryptoTests {
    @Test func ed25519MatchesRFC8032TestVector1() throws {
        // RFC 8032, section 7.1, TEST 1 (empty message).
        let key = try Ed25519.KeyPair(privateKey: Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!)
        #expect(Hex.encode(key.publicKey) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let signature = try key.sign([])
        #expect(Hex.encode(signature) == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        #expect(Ed25519.verify(signature: signature, message: [], publicKey: key.publicKey))
    }

    @Test func tamperedMessagesAndSignaturesFail() throws {
        let key = try Ed25519.KeyPair.generate()
        let message = Array("POST /v1/rounds/1/updates".utf8)
        let signature = try key.sign(message)
        #expect(Ed25519.verify(signature: signature, message: message, publicKey: key.publicKey))
        var badMessage = message; badMessage[0] ^= 1
        #expect(!Ed25519.verify(signature: signature, message: badMessage, publicKey: key.publicKey))
        var badSignature = signature; badSignature[10] ^= 1
        #expect(!Ed25519.verify(signature: badSignature, message: message, publicKey: key.publicKey))
        #expect(!Ed25519.verify(signature: Array(signature.prefix(63)), message: message, publicKey: key.publicKey))
        #expect(!Ed25519.verify(signature: signature, message: message, publicKey: try Ed25519.KeyPair.generate().publicKey))
        #expect(throws: CryptoError.self) { try Ed25519.KeyPair(privateKey: [1, 2, 3]) }
    }

    @Test func sha256AndConstantTimeCompare() {
        #expect(SHA256.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!constantTimeEqual([1, 2], [1, 2, 3]))
        #expect(Hex.decode("0aFf") == [0x0a, 0xff])
        #expect(Hex.decode("0g") == nil)
        #expect(Hex.decode("abc") == nil)
    }
}

@Suite struct AEADTests {
    @Test func sealsOpensAndDetectsEveryAlteration() throws {
        let key = try AES256GCM(key: Array(repeating: 7, count: 32))
        let message = Array("meu cpf é <CPF>".utf8)
        let sealed = try key.seal(message, context: Array("customer".utf8))
        #expect(try key.open(sealed, context: Array("customer".utf8)) == message)
        #expect(try key.seal(message) != key.seal(message)) // fresh nonces
        for i in sealed.indices {
            var bad = sealed; bad[i] ^= 1
            #expect(throws: CryptoError.self) { try key.open(bad, context: Array("customer".utf8)) }
        }
        #expect(throws: CryptoError.self) { try key.open(sealed, context: Array("other".utf8)) }
        #expect(throws: CryptoError.self) { try AES256GCM(key: Array(repeating: 8, count: 32)).open(sealed, context: Array("customer".utf8)) }
        #expect(throws: CryptoError.self) { try AES256GCM(key: [1]) }
    }

    @Test func hmacMatchesRFC4231TestCase2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        #expect(Hex.encode(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }
}

@Suite struct TOTPTests {
    /// RFC 6238 appendix B (SHA-1 rows), truncated to 6 digits as apps use them.
    @Test func rfc6238Vectors() {
        let totp = TOTP(secret: Array("12345678901234567890".utf8))
        let vectors: [(Double, String)] = [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"),
                                          (1234567890, "005924"), (2000000000, "279037"), (20000000000, "353130")]
        for (time, code) in vectors {
            #expect(totp.code(step: TOTP.step(at: time)) == code, "time \(time)")
        }
    }

    @Test func driftWindowIsOneStepEachWay() {
        let totp = TOTP(secret: Array("12345678901234567890".utf8))
        let now = 1111111111.0
        let step = TOTP.step(at: now)
        #expect(totp.matchingStep(totp.code(step: step), at: now) == step)
        #expect(totp.matchingStep(totp.code(step: step - 1), at: now) == step - 1)
        #expect(totp.matchingStep(totp.code(step: step + 1), at: now) == step + 1)
        #expect(totp.matchingStep(totp.code(step: step - 2), at: now) == nil)
        #expect(totp.matchingStep("", at: now) == nil)
    }

    @Test func base32RoundTripsAndRejectsForeignCharacters() throws {
        #expect(Base32.encode(Array("foobar".utf8)) == "MZXW6YTBOI")
        #expect(Base32.decode("MZXW6YTBOI======") == Array("foobar".utf8))
        #expect(Base32.decode("mzxw 6ytb oi") == Array("foobar".utf8))
        #expect(Base32.decode("MZXW1") == nil)
        let secret = try secureRandomBytes(20)
        #expect(Base32.decode(Base32.encode(secret)) == secret)
        let uri = TOTP(secret: secret).provisioningURI(account: "admin", issuer: "Sigilo coordinator")
        #expect(uri.hasPrefix("otpauth://totp/Sigilo%20coordinator:admin?secret=\(Base32.encode(secret))&"))
    }
}

@Suite struct KeyAgreementTests {
    @Test func x25519MatchesRFC7748() throws {
        // RFC 7748, section 6.1.
        let alice = try X25519.KeyPair(privateKey: Hex.decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")!)
        let bob = try X25519.KeyPair(privateKey: Hex.decode("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")!)
        #expect(Hex.encode(alice.publicKey) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        #expect(Hex.encode(bob.publicKey) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        #expect(Hex.encode(try alice.sharedSecret(with: bob.publicKey)) == shared)
        #expect(Hex.encode(try bob.sharedSecret(with: alice.publicKey)) == shared)
    }

    @Test func x25519RefusesBadAndSmallOrderKeys() throws {
        let key = try X25519.KeyPair.generate()
        #expect(throws: CryptoError.self) { try key.sharedSecret(with: [UInt8](repeating: 0, count: 32)) }
        #expect(throws: CryptoError.self) { try key.sharedSecret(with: [1, 2, 3]) }
        #expect(throws: CryptoError.self) { try X25519.KeyPair(privateKey: [UInt8](repeating: 1, count: 31)) }
        let other = try X25519.KeyPair.generate()
        #expect(try key.sharedSecret(with: other.publicKey) == other.sharedSecret(with: key.publicKey))
    }

    @Test func hkdfMatchesRFC5869TestCase1() throws {
        let okm = try HKDFSHA256.derive(key: [UInt8](repeating: 0x0b, count: 22), salt: Array(0...12), info: Array(0xf0...0xf9), length: 42)
        #expect(Hex.encode(okm) == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        #expect(throws: CryptoError.self) { try HKDFSHA256.derive(key: [1], salt: [], info: [], length: 0) }
    }

    @Test func aesCTRKeystreamMatchesSP800_38A() throws {
        // SP 800-38A F.5.5 (CTR-AES256.Encrypt), blocks 1-2: keystream XOR plaintext = ciphertext.
        let key = Hex.decode("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")!
        let counter = Hex.decode("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")!
        let plaintext = Hex.decode("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")!
        var stream = [UInt8](repeating: 0xaa, count: 32)
        try stream.withUnsafeMutableBytes { try AES256CTR.keystream(key: key, counter: counter, into: $0) }
        #expect(Hex.encode(zip(stream, plaintext).map { $0 ^ $1 }) == "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5")
        #expect(throws: CryptoError.self) { try stream.withUnsafeMutableBytes { try AES256CTR.keystream(key: [1], counter: counter, into: $0) } }
    }
}
