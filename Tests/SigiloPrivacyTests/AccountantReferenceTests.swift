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

    @Test(.enabled(if: rows != nil, "../shared/reference/epsilon-vectors.json is absent: skipping reference vectors"))
    func rdpMatchesEveryReferenceRowWithinHalfAPercent() throws {
        for row in Self.rows! {
            let m = try SubsampledGaussian(sampleRate: row.sample_rate, noiseMultiplier: row.noise_multiplier)
            let e = try RDPAccountant.epsilon(m, steps: row.steps, delta: row.delta)
            #expect(abs(e - row.epsilon_rdp) / row.epsilon_rdp < 0.005, "q=\(row.sample_rate) z=\(row.noise_multiplier) T=\(row.steps): \(e) vs \(row.epsilon_rdp)")
        }
    }

    @Test(.enabled(if: rows != nil, "../shared/reference/epsilon-vectors.json is absent: skipping reference vectors"))
    func pldMatchesEveryReferenceRowWithinOnePercent() throws {
        for row in Self.rows! {
            let m = try SubsampledGaussian(sampleRate: row.sample_rate, noiseMultiplier: row.noise_multiplier)
            let e = try PLDAccountant.epsilon(m, steps: row.steps, delta: row.delta)
            #expect(abs(e - row.epsilon_pld) / row.epsilon_pld < 0.01, "q=\(row.sample_rate) z=\(row.noise_multiplier) T=\(row.steps): \(e) vs \(row.epsilon_pld)")
        }
    }
}
