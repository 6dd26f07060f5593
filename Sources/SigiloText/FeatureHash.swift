/// The stable hash that maps n-grams to feature buckets ("fnv1a64-fmix64", version 1).
///
/// `bucket = fmix64(fnv1a64(tag || utf8)) & (B - 1)` where `tag` is one byte
/// (0x01 word n-gram, tokens joined by one space; 0x02 character n-gram of a
/// token padded with one space on each side), FNV-1a is the 64-bit variant
/// (offset basis 0xcbf29ce484222325, prime 0x100000001b3) and `fmix64` is the
/// MurmurHash3 finaliser, which spreads FNV's weak low bits over the mask.
/// Never Swift's `Hasher`: it is seeded per process. Test vectors: models/hash-vectors.json.
public enum FeatureHash {
    public static let name = "fnv1a64-fmix64"
    public static let version: UInt16 = 1
    public static let wordTag: UInt8 = 0x01
    public static let charTag: UInt8 = 0x02

    public static let offsetBasis: UInt64 = 0xcbf2_9ce4_8422_2325
    public static let prime: UInt64 = 0x0000_0100_0000_01b3

    @inline(__always) public static func step(_ h: UInt64, _ byte: UInt8) -> UInt64 {
        (h ^ UInt64(byte)) &* prime
    }

    @inline(__always) public static func fmix64(_ x: UInt64) -> UInt64 {
        var h = x
        h ^= h >> 33
        h &*= 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        h &*= 0xc4ce_b9fe_1a85_ec53
        h ^= h >> 33
        return h
    }

    /// Plain FNV-1a 64 of `bytes` (no tag, no finaliser), for reference vectors.
    public static func fnv1a64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        bytes.reduce(offsetBasis) { step($0, $1) }
    }

    /// The 64-bit hash of a tagged byte string (before masking).
    public static func hash(tag: UInt8, _ bytes: some Sequence<UInt8>) -> UInt64 {
        var h = step(offsetBasis, tag)
        for b in bytes { h = step(h, b) }
        return fmix64(h)
    }
}
