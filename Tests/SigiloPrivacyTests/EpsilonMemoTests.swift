import Foundation
import Testing
import SigiloPrivacy

@Suite struct EpsilonMemoTests {
    @Test func remembersEachCompositionAndKeepsThemApart() throws {
        let memo = EpsilonMemo()
        let a = try SubsampledGaussian(sampleRate: 0.1, noiseMultiplier: 1.2)
        let b = try SubsampledGaussian(sampleRate: 0.2, noiseMultiplier: 1.5)
        var ledger = try PrivacyLedger(delta: 1e-5)
        for i in 0..<30 { try ledger.charge(round: "r\(i)", i % 3 == 0 ? b : a, at: Date(timeIntervalSince1970: Double(i))) }
        // Every answer equals the accountant's, first and remembered alike.
        for _ in 0..<2 {
            #expect(try memo.epsilon(ledger) == ledger.epsilon())
            #expect(try memo.epsilon(ledger, adding: a) == ledger.epsilon(adding: a))
            #expect(try memo.epsilon(ledger, adding: b) == ledger.epsilon(adding: b))
        }
        // The ε a round would take the ledger to is the ε once it is charged (what close records after open checked).
        let before = try memo.epsilon(ledger, adding: a)
        try ledger.charge(round: "r30", a, at: Date(timeIntervalSince1970: 30))
        #expect(try memo.epsilon(ledger) == before)
        // δ is part of the composition.
        var other = try PrivacyLedger(delta: 1e-6)
        for (i, entry) in ledger.entries.enumerated() {
            try other.charge(round: "o\(i)", SubsampledGaussian(sampleRate: entry.sampleRate, noiseMultiplier: entry.noiseMultiplier), at: entry.time)
        }
        #expect(try memo.epsilon(other) == other.epsilon())
        #expect(try memo.epsilon(other) > memo.epsilon(ledger))
    }
}
