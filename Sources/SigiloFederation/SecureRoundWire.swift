import Foundation
import SigiloCrypto

/// The JSON of secure rounds (protocol/PROTOCOL.md, "Secure aggregation"),
/// one codec for both ends: the round view a tenant is given, and the bodies
/// of its answers to the advertise, share and unmask stages. Every decoder
/// checks each field's type and size and names the first that is wrong.
public enum SecureRoundWire {
    public struct Malformed: Error, Equatable, Sendable {
        /// Which field, e.g. "neighbours[2].mask_key".
        public let field: String
    }

    // MARK: Round view

    public static func render(_ view: SecureAggregation.RoundView) -> String {
        let p = view.parameters
        return object([
            ("stage", string(view.stage.name)), ("stage_deadline", JSONNumber.format(Self.milliseconds(view.stageDeadline))),
            ("threshold", String(p.threshold)), ("degree", String(p.degree)), ("graph_seed", string(Hex.encode(p.graphSeed))),
            ("cohort", array(p.cohort.map(string))),
            ("neighbours", array(view.neighbours.map { ad in
                object([("tenant", string(ad.tenant)), ("identity_key", string(Hex.encode(ad.identityKey))),
                        ("encryption_key", string(Hex.encode(ad.encryptionKey))), ("mask_key", string(Hex.encode(ad.maskKey))),
                        ("seed_commitment", string(Hex.encode(ad.seedCommitment))), ("signature", string(Hex.encode(ad.signature)))])
            })),
            ("shared_neighbours", array(view.sharedNeighbours.map(string))),
            ("survivors", array(view.survivors.map(string))),
            ("shares", array(view.shares.map { object([("from", string($0.from)), ("ciphertext", string(Hex.encode($0.ciphertext)))]) })),
        ])
    }

    public static func view(_ o: [String: Any], round: UInt64, modelVersion: UInt64) throws -> SecureAggregation.RoundView {
        guard let stageName = o["stage"] as? String, let stage = SecureAggregation.RoundView.Stage(name: stageName) else { throw Malformed(field: "stage") }
        // A Unix time in seconds: anything outside [0, 1e11) (year 5138) is
        // not a deadline. It is kept to the millisecond, on both sides of the
        // wire: Foundation's JSON parser is not correctly rounded, so a value
        // with more digits need not come back from a render and re-parse as
        // the same double (found by fuzzing: 1800000000.8080808085).
        let deadline = Self.milliseconds(try number(o, "stage_deadline"))
        guard deadline >= 0, deadline < 1e11 else { throw Malformed(field: "stage_deadline") }
        let parameters = try SecureAggregation.RoundParameters(round: round, modelVersion: modelVersion, cohort: try strings(o, "cohort"),
                                                               threshold: try count(o, "threshold"), degree: try count(o, "degree"),
                                                               graphSeed: try hex(o, "graph_seed", bytes: 32))
        let neighbours = try objects(o, "neighbours").enumerated().map { i, n in
            let at = "neighbours[\(i)]."
            guard let tenant = n["tenant"] as? String else { throw Malformed(field: at + "tenant") }
            return SecureAggregation.Advertisement(tenant: tenant, identityKey: try hex(n, "identity_key", bytes: 32, at: at),
                                                   encryptionKey: try hex(n, "encryption_key", bytes: 32, at: at),
                                                   maskKey: try hex(n, "mask_key", bytes: 32, at: at),
                                                   seedCommitment: try hex(n, "seed_commitment", bytes: 32, at: at),
                                                   signature: try hex(n, "signature", bytes: 64, at: at))
        }
        let shares = try objects(o, "shares").enumerated().map { i, s in
            guard let from = s["from"] as? String else { throw Malformed(field: "shares[\(i)].from") }
            return SecureAggregation.EncryptedShare(from: from, to: "", ciphertext: try hex(s, "ciphertext", bytes: SecureAggregation.shareCiphertextBytes,
                                                                                       at: "shares[\(i)]."))
        }
        return SecureAggregation.RoundView(parameters: parameters, stage: stage, stageDeadline: deadline, neighbours: neighbours,
                                           sharedNeighbours: try strings(o, "shared_neighbours"), survivors: try strings(o, "survivors"), shares: shares)
    }

    // MARK: Stage answers

    public static func advertisement(_ ad: SecureAggregation.Advertisement) -> String {
        object([("encryption_key", string(Hex.encode(ad.encryptionKey))), ("mask_key", string(Hex.encode(ad.maskKey))),
                ("seed_commitment", string(Hex.encode(ad.seedCommitment))), ("signature", string(Hex.encode(ad.signature)))])
    }

