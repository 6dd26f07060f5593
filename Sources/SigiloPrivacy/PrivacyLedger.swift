import Foundation

/// Every round charged against a population of customers, and the privacy
/// those rounds spent. Kept by the coordinator for its plan and by each
/// tenant for its own customers, so neither has to trust the other's count.
public struct PrivacyLedger: Codable, Equatable, Sendable {
    public struct Entry: Codable, Equatable, Sendable {
        public var round: String
        public var sampleRate: Double
        public var noiseMultiplier: Double
        public var time: Date
    }

    public private(set) var delta: Double
    public private(set) var entries: [Entry]

    public init(delta: Double) throws {
        try validateDelta(delta)
        self.delta = delta
        entries = []
    }

    /// ε spent by the charged rounds (identical rounds grouped: no loop over rounds in the accountant).
    public func epsilon(accountant: AccountantKind = .pld) throws -> Double {
        try accountant.epsilon(grouped(entries.map { try SubsampledGaussian(sampleRate: $0.sampleRate, noiseMultiplier: $0.noiseMultiplier) }), delta: delta)
    }

    /// Whether charging `round` would take ε above `limit`. Asked before a
    /// round opens (coordinator) or before joining it (tenant).
    public func wouldExceed(_ limit: Double, adding round: SubsampledGaussian, accountant: AccountantKind = .pld) throws -> Bool {
        guard limit.isFinite, limit > 0 else { throw PrivacyParameterError("epsilon limit must be a finite number > 0, got \(limit)") }
        return try epsilon(adding: round, accountant: accountant) > limit
    }

    /// ε once `round` is charged too (what `wouldExceed` compares with the limit).
    public func epsilon(adding round: SubsampledGaussian, accountant: AccountantKind = .pld) throws -> Double {
        let existing = try entries.map { try SubsampledGaussian(sampleRate: $0.sampleRate, noiseMultiplier: $0.noiseMultiplier) }
        return try accountant.epsilon(grouped(existing + [round]), delta: delta)
    }

    /// Records a round. A round id can be charged once.
    public mutating func charge(round id: String, _ round: SubsampledGaussian, at time: Date) throws {
        guard !id.isEmpty else { throw PrivacyParameterError("round id is empty") }
        guard !entries.contains(where: { $0.round == id }) else { throw PrivacyParameterError("round \(id) is already charged") }
        entries.append(Entry(round: id, sampleRate: round.sampleRate, noiseMultiplier: round.noiseMultiplier, time: time))
    }

    func grouped(_ rounds: [SubsampledGaussian]) -> [(SubsampledGaussian, Int)] {
        var counts = [SubsampledGaussian: Int]()
        var order = [SubsampledGaussian]()
        for r in rounds {
            if counts[r] == nil { order.append(r) }
            counts[r, default: 0] += 1
        }
        return order.map { ($0, counts[$0]!) }
    }

    /// JSON with sorted keys and ISO 8601 times.
    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self)
    }

    /// Decodes and validates a ledger (every parameter range, unique round ids).
    public static func decode(_ data: Data) throws -> PrivacyLedger {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let ledger: PrivacyLedger
        do { ledger = try decoder.decode(PrivacyLedger.self, from: data) } catch {
            throw PrivacyParameterError("privacy ledger is not valid JSON of the expected shape: \(error)")
        }
        try validateDelta(ledger.delta)
        var seen = Set<String>()
        for e in ledger.entries {
            _ = try SubsampledGaussian(sampleRate: e.sampleRate, noiseMultiplier: e.noiseMultiplier)
            guard seen.insert(e.round).inserted else { throw PrivacyParameterError("round \(e.round) appears twice in the ledger") }
        }
        return ledger
    }
}
