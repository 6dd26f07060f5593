internal import COpenSSL

/// Secret random bytes from OpenSSL's DRBG (seeded from getrandom on Linux).
public func secureRandomBytes(_ count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    guard count == 0 || RAND_bytes(&bytes, Int32(count)) == 1 else { throw CryptoError("no secure randomness available") }
    return bytes
}

/// HMAC-SHA1 through OpenSSL: only for TOTP, whose authenticator apps expect it.
public enum HMACSHA1 {
    public static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] { hmac(EVP_sha1(), 20, message, key: key) }
}

/// Time-based one-time passwords (RFC 6238 over RFC 4226): 6 digits, 30-second
/// steps, HMAC-SHA1 — the parameters every authenticator app assumes.
public struct TOTP: Sendable {
    public static let digits = 6
    public static let stepSeconds: Int64 = 30
    public let secret: [UInt8]

    public init(secret: [UInt8]) { self.secret = secret }

    /// A fresh 160-bit secret (RFC 4226 recommends at least 128 bits).
    public static func generate() throws -> TOTP { TOTP(secret: try secureRandomBytes(20)) }

    /// The time step containing `unixTime`.
    public static func step(at unixTime: Double) -> Int64 { Int64((unixTime / Double(stepSeconds)).rounded(.down)) }

    /// The code for one time step (RFC 4226 dynamic truncation).
    public func code(step: Int64) -> String {
        var counter = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { counter[i] = UInt8(truncatingIfNeeded: UInt64(bitPattern: step) >> (56 - 8 * UInt64(i))) }
        let mac = HMACSHA1.authenticate(counter, key: secret)
        let offset = Int(mac[19] & 0x0f)
        let binary = (UInt32(mac[offset] & 0x7f) << 24) | (UInt32(mac[offset + 1]) << 16) | (UInt32(mac[offset + 2]) << 8) | UInt32(mac[offset + 3])
        let text = String(binary % 1_000_000)
        return String(repeating: "0", count: Self.digits - text.count) + text
    }

    /// The step a code is valid for, allowing one step of clock drift either
    /// way, or nil. Compared in constant time.
    public func matchingStep(_ code: String, at unixTime: Double) -> Int64? {
        let now = Self.step(at: unixTime)
        var found: Int64?
        for step in [now - 1, now, now + 1] where constantTimeEqual(Array(self.code(step: step).utf8), Array(code.utf8)) {
            found = step
        }
        return found
    }

    /// The otpauth:// URI authenticator apps read (usually from a QR code).
    public func provisioningURI(account: String, issuer: String) -> String {
        func escape(_ s: String) -> String { s.addingPercentEncodingForURI() }
        return "otpauth://totp/\(escape(issuer)):\(escape(account))?secret=\(Base32.encode(secret))&issuer=\(escape(issuer))&algorithm=SHA1&digits=6&period=30"
    }
}

extension String {
    fileprivate func addingPercentEncodingForURI() -> String {
        var out = ""
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return out
    }
}

/// RFC 4648 base32 without padding, the form TOTP secrets are shown in.
public enum Base32 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".utf8)

    public static func encode(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = (buffer << 8) | UInt32(byte)
            bits += 8
            while bits >= 5 {
                out.append(alphabet[Int((buffer >> UInt32(bits - 5)) & 31)])
                bits -= 5
            }
        }
        if bits > 0 { out.append(alphabet[Int((buffer << UInt32(5 - bits)) & 31)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes (case-insensitive, padding and spaces ignored); nil on any other character.
    public static func decode(_ text: String) -> [UInt8]? {
        var out = [UInt8]()
        var buffer: UInt32 = 0
        var bits = 0
        for scalar in text.uppercased().utf8 where scalar != UInt8(ascii: "=") && scalar != UInt8(ascii: " ") {
            guard let value = alphabet.firstIndex(of: scalar) else { return nil }
            buffer = (buffer << 5) | UInt32(value)
            bits += 5
            if bits >= 8 {
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits - 8)))
                bits -= 8
            }
        }
        return out
    }
}