    /// An advertisement's keys and signature (the coordinator adds the tenant and its identity key).
    public static func advertisement(_ o: [String: Any]) throws -> (encryptionKey: [UInt8], maskKey: [UInt8], seedCommitment: [UInt8], signature: [UInt8]) {
        (try hex(o, "encryption_key", bytes: 32), try hex(o, "mask_key", bytes: 32), try hex(o, "seed_commitment", bytes: 32), try hex(o, "signature", bytes: 64))
    }

    public static func shares(_ shares: [SecureAggregation.EncryptedShare]) -> String {
        object([("shares", array(shares.map { object([("to", string($0.to)), ("ciphertext", string(Hex.encode($0.ciphertext)))]) }))])
    }

    public static func shares(_ o: [String: Any]) throws -> [(to: String, ciphertext: [UInt8])] {
        try objects(o, "shares").enumerated().map { i, s in
            guard let to = s["to"] as? String else { throw Malformed(field: "shares[\(i)].to") }
            return (to, try hex(s, "ciphertext", bytes: SecureAggregation.shareCiphertextBytes, at: "shares[\(i)]."))
        }
    }

    public static func reveals(_ reveals: [SecureAggregation.RevealedShare]) -> String {
        object([("shares", array(reveals.map {
            object([("owner", string($0.owner)), ("kind", string($0.kind.rawValue)), ("x", String($0.share.x)),
                    ("values", string(Hex.encode($0.share.values.flatMap(SecureAggregation.littleEndianBytes))))])
        }))])
    }

    public static func reveals(_ o: [String: Any]) throws -> [SecureAggregation.RevealedShare] {
        try objects(o, "shares").enumerated().map { i, s in
            let at = "shares[\(i)]."
            guard let owner = s["owner"] as? String else { throw Malformed(field: at + "owner") }
            guard let kindName = s["kind"] as? String, let kind = SecureAggregation.RevealedShare.Kind(rawValue: kindName) else { throw Malformed(field: at + "kind") }
            let x = try count(s, "x", at: at)
            guard x >= 1 else { throw Malformed(field: at + "x") }
            let bytes = try hex(s, "values", bytes: 8 * SecureAggregation.shareElements, at: at)
            return SecureAggregation.RevealedShare(owner: owner, kind: kind, share: .init(x: UInt64(x), values: SecureAggregation.littleEndianWords(bytes)))
        }
    }

    /// A request body as a JSON object, or the error naming what it is not.
    public static func body(_ bytes: [UInt8]) throws -> [String: Any] {
        guard let o = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else { throw Malformed(field: "body (not a JSON object)") }
        return o
    }

    // MARK: Helpers

    static func hex(_ o: [String: Any], _ name: String, bytes: Int, at prefix: String = "") throws -> [UInt8] {
        guard let text = o[name] as? String, text.utf8.count == 2 * bytes, let value = Hex.decode(text) else {
            throw Malformed(field: "\(prefix)\(name) (\(bytes) bytes in hex)")
        }
        return value
    }

    /// `seconds` rounded to the millisecond.
    static func milliseconds(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }

    static func number(_ o: [String: Any], _ name: String, at prefix: String = "") throws -> Double {
        guard let value = jsonNumber(o[name]) else { throw Malformed(field: prefix + name) }
        return value
    }

    /// A JSON number as a finite double; nil for anything else. (`true`
    /// decodes to an NSNumber too, and on Linux `NSNumber(1) is Bool` holds:
    /// the encoding, "c" for a boolean, tells them apart.)
    public static func jsonNumber(_ value: Any?) -> Double? {
        guard let number = value as? NSNumber, String(cString: number.objCType) != "c", number.doubleValue.isFinite else { return nil }
        return number.doubleValue
    }

    /// A whole number in 0..<65536 (a cohort's sizes and points never exceed it).
    static func count(_ o: [String: Any], _ name: String, at prefix: String = "") throws -> Int {
        let value = try number(o, name, at: prefix)
        guard value >= 0, value < 65536, value == value.rounded() else { throw Malformed(field: prefix + name) }
        return Int(value)
    }

    static func strings(_ o: [String: Any], _ name: String) throws -> [String] {
        guard let value = o[name] as? [String] else { throw Malformed(field: name) }
        return value
    }

    static func objects(_ o: [String: Any], _ name: String) throws -> [[String: Any]] {
        guard let value = o[name] as? [[String: Any]] else { throw Malformed(field: name) }
        return value
    }

    static func object(_ members: [(String, String)]) -> String { "{" + members.map { string($0.0) + ":" + $0.1 }.joined(separator: ",") + "}" }
    static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }

    static func string(_ s: String) -> String {
        // Ids, hex and stage names need no escaping: the common case copies.
        if !s.utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }) { return "\"" + s + "\"" }
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    enum JSONNumber {
        static func format(_ d: Double) -> String { d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : "\(d)" }
    }
}
