import Foundation
import SigiloCLI
import SigiloFederation
import SigiloPrivacy

/// `sigilo-eval bench-aggregate`: the coordinator's aggregation arithmetic,
/// timed the way ../shared/reference/aggregate_numpy.py times numpy's.
enum BenchAggregateCommand {
    static let spec = CommandSpec(
        name: "bench-aggregate",
        summary: "Time clip + sum + secure noise of K updates of D float32 values (JSON; used by tools/bench-aggregate).",
        usage: "sigilo-eval bench-aggregate --dimension D --updates K",
        options: [.value("dimension", "D", "Values per update."), .value("updates", "K", "Number of updates.")])

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let d = try args.int("dimension", range: 1...50_000_000) ?? 1_000_000
        let k = try args.int("updates", range: 1...1000) ?? 10
        var rng = SystemRandomNumberGenerator()
        let updates = (0..<k).map { _ in (0..<d).map { _ in Float.random(in: -1...1, using: &rng) } }
        let noise = try GaussianNoise(clipNorm: 1, noiseMultiplier: 1, dimension: d)
        let secure = SecureRandom()
        var bestSum = Double.infinity, bestTotal = Double.infinity, bestAllCores = Double.infinity
        for _ in 0..<5 {
            let start = DispatchTime.now().uptimeNanoseconds
            var sum = RoundSum(dimension: d)
            for u in updates { sum.add(u, scale: Float(min(1, 1 / RoundSum.norm(u))), weight: 1) }
            let summed = DispatchTime.now().uptimeNanoseconds
            var values = sum.values
            try noise.privatize(&values, using: secure)
            let scale = Float(1) / Float(k)
            for i in values.indices { values[i] *= scale }
            let end = DispatchTime.now().uptimeNanoseconds
            // The coordinator's close draws the noise on all cores.
            var parallel = sum.values
            let noiseStart = DispatchTime.now().uptimeNanoseconds
            try noise.privatizeOnAllCores(&parallel)
            for i in parallel.indices { parallel[i] *= scale }
            let noiseEnd = DispatchTime.now().uptimeNanoseconds
            bestSum = min(bestSum, Double(summed - start) / 1e9)
            bestTotal = min(bestTotal, Double(end - start) / 1e9)
            bestAllCores = min(bestAllCores, Double(summed - start + noiseEnd - noiseStart) / 1e9)
        }
        OutputStream.standardOutput.write(JSON.object([
            ("dimension", .integer(d)), ("updates", .integer(k)),
            ("clip_sum_seconds", .number(bestSum)), ("clip_sum_noise_seconds", .number(bestTotal)),
            ("clip_sum_noise_all_cores_seconds", .number(bestAllCores)), ("cores", .integer(ProcessInfo.processInfo.activeProcessorCount)),
        ]).rendered() + "\n")
    }
}
