import SigiloCrypto

/// A tenant's contribution to one round, as it travels (protocol/PROTOCOL.md, "Update").
///
/// Only what aggregation needs leaves the tenant: the (clipped, summed and,
/// with tenant placement, noised) update vector, the round and model version
/// it answers, and the tenant's public weight (the expected number of sampled
/// customers, q times its declared population; never the observed count).
public struct UpdateEnvelope: Equatable, Sendable {
    public static let magic = Array("SGLUPDAT".utf8)
    public static let formatVersion: UInt16 = 1
    public static let headerBytes = 80

    /// float32: the update itself. maskedUInt64: secure placement's masked
    /// grid release, integers modulo 2^64 (protocol/PROTOCOL.md, "Secure aggregation").
    public enum Encoding: UInt16, Sendable { case float32 = 1, maskedUInt64 = 2 }

    public struct Flags: OptionSet, Equatable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// The tenant added the round's Gaussian noise (placement "tenant").
        public static let tenantNoised = Flags(rawValue: 1)
        static let known: Flags = [.tenantNoised]
    }

    public var round: UInt64
    public var modelVersion: UInt64
    public var flags: Flags
    /// Expected number of sampled customers (q x declared population).
    public var weight: Double
    /// The update (float32 encoding); empty when `masked` is set.
    public var values: [Float]
    /// The masked grid release (maskedUInt64 encoding), instead of `values`.
    public var masked: [UInt64]?

    public var encoding: Encoding { masked == nil ? .float32 : .maskedUInt64 }

    public init(round: UInt64, modelVersion: UInt64, flags: Flags, weight: Double, values: [Float]) {
        self.round = round
        self.modelVersion = modelVersion
        self.flags = flags
        self.weight = weight
        self.values = values
    }

    /// A secure-placement update: no flags (the noise share is implied), masked integers instead of floats.
    public init(round: UInt64, modelVersion: UInt64, weight: Double, masked: [UInt64]) {
        self.init(round: round, modelVersion: modelVersion, flags: [], weight: weight, values: [])
        self.masked = masked
    }

    /// The wire bytes: 80-byte header, then the values as little-endian
    /// float32 (or the masked integers as little-endian uint64).
    public func encoded() -> [UInt8] {
        // The values' bytes in one bulk copy: they are already little-endian on little-endian hosts.
        #if _endian(little)
        let payload = masked.map { $0.withUnsafeBytes { [UInt8]($0) } } ?? values.withUnsafeBytes { [UInt8]($0) }
        #else
        let payload = masked.map { $0.flatMap { v in withUnsafeBytes(of: v.littleEndian) { [UInt8]($0) } } }
            ?? values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { [UInt8]($0) } }
        #endif
        var out = Self.magic
        out.reserveCapacity(Self.headerBytes + payload.count)
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        put(Self.formatVersion)
        put(encoding.rawValue)
        put(flags.rawValue)
        put(round)
        put(modelVersion)
        put(UInt64(masked?.count ?? values.count))
        put(weight.bitPattern)
        out.append(contentsOf: SHA256.hash(payload))
        out.append(contentsOf: payload)
        return out
    }

    /// Decodes and validates wire bytes. `maximumDimension` bounds what a
    /// sender can make the receiver allocate.
    public static func decode(_ bytes: [UInt8], maximumDimension: Int) throws -> UpdateEnvelope {
        var values = [Float]()
        return try decode(bytes, maximumDimension: maximumDimension, reusing: &values)
    }

    /// As `decode(_:maximumDimension:)`, writing the values into `storage`
    /// (which the envelope then shares): a caller decoding update after update
    /// of the same size reuses one array instead of allocating and faulting in
    /// 4 x d fresh bytes each time. Release the envelope before the next call.
    public static func decode(_ bytes: [UInt8], maximumDimension: Int, reusing storage: inout [Float]) throws -> UpdateEnvelope {
        guard bytes.count >= headerBytes else {
            throw ProtocolError(.malformedUpdate, "update is \(bytes.count) bytes, shorter than its \(headerBytes)-byte header")
        }
        guard Array(bytes[0..<8]) == magic else { throw ProtocolError(.malformedUpdate, "update does not start with \"SGLUPDAT\"") }
        func read<T: FixedWidthInteger>(_: T.Type, _ offset: Int) -> T {
            var v: T = 0
            for i in 0..<MemoryLayout<T>.size { v |= T(bytes[offset + i]) << (8 * i) }
            return v
        }
        let version = read(UInt16.self, 8)
        guard version == formatVersion else {
            throw ProtocolError(.unsupportedVersion, "update format version \(version); this coordinator reads \(formatVersion)")
        }
        let encodingValue = read(UInt16.self, 10)
        guard let encoding = Encoding(rawValue: encodingValue) else { throw ProtocolError(.malformedUpdate, "unknown value encoding \(encodingValue)") }
        let flags = Flags(rawValue: read(UInt32.self, 12))
        guard flags.isSubset(of: .known) else { throw ProtocolError(.malformedUpdate, "unknown flag bits 0x\(String(flags.rawValue, radix: 16))") }
        guard encoding == .float32 || flags.isEmpty else {
            throw ProtocolError(.malformedUpdate, "a masked update carries no flags, got 0x\(String(flags.rawValue, radix: 16))")
        }
        let round = read(UInt64.self, 16), modelVersion = read(UInt64.self, 24)
        let dimension = read(UInt64.self, 32)
        guard dimension >= 1, dimension <= UInt64(maximumDimension) else {
            throw ProtocolError(.malformedUpdate, "dimension \(dimension) outside 1...\(maximumDimension)")
        }
        let weight = Double(bitPattern: read(UInt64.self, 40))
        guard weight.isFinite, weight >= 0 else { throw ProtocolError(.nonFiniteValue, "weight \(weight) is not a finite number >= 0") }
        let expected = headerBytes + Int(dimension) * (encoding == .float32 ? 4 : 8)
        guard bytes.count == expected else {
            throw ProtocolError(.malformedUpdate, "update of dimension \(dimension) must be \(expected) bytes, got \(bytes.count)")
        }
        let payload = bytes[headerBytes...]
        guard constantTimeEqual(SHA256.hash(payload), Array(bytes[48..<80])) else {
            throw ProtocolError(.checksumMismatch, "update payload does not match its SHA-256")
        }
        if encoding == .maskedUInt64 {
            var words = [UInt64](repeating: 0, count: Int(dimension))
            words.withUnsafeMutableBytes { destination in payload.withUnsafeBytes { destination.copyMemory(from: $0) } }
            #if _endian(big)
            for i in words.indices { words[i] = UInt64(littleEndian: words[i]) }
            #endif
            return UpdateEnvelope(round: round, modelVersion: modelVersion, weight: weight, masked: words)
        }
        try Self.finiteFloats(payload, into: &storage)
        let values = storage
        return UpdateEnvelope(round: round, modelVersion: modelVersion, flags: flags, weight: weight, values: values)
    }

    /// Little-endian float32 values, refused at the first NaN or infinity
    /// (all exponent bits set). One bulk copy and a branch-free scan per
    /// block: 4M values decode in a few milliseconds.
    static func finiteFloats(_ payload: ArraySlice<UInt8>, into values: inout [Float]) throws {
        let count = payload.count / 4
        if values.count != count { values = [Float](repeating: 0, count: count) }
        values.withUnsafeMutableBytes { destination in
            payload.withUnsafeBytes { destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<(count * 4)])) }
        }
        #if _endian(big)
        for i in values.indices { values[i] = Float(bitPattern: UInt32(littleEndian: values[i].bitPattern)) }
        #endif
        let exponent: UInt32 = 0x7f80_0000
        try values.withUnsafeBufferPointer { floats in
            try floats.withMemoryRebound(to: UInt32.self) { bits in
                var start = 0
                while start < count {
                    let end = min(count, start + 1024)
                    var nonFinite = false
                    for i in start..<end { nonFinite = nonFinite || (bits[i] & exponent == exponent) }
                    if nonFinite, let i = (start..<end).first(where: { bits[$0] & exponent == exponent }) {
                        throw ProtocolError(.nonFiniteValue, "update value \(i) is not finite")
                    }
                    start = end
                }
            }
        }
    }
}
