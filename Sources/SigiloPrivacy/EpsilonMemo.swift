import Foundation

/// ε of ledger compositions, each computed once.
///
/// The PLD accountant takes about a second at a thousand rounds with q < 1,
/// and both sides ask for the same composition again and again: the
/// coordinator for the budget check before a round opens, the ε recorded when
/// it closes (the same rounds), every status and /metrics scrape; a tenant's
/// `run` loop for its own limit before every poll (a few hundred milliseconds
/// each, three times a second at a short poll). The ledger only grows, so a
/// composition's ε never changes; the key is the multiset of (q, z) and δ.
/// Thread-safe, so the service can compute outside its own lock.
public final class EpsilonMemo: @unchecked Sendable {
    struct Key: Hashable {
        var delta: Double
        var rounds: [SubsampledGaussian: Int]
    }

    private let lock = NSLock()
    private var known: [Key: Double] = [:]
    /// Compositions kept; a plan change starts new ones, old ones are dropped wholesale.
    static let capacity = 64

    public init() {}

    /// ε of `ledger`'s rounds, plus `round` if given (the ε a round would take the ledger to).
    public func epsilon(_ ledger: PrivacyLedger, adding round: SubsampledGaussian? = nil) throws -> Double {
        var rounds = [SubsampledGaussian: Int]()
        for entry in ledger.entries {
            rounds[try SubsampledGaussian(sampleRate: entry.sampleRate, noiseMultiplier: entry.noiseMultiplier), default: 0] += 1
        }
        if let round { rounds[round, default: 0] += 1 }
        let key = Key(delta: ledger.delta, rounds: rounds)
        if let epsilon = lock.withLock({ known[key] }) { return epsilon }
        let epsilon = try round.map { try ledger.epsilon(adding: $0) } ?? ledger.epsilon()
        lock.withLock {
            if known.count >= Self.capacity { known.removeAll() }
            known[key] = epsilon
        }
        return epsilon
    }
}
