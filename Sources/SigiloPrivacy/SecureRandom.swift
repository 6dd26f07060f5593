internal import COpenSSL

/// The random source for privacy noise and customer sampling.
///
/// Bytes come from OpenSSL's `RAND_bytes`: in OpenSSL 3 that is the default
/// DRBG (NIST SP 800-90A CTR-DRBG with AES-256), seeded and periodically
/// reseeded from the kernel's CSPRNG through `getrandom(2)`, and reseeded
/// after a fork. Output is cryptographically secure: an observer of noised
/// values cannot predict or reconstruct the noise. It is drawn in 64 KiB
/// blocks because a system call per 8-byte draw would cap sampling speed.
///
/// It is a class so that copies share one stream: a copied buffer would hand
/// out the same random words twice. It has no seed and no way to set one;
/// tests reach the samplers through their generic, internal entry points.
public final class SecureRandom: RandomNumberGenerator {
    private static let blockWords = 8192
    // One owner draws at a time (the class is not Sendable), so the dynamic
    // exclusivity checks Swift would otherwise make on every draw are skipped.
    @exclusivity(unchecked) private var buffer: UnsafeMutablePointer<UInt64>
    @exclusivity(unchecked) private var index: Int

    public init() {
        buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: Self.blockWords)
        buffer.initialize(repeating: 0, count: Self.blockWords)
        index = Self.blockWords
    }

    deinit {
        // Used words could let someone subtract the noise from a release.
        OPENSSL_cleanse(buffer, Self.blockWords * 8)
        buffer.deallocate()
    }

    @inline(__always)
    public func next() -> UInt64 {
        if index == Self.blockWords { refill() }
        let value = buffer[index]
        index += 1
        return value
    }

    private func refill() {
        let ok = RAND_bytes(UnsafeMutableRawPointer(buffer).assumingMemoryBound(to: UInt8.self), Int32(Self.blockWords * 8))
        // Without randomness no private release is possible: stop, never fall back.
        precondition(ok == 1, "OpenSSL RAND_bytes failed: no secure randomness available")
        index = 0
    }
}
