import Foundation
import Testing
import SigiloCrypto
@testable import SigiloProtocol
@testable import SigiloFederation

/// The Swift implementation against protocol/vectors.json, written by an
/// independent Python implementation (tools/gen-protocol-vectors.py).
@Suite struct ProtocolVectorTests {
    nonisolated(unsafe) static let vectors: [String: Any] = { // read-only after initialisation
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let data = try! Data(contentsOf: root.appendingPathComponent("protocol/vectors.json"))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static func testKey() throws -> Ed25519.KeyPair {
        let key = vectors["test_key"] as! [String: String]
        return try Ed25519.KeyPair(privateKey: Hex.decode(key["private_seed_hex"]!)!)
    }

    @Test func updateEncodingIsByteForByte() throws {
        let u = Self.vectors["update"] as! [String: Any]
        let envelope = UpdateEnvelope(round: UInt64(u["round"] as! Int), modelVersion: UInt64(u["model_version"] as! Int),
                                      flags: .init(rawValue: UInt32(u["flags"] as! Int)), weight: u["weight"] as! Double,
                                      values: (u["values"] as! [Double]).map { Float($0) })
        #expect(Hex.encode(envelope.encoded()) == u["encoded_hex"] as! String)
        #expect(try UpdateEnvelope.decode(Hex.decode(u["encoded_hex"] as! String)!, maximumDimension: 10) == envelope)
    }

    static func words(_ hex: Any?) -> [UInt64] { (hex as! [String]).map { UInt64($0, radix: 16)! } }
    static func share(_ x: Int, _ values: Any?) -> ShamirSharing.Share { .init(x: UInt64(x), values: (values as! [NSNumber]).map(\.uint64Value)) }

    @Test func secureAggregationGraphIsByteForByte() throws {
        let g = (Self.vectors["secure_aggregation"] as! [String: Any])["graph"] as! [String: Any]
        let cohort = g["cohort"] as! [String]
        let p = try SecureAggregation.RoundParameters(round: 1, modelVersion: 1, cohort: cohort, threshold: 7, degree: g["degree"] as! Int,
                                                      graphSeed: Hex.decode(g["graph_seed_hex"] as! String)!)
        for (tenant, expected) in g["neighbours"] as! [String: [String]] { #expect(try p.neighbours(of: tenant) == expected, "\(tenant)") }
    }

    @Test func secureAggregationRoundIsByteForByte() throws {
        let v = Self.vectors["secure_aggregation"] as! [String: Any]
        let round = UInt64(v["round"] as! Int), version = UInt64(v["model_version"] as! Int)
        let p = try SecureAggregation.RoundParameters(round: round, modelVersion: version, cohort: v["cohort"] as! [String], threshold: v["threshold"] as! Int,
                                                      degree: v["degree"] as! Int, graphSeed: Hex.decode(v["graph_seed_hex"] as! String)!)
        var secrets = [String: SecureAggregation.RoundSecrets](), ads = [String: SecureAggregation.Advertisement]()
        var sum = SecureAggregation.MaskedSum(dimension: 4)
        let survivors = Set(v["survivors"] as! [String])
        for t in v["tenants"] as! [[String: Any]] {
            let id = t["tenant"] as! String
            let s = try SecureAggregation.RoundSecrets(encryption: .init(privateKey: Hex.decode(t["encryption_private_hex"] as! String)!),
                                                       mask: .init(privateKey: Hex.decode(t["mask_private_hex"] as! String)!),
                                                       seed: Hex.decode(t["seed_hex"] as! String)!)
            secrets[id] = s
            // The advertisement, signature included (Ed25519 is deterministic).
            let ad = try SecureAggregation.Advertisement.signed(round: round, tenant: id, identity: .init(privateKey: Hex.decode(t["identity_seed_hex"] as! String)!),
                                                                secrets: s)
            let expected = t["advertisement"] as! [String: String]
            #expect(Hex.encode(ad.identityKey) == expected["identity_key"] && Hex.encode(ad.encryptionKey) == expected["encryption_key"])
            #expect(Hex.encode(ad.maskKey) == expected["mask_key"] && Hex.encode(ad.seedCommitment) == expected["seed_commitment"])
            #expect(Hex.encode(ad.signature) == expected["signature"])
            ads[id] = ad
            var stream = [UInt64](repeating: 0, count: 4)
            try SecureAggregation.selfMask(s.seed, parameters: p, into: &stream)
            #expect(stream.map { UInt64(littleEndian: $0) } == Self.words(t["self_mask_hex"]))
        }
        for t in v["tenants"] as! [[String: Any]] where survivors.contains(t["tenant"] as! String) {
            let id = t["tenant"] as! String
            let release = (t["release"] as! [NSNumber]).map(\.int64Value)
            let masked = try SecureAggregation.maskedInput(release, tenant: id, secrets: secrets[id]!, parameters: p,
                                                           sharedNeighbours: try p.neighbours(of: id).map { ads[$0]! })
            #expect(masked == Self.words(t["masked_hex"]), "\(id)")
            let envelope = UpdateEnvelope(round: round, modelVersion: version, weight: v["weight"] as! Double, masked: masked)
            #expect(Hex.encode(envelope.encoded()) == t["encoded_hex"] as! String)
            sum.add(masked, weight: 4)
        }
        // A share sealed by Python opens to the same field elements.
        let sealed = v["share_from_tenant_1_to_tenant_2"] as! [String: Any]
        let opened = try SecureAggregation.open(.init(from: "tenant-1", to: "tenant-2", ciphertext: Hex.decode(sealed["ciphertext_hex"] as! String)!),
                                                holder: "tenant-2", secrets: secrets["tenant-2"]!, sender: ads["tenant-1"]!, parameters: p)
        let x = Int(try p.point(of: "tenant-2"))
        #expect(opened.seed == Self.share(x, sealed["seed_share"]) && opened.key == Self.share(x, sealed["key_share"]))
        // Python's shares recover the survivors' seeds and the vanished tenant's mask key: the total is the survivors' releases.
        var revealed = [String: [SecureAggregation.RevealedShare]]()
        for (holder, list) in v["revealed"] as! [String: [[String: Any]]] {
            revealed[holder] = list.map { .init(owner: $0["owner"] as! String, kind: .init(rawValue: $0["kind"] as! String)!,
                                                share: Self.share($0["x"] as! Int, $0["values"])) }
        }
        try SecureAggregation.unmask(&sum, parameters: p, advertisements: ads, shared: Set(p.cohort), survivors: survivors, revealed: revealed)
        #expect(sum.values.map { Int64(bitPattern: $0) } == (v["unmasked_total"] as! [NSNumber]).map(\.int64Value))
    }

    @Test func signedRequestsAreByteForByte() throws {
        let key = try Self.testKey()
        #expect(Hex.encode(key.publicKey) == (Self.vectors["test_key"] as! [String: String])["public_key_hex"])
        for r in Self.vectors["requests"] as! [[String: Any]] {
            let body = Hex.decode(r["body_hex"] as! String)!
            let headers = try RequestSigning.sign(method: r["method"] as! String, path: r["path"] as! String, body: body,
                                                  keyId: r["key_id"] as! String, key: key, timestamp: Int64(r["timestamp"] as! Int),
                                                  nonce: Hex.decode(r["nonce"] as! String)!)
            let byName = Dictionary(uniqueKeysWithValues: headers)
            #expect(byName["sigilo-content-sha256"] == r["content_sha256"] as? String)
            #expect(byName["sigilo-signature"] == r["signature"] as? String)
            let message = RequestSigning.canonicalMessage(method: r["method"] as! String, path: r["path"] as! String,
                                                          keyId: r["key_id"] as! String, timestamp: Int64(r["timestamp"] as! Int),
                                                          nonce: r["nonce"] as! String, contentSHA256: r["content_sha256"] as! String)
            #expect(String(decoding: message, as: UTF8.self) == r["canonical_message"] as! String)
            // And the verifier accepts it.
            let credentials = try RequestSigning.credentials { byName[$0] }
            try RequestSigning.verify(credentials, method: r["method"] as! String, path: r["path"] as! String, body: body,
                                      publicKey: key.publicKey, now: Int64(r["timestamp"] as! Int) + 10)
        }
    }
}

@Suite struct RequestVerificationTests {
    let key = try! Ed25519.KeyPair.generate()
    let body = Array("{\"x\":1}".utf8)
    let now: Int64 = 1_800_000_000

    func headers(path: String = "/v1/plan", timestamp: Int64? = nil, body: [UInt8]? = nil) throws -> [String: String] {
        Dictionary(uniqueKeysWithValues: try RequestSigning.sign(method: "POST", path: path, body: body ?? self.body, keyId: "tenant-1",
                                                                 key: key, timestamp: timestamp ?? now, nonce: Array(repeating: 7, count: 16)))
    }

    func verify(_ h: [String: String], method: String = "POST", path: String = "/v1/plan", body: [UInt8]? = nil, publicKey: [UInt8]? = nil) throws {
        try RequestSigning.verify(RequestSigning.credentials { h[$0] }, method: method, path: path, body: body ?? self.body,
                                  publicKey: publicKey ?? key.publicKey, now: now)
    }

    func code(_ body: () throws -> Void) -> ProtocolError.Code? {
        do { try body(); return nil } catch let e as ProtocolError { return e.code } catch { return nil }
    }

    @Test func acceptsAValidRequest() throws {
        try verify(try headers())
    }

    @Test func refusesEveryTamperingWithItsOwnCode() throws {
        let h = try headers()
        #expect(code { try verify(h, method: "GET") } == .badSignature)
        #expect(code { try verify(h, path: "/v1/rounds/1/updates") } == .badSignature)
        #expect(code { try verify(h, body: Array("{\"x\":2}".utf8)) } == .bodyDigestMismatch)
        #expect(code { try verify(h, publicKey: try Ed25519.KeyPair.generate().publicKey) } == .badSignature)
        #expect(code { try verify(try headers(timestamp: now - 301)) } == .staleTimestamp)
        #expect(code { try verify(try headers(timestamp: now + 301)) } == .staleTimestamp)
        var otherKeyId = h; otherKeyId["sigilo-key-id"] = "tenant-2"
        #expect(code { try verify(otherKeyId) } == .badSignature)
        var otherNonce = h; otherNonce["sigilo-nonce"] = String(repeating: "0", count: 32)
        #expect(code { try verify(otherNonce) } == .badSignature)
    }

    @Test(arguments: ["sigilo-key-id", "sigilo-timestamp", "sigilo-nonce", "sigilo-content-sha256", "sigilo-signature"])
    func missingOrMalformedHeadersAreNamed(_ name: String) throws {
        var missing = try headers()
        missing[name] = nil
        #expect(code { try verify(missing) } == .missingHeader)
        var malformed = try headers()
        malformed[name] = "Not Valid!"
        #expect(code { try verify(malformed) } == .malformedHeader)
    }
}

@Suite struct UpdateEnvelopeTests {
    let envelope = UpdateEnvelope(round: 3, modelVersion: 2, flags: [], weight: 4.5, values: [1, -2, 0.25])

    func code(_ bytes: [UInt8], maximumDimension: Int = 100) -> ProtocolError.Code? {
        do { _ = try UpdateEnvelope.decode(bytes, maximumDimension: maximumDimension); return nil } catch let e as ProtocolError { return e.code } catch { return nil }
    }

    @Test func decodingIntoReusedStorageGivesTheSameUpdates() throws {
        var storage = [Float]()
        for seed in 0..<3 {
            let update = UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: 2, values: (0..<1000).map { Float(sin(Double($0 + seed))) })
            let decoded = try UpdateEnvelope.decode(update.encoded(), maximumDimension: 1000, reusing: &storage)
            #expect(decoded == update)
        }
        let nonFinite = UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: 2, values: [1, 2, .nan]).encoded()
        #expect(throws: ProtocolError.self) { _ = try UpdateEnvelope.decode(nonFinite, maximumDimension: 10, reusing: &storage) }
    }

