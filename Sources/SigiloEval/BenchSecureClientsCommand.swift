import Foundation
import SigiloCLI
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloModel
import SigiloPrivacy
import SigiloProtocol

/// `sigilo-eval bench-secure-clients`: the tenants of tools/bench-secure. N
/// light clients in one process, each on its own thread with its own
/// kept-alive connection, enrol and take part in secure rounds through the
/// real client library and the real protocol steps (signed round keys,
/// encrypted shares, masked input with a noise share, reveals). Instead of
/// training, each answers the small-noise update bench-client sends. With
/// `--dropout P` a client vanishes from a round with probability P at a
/// uniformly random stage: it stops answering, as a tenant that lost its
/// connection would, and comes back for the next round.
///
/// Prints one JSON line per client and round: the stage it dropped at (or
/// none), its CPU seconds for the round's steps, and the request bodies it
/// sent, beside what a plain float32 update of the same dimension weighs.
enum BenchSecureClientsCommand {
    static let spec = CommandSpec(
        name: "bench-secure-clients",
        summary: "Benchmark clients for tools/bench-secure: N light tenants in one process take part in R secure rounds.",
        usage: "sigilo-eval bench-secure-clients --coordinator URL --tokens FILE --rounds R [--dropout P] [--seed S]",
        options: [.value("coordinator", "URL", "Coordinator base URL."),
                  .value("tokens", "FILE", "One-time enrolment tokens, one per line: one client each."),
                  .value("rounds", "R", "Rounds each client takes part in (warm-up included)."),
                  .value("dropout", "P", "Probability that a client vanishes from a round, at a uniformly random stage (default 0)."),
                  .value("seed", "S", "Seed of the dropouts and of the updates' noise (not privacy noise: a stand-in for training; default 1).")])

    /// What one client did in one round.
    struct Record: Sendable {
        var client: Int
        var round: UInt64
        var droppedAt: String?
        var cpuSeconds: Double
        var bytesSent: Int
        var plainBytes: Int
        var outcome: String

        var json: String {
            let dropped = droppedAt.map { "\"\($0)\"" } ?? "null"
            return #"{"client":\#(client),"round":\#(round),"dropped_at":\#(dropped),"cpu_s":\#(String(format: "%.4f", cpuSeconds)),"bytes_sent":\#(bytesSent),"plain_update_bytes":\#(plainBytes),"outcome":"\#(outcome)"}"#
        }
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        guard let url = URL(string: try args.required("coordinator")) else { throw CLIError.usage("bench-secure-clients: --coordinator is not a URL") }
        let tokensFile = try args.required("tokens")
        guard let text = try? String(contentsOfFile: tokensFile, encoding: .utf8) else {
            throw CLIError(.noInput, "bench-secure-clients: cannot read \(tokensFile)")
        }
        let tokens = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        guard !tokens.isEmpty else { throw CLIError(.dataError, "bench-secure-clients: \(tokensFile) holds no tokens") }
        let rounds = try args.int("rounds", range: 1...10_000) ?? 3
        let dropout = try args.double("dropout", where: { (0...1).contains($0) }, expectation: "a probability in [0, 1]") ?? 0
        let seed = UInt64(try args.int("seed", range: 0...Int.max) ?? 1)

