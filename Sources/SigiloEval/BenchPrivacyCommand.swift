import Foundation
import SigiloCLI
import SigiloPrivacy

/// `sigilo-eval bench-privacy`: timings of the privacy core, for tools/bench-privacy.
enum BenchPrivacyCommand {
    static let spec = CommandSpec(
        name: "bench-privacy",
        summary: "Time secure noise sampling and the accountants (prints JSON; used by tools/bench-privacy).",
        usage: "sigilo-eval bench-privacy [--dimension D] [--repeats R]",
        options: [
            .value("dimension", "D", "Noise values per timed run (default 10000000)."),
            .value("repeats", "R", "Timed repetitions; the median is reported (default 5)."),
        ])

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let d = try args.int("dimension", range: 1...100_000_000) ?? 10_000_000
        let repeats = try args.int("repeats", range: 1...100) ?? 5
        let mechanism = try GaussianNoise(clipNorm: 1, noiseMultiplier: 1, dimension: d)
        let rng = SecureRandom()
        var values = [Float](repeating: 0, count: d)
        let noiseTimes = try (0..<repeats).map { _ in try seconds { try mechanism.privatize(&values, using: rng) } }
        let round = try SubsampledGaussian(sampleRate: 0.01, noiseMultiplier: 1.1)
        let rdpTimes = try (0..<repeats).map { _ in try seconds { _ = try RDPAccountant.epsilon(round, steps: 100_000, delta: 1e-5) } }
        let pldRound = try SubsampledGaussian(sampleRate: 0.1, noiseMultiplier: 1.0)
        let pldTimes = try (0..<max(1, repeats / 2)).map { _ in try seconds { _ = try PLDAccountant.epsilon(pldRound, steps: 1000, delta: 1e-5) } }
        OutputStream.standardOutput.write(JSON.object([
            ("noise_dimension", .integer(d)),
            ("noise_seconds", .number(median(noiseTimes))),
            ("noise_samples_per_second", .number(Double(d) / median(noiseTimes))),
            ("grid_bits", .integer(mechanism.gridBits)),
            ("rdp_100000_rounds_seconds", .number(median(rdpTimes))),
            ("pld_1000_rounds_seconds", .number(median(pldTimes))),
        ]).rendered() + "\n")
    }
}