    static let masked = UpdateEnvelope(round: 3, modelVersion: 2, weight: 4.5, masked: [1, .max, 1 << 63])

    @Test(arguments: [false, true])
    func everyTruncationAndEveryFlippedByteIsRejected(isMasked: Bool) {
        let bytes = (isMasked ? Self.masked : envelope).encoded()
        for length in 0..<bytes.count { #expect(code(Array(bytes[0..<length])) != nil, "cut at \(length)") }
        for offset in bytes.indices {
            var corrupted = bytes
            corrupted[offset] ^= 0x04
            // Flips in round/model version/weight fields decode to different, valid values; all else must fail.
            if (16..<32).contains(offset) || (40..<48).contains(offset) { continue }
            #expect(code(corrupted) != nil, "flip at \(offset)")
        }
    }

    /// Random mutations of both encodings, and random bytes behind a valid
    /// header: decoding either refuses with a ProtocolError or returns an
    /// update that encodes back to exactly the bytes given.
    @Test func fuzzedBytesAreRefusedOrRoundTripExactly() {
        var rng = SystemRandomNumberGenerator()
        let seeds = [envelope.encoded(), Self.masked.encoded()]
        for i in 0..<20_000 {
            var bytes = seeds[i % 2]
            switch i % 4 {
            case 0, 1:
                for _ in 0..<Int.random(in: 1...4, using: &rng) { bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            case 2:
                bytes = Array(bytes.prefix(Int.random(in: 0...bytes.count, using: &rng))) + (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            default:
                bytes = (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            do {
                let decoded = try UpdateEnvelope.decode(bytes, maximumDimension: 100)
                #expect(decoded.encoded() == bytes, "mutation \(i)")
            } catch is ProtocolError {
            } catch {
                Issue.record("mutation \(i): \(error)")
            }
        }
    }

    @Test func specificRefusals() {
        var bytes = envelope.encoded()
        #expect(code(bytes, maximumDimension: 2) == .malformedUpdate)
        bytes[8] = 2
        #expect(code(bytes) == .unsupportedVersion)
        let nan = UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: 1, values: [1, .nan]).encoded()
        #expect(code(nan) == .nonFiniteValue)
        let negativeWeight = UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: -1, values: [1]).encoded()
        #expect(code(negativeWeight) == .nonFiniteValue)
        var unknownFlag = envelope.encoded()
        unknownFlag[13] = 1
        #expect(code(unknownFlag) == .malformedUpdate)
        #expect(code(envelope.encoded() + [0, 0, 0, 0]) == .malformedUpdate)
        // A masked update carries no flags, and its values are 8 bytes each.
        var flagged = Self.masked.encoded()
        flagged[12] = 1
        #expect(code(flagged) == .malformedUpdate)
        var floatsAsMasked = envelope.encoded()
        floatsAsMasked[10] = 2
        #expect(code(floatsAsMasked) == .malformedUpdate)
        #expect(code(Self.masked.encoded() + [0, 0, 0, 0, 0, 0, 0, 0]) == .malformedUpdate)
    }
}
