import Foundation
import SigiloCLI
import SigiloClient
import SigiloCrypto
import SigiloModel
import SigiloProtocol

/// `sigilo-eval bench-client`: the client side of tools/bench-round, doing the
/// work Flower's anchor clients do (../shared/reference/flower): each round it
/// downloads the model (verifying its signature) and answers with an update of
/// small noise, N(0, 0.01²) per value, so what is measured is the coordinator,
/// the transport and the aggregation, not learning.
enum BenchClientCommand {
    /// N(0, sigma²) values drawn from a table of 65,536 Box-Muller samples, 16
    /// random bits a value: a stand-in for training that costs about what
    /// numpy's generator costs Flower's anchor clients (a Box-Muller pair per
    /// two values, with its log, sqrt, cos and sin, cost 50 clients 5 CPU
    /// seconds a round at d = 4M, on the 2 cores the coordinator needs).
    struct TableNoise {
        let table: [Float]

        init(standardDeviation: Double, using rng: inout SplitMix64) {
            var table = [Float]()
            table.reserveCapacity(1 << 16)
            while table.count < 1 << 16 {
                let u1 = Double.random(in: Double.ulpOfOne..<1, using: &rng), u2 = Double.random(in: 0..<1, using: &rng)
                let r = (-2 * log(u1)).squareRoot() * standardDeviation
                table.append(Float(r * cos(2 * .pi * u2)))
                table.append(Float(r * sin(2 * .pi * u2)))
            }
            self.table = table
        }

        func draw(_ count: Int, using rng: inout SplitMix64) -> [Float] {
            [Float](unsafeUninitializedCapacity: count) { out, initialized in
                table.withUnsafeBufferPointer { table in
                    var i = 0
                    while i < count {
                        var bits = rng.next()
                        for _ in 0..<min(4, count - i) {
                            out[i] = table[Int(bits & 0xffff)]
                            bits >>= 16
                            i += 1
                        }
                    }
                }
                initialized = count
            }
        }
    }

    static let spec = CommandSpec(
        name: "bench-client",
        summary: "Benchmark client for tools/bench-round: enrol, then answer ROUNDS rounds with small-noise updates.",
        usage: "sigilo-eval bench-client --coordinator URL --token T --rounds R [--weight W] [--seed S]",
        options: [.value("coordinator", "URL", "Coordinator base URL."), .value("token", "T", "One-time enrolment token."),
                  .value("rounds", "R", "Rounds to answer."), .value("weight", "W", "Declared weight q x population (default 100)."),
                  .value("seed", "S", "Seed of the update noise (not privacy noise: a stand-in for training).")])

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        guard let url = URL(string: try args.required("coordinator")) else { throw CLIError.usage("bench-client: --coordinator is not a URL") }
        let rounds = try args.int("rounds", range: 1...100_000) ?? 6
        let weight = try args.double("weight", where: { $0 > 0 }, expectation: "a number > 0") ?? 100
        var rng = SplitMix64(seed: UInt64(try args.int("seed", range: 0...Int.max) ?? 1))
        let noise = TableNoise(standardDeviation: 0.01, using: &rng)
        let client = CoordinatorClient(baseURL: url, keyId: "enroll", key: try Ed25519.KeyPair.generate(), timeout: 300)
        do {
            try client.enroll(token: try args.required("token"))
            var last: UInt64 = 0
            var answered = 0
            while answered < rounds {
                var info: CoordinatorClient.RoundInfo?
                while info == nil {
                    if let round = try client.currentRound(wait: 30), round.round > last, !round.submitted { info = round }
                }
                let round = info!
                _ = try client.model(version: round.modelVersion)
                let values = noise.draw(round.dimension, using: &rng)
                last = round.round
                do {
                    _ = try client.submit(UpdateEnvelope(round: round.round, modelVersion: round.modelVersion, flags: [], weight: weight, values: values))
                } catch let e as ClientError where e.code == "not_in_round" {
                    continue // enrolled after this round opened: the next one counts it
                }
                answered += 1
            }
        } catch let e as ClientError {
            throw CLIError(.failure, "bench-client: \(e)")
        }
    }
}