        let output = LockedLines()
        let failures = LockedLines()
        let done = DispatchGroup()
        // Masking is the one step that holds several d-sized vectors at once:
        // a few at a time bound the process's memory (the two cores bound the pace anyway).
        let masking = DispatchSemaphore(value: 4)
        for (index, token) in tokens.enumerated() {
            done.enter()
            let thread = Thread {
                defer { done.leave() }
                do {
                    let client = try LightClient(index: index, coordinator: url, seed: seed, dropout: dropout, masking: masking)
                    try client.run(token: token, rounds: rounds) { output.append($0.json) }
                } catch {
                    failures.append("client \(index): \(error)")
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        done.wait()
        for line in output.lines { print(line) }
        if let first = failures.lines.first {
            throw CLIError(.failure, "bench-secure-clients: \(failures.lines.count) of \(tokens.count) clients failed; first: \(first)")
        }
    }

    /// Lines appended from many threads.
    final class LockedLines: @unchecked Sendable {
        private let lock = NSLock()
        private var storage = [String]()
        func append(_ line: String) { lock.withLock { storage.append(line) } }
        var lines: [String] { lock.withLock { storage } }
    }

    /// One tenant: the steps of SecureParticipation and participate, without a
    /// store (its round secrets live in memory) and without training.
    final class LightClient {
        typealias Stage = SecureAggregation.RoundView.Stage
        let index: Int
        let client: CoordinatorClient
        let seed: UInt64
        let dropout: Double
        let masking: DispatchSemaphore
        let identity: Ed25519.KeyPair
        let random = SecureRandom()

        init(index: Int, coordinator: URL, seed: UInt64, dropout: Double, masking: DispatchSemaphore) throws {
            self.index = index
            self.seed = seed
            self.dropout = dropout
            self.masking = masking
            identity = try Ed25519.KeyPair.generate()
            client = CoordinatorClient(baseURL: coordinator, keyId: "enroll", key: identity, timeout: 120)
        }

        /// Where this client vanishes from `round`, if it does: the same for a seed, client and round.
        func fate(round: UInt64) -> Stage? {
            var rng = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(index) &* 0xBF58_476D_1CE4_E5B9 ^ round)
            guard Double.random(in: 0..<1, using: &rng) < dropout else { return nil }
            return Stage(rawValue: Int.random(in: 0..<4, using: &rng))
        }

        func run(token: String, rounds: Int, report: (Record) -> Void) throws {
            try client.enroll(token: token)
            let plan = try client.plan()
            var noiseRNG = SplitMix64(seed: seed ^ UInt64(index + 1) << 32)
            let updateNoise = BenchClientCommand.TableNoise(standardDeviation: 0.01, using: &noiseRNG)
            let plainBytes = UpdateEnvelope(round: 1, modelVersion: 1, flags: [], weight: 100, values: [Float](repeating: 0, count: plan.dimension)).encoded().count
            var finished: UInt64 = 0
            var record: Record?
            var secrets: SecureAggregation.RoundSecrets?
            var taken = 0
            while taken < rounds {
                guard let info = try client.currentRound(wait: 25) else { continue }
                guard info.round > finished else {
                    // Gone from this round (the coordinator answers its polls at once, since the
                    // round still awaits it): look again a second later, as a tenant coming back would.
                    if info.awaited { Thread.sleep(forTimeInterval: 1) }
                    continue
                }
                func finish(_ outcome: String) {
                    record!.outcome = outcome
                    report(record!)
                    finished = record!.round
                    taken += 1
                }
                if let open = record, open.round != info.round {
                    // The round ended between two polls (its unmask stage closed on the others' shares).
                    if open.round > finished { finish("ended_unseen") }
                    guard taken < rounds else { break }
                }
                if record?.round != info.round {
                    record = Record(client: index, round: info.round, droppedAt: nil, cpuSeconds: 0, bytesSent: 0, plainBytes: plainBytes, outcome: "")
                    secrets = nil
                }
                guard let view = info.secure else { finish("not_in_cohort"); continue }
                if !info.awaited {
                    if !info.answered { finish("left_behind") } // it missed a stage: the round goes on without it
                    continue
                }
                if let vanish = fate(round: info.round), vanish <= view.stage {
                    record!.droppedAt = vanish.name
                    finish("dropped")
                    continue
                }
                let started = BenchSecureClientsCommand.threadCPUSeconds()
                var sent = 0
                var closedEarly = false
                do {
                    switch view.stage {
                    case .advertise:
                        let fresh = try SecureAggregation.RoundSecrets.generate()
                        secrets = fresh
                        let ad = try SecureAggregation.Advertisement.signed(round: info.round, tenant: client.keyId, identity: identity, secrets: fresh)
                        let body = SecureRoundWire.advertisement(ad)
                        sent = body.utf8.count
                        try client.advertise(ad, round: info.round)
                    case .share:
                        guard let secrets else { throw CLIError(.failure, "round \(info.round): asked for shares before advertising") }
                        let shares = try SecureAggregation.shares(of: client.keyId, secrets: secrets, parameters: view.parameters,
                                                                  neighbours: view.neighbours, random: { self.random.next() })
                        sent = SecureRoundWire.shares(shares).utf8.count
                        try client.sendShares(shares, round: info.round)
                    case .mask:
                        guard let secrets else { throw CLIError(.failure, "round \(info.round): asked for its input before advertising") }
                        masking.wait()
                        let bytes: [UInt8]
                        do {
                            defer { masking.signal() }
                            let values = updateNoise.draw(plan.dimension, using: &noiseRNG)
                            let release = try SecureAggregation.noiseShare(plan, threshold: view.parameters.threshold).gridRelease(values, using: random)
                            let masked = try SecureAggregation.maskedInput(release, tenant: client.keyId, secrets: secrets, parameters: view.parameters,
                                                                           sharedNeighbours: view.maskedWith)
                            bytes = UpdateEnvelope(round: info.round, modelVersion: info.modelVersion, weight: 100, masked: masked).encoded()
                        }
                        sent = bytes.count
                        _ = try client.submit(encoded: bytes, round: info.round)
                    case .unmask:
                        guard let secrets else { throw CLIError(.failure, "round \(info.round): asked to unmask before advertising") }
                        let reveals = try SecureAggregation.reveal(tenant: client.keyId, secrets: secrets, parameters: view.parameters,
                                                                   maskedWith: view.maskedWith, received: view.shares,
                                                                   survivors: Set(view.survivors), answered: nil)
                        sent = SecureRoundWire.reveals(reveals).utf8.count
                        do { try client.reveal(reveals, round: info.round) } catch let e as ClientError where e.code == "wrong_round" {
                            closedEarly = true // the others' shares sufficed: the round closed without this one's
                        }
                    }
                } catch let e as ClientError where e.code == "dropped_out" || e.code == "wrong_stage" || e.code == "wrong_round" {
                    // Too slow for a deadline on this loaded machine: the round went on without it.
                    record!.cpuSeconds += BenchSecureClientsCommand.threadCPUSeconds() - started
                    finish("late: \(e.code)")
                    continue
                }
                record!.cpuSeconds += BenchSecureClientsCommand.threadCPUSeconds() - started
                record!.bytesSent += sent
                if view.stage == .unmask { finish(closedEarly ? "closed_before_reveal" : "completed") }
            }
        }
    }

    /// CPU time of the calling thread.
    static func threadCPUSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
