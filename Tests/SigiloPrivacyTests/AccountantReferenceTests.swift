import Foundation
import Testing
@testable import SigiloPrivacy

/// Checks both accountants against Google's dp-accounting (../shared/reference/epsilon-vectors.json).
@Suite struct AccountantReferenceTests {
    struct Row: Decodable {
        var sample_rate: Double
        var noise_multiplier: Double
        var steps: Int
        var delta: Double
        var epsilon_rdp: Double
        var epsilon_pld: Double
    }

    static let rows: [Row]? = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let url = root.deletingLastPathComponent().appendingPathComponent("shared/reference/epsilon-vectors.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return try? JSONDecoder().decode([Row].self, from: data)
    }()

    /// RDP within 0.5% (ours is exact where dp-accounting's series overshoots), PLD within 1%.
    @Test(.enabled(if: rows != nil, "../shared/reference/epsilon-vectors.json is absent: skipping reference vectors"),
          arguments: [(AccountantKind.rdp, 0.005), (AccountantKind.pld, 0.01)])
    func matchesEveryReferenceRow(_ accountant: AccountantKind, _ tolerance: Double) throws {
        for row in Self.rows! {
            let m = try SubsampledGaussian(sampleRate: row.sample_rate, noiseMultiplier: row.noise_multiplier)
            let e = try accountant.epsilon([(m, row.steps)], delta: row.delta)
            let reference = accountant == .rdp ? row.epsilon_rdp : row.epsilon_pld
            #expect(abs(e - reference) / reference < tolerance, "\(accountant) q=\(row.sample_rate) z=\(row.noise_multiplier) T=\(row.steps): \(e) vs \(reference)")
        }
    }
}
