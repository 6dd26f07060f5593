import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloFederation
import SigiloModel
import SigiloPrivacy
import SigiloProtocol
import SigiloText

/// A labelled data set split into tenants and customers, featurised once.
struct FederatedData {
    var labels: [String]
    var features: FeatureConfiguration
    /// Makes the features of `features` (the encoder's part included) for any other text the command reads.
    var extractor: FeatureExtractor
    /// Every training row (a customer's message) as features and label index.
    var train: EncodedExamples
    /// Per tenant, per customer: rows of `train`.
    var tenants: [[[Int]]]
    var test: EncodedExamples

    var customerCount: Int { tenants.reduce(0) { $0 + $1.count } }

    /// The rows of one tenant (all its customers' messages).
    func rows(ofTenant t: Int) -> [Int] { tenants[t].flatMap { $0 } }

    /// The options every command that splits data shares.
    static let options: [OptionSpec] = [
        .value("train", "FILE", "Labelled training data {\"text\",\"intent\"}."),
        .value("test", "FILE", "Labelled test data."),
        .value("tenants", "N", "Tenants (default 20)."),
        .value("partition", "iid|dirichlet:ALPHA", "How intents are spread over tenants (default dirichlet:0.5)."),
        .value("customer-messages", "M", "Messages per customer, within a tenant (default 3)."),
        .value("partition-file", "FILE", "Read tenants and customers from a split file (../shared/reference/pfl/split.json format) instead."),
        .value("buckets", "N", "Hash buckets (default 4096)."),
        .value("seed", "S", "Seed of the split, sampling and local training (default 1)."),
    ] + FeatureOptions.specs

    /// Loads and splits the files named by `args`; `plant`, given the data's
    /// intents, returns the messages of extra customers, customer i joining
    /// tenant i mod tenants (the canary audit).
    static func load(_ args: ParsedArguments, plant: ([String]) throws -> [[LabeledExample]] = { _ in [] }) throws -> FederatedData {
        let tenantsCount = try args.int("tenants", range: 1...10_000) ?? 20
        let m = try args.int("customer-messages", range: 1...10_000) ?? 3
        let buckets = try args.int("buckets") ?? 4096
        guard buckets > 0, buckets & (buckets - 1) == 0, (8...20).contains(buckets.trailingZeroBitCount) else {
            throw CLIError.usage("\(args.command): --buckets must be a power of two in 256...1048576")
        }
        let seed = UInt64(try args.int("seed", range: 0...Int.max) ?? 1)
        let featureOptions = try FeatureOptions(args)
        let train = try LabeledExample.load(try args.required("train"))
        let test = try LabeledExample.load(try args.required("test"))
        let split = try args.string("partition-file").map { try SplitFile.read($0, train: train) }
        let labels = split?.intents ?? Array(Set(train.map(\.intent))).sorted()
        let plant = try plant(labels)
        let features = featureOptions.configuration(FeatureConfiguration(bucketBits: buckets.trailingZeroBitCount))
        let extractor = try featureOptions.extractor(features)
        let all = train + plant.joined()
        let log: (String) -> Void = { if isatty(2) != 0 { printError("  " + $0) } }
        let encoded = featureOptions.examples(all.map(\.text), all.map(\.intent), labels: labels, extractor: extractor, name: "train", log: log)
        var tenants: [[[Int]]]
        if let split {
            tenants = split.tenants
        } else {
            var rng = SplitMix64(seed: seed)
            let assignment = try partition(labels: encoded.labels[0..<train.count].map(Int.init), tenants: tenantsCount,
                                           spec: args.string("partition") ?? "dirichlet:0.5", rng: &rng)
            tenants = assignment.map { rows in
                var shuffled = rows
                shuffled.shuffle(using: &rng)
                return stride(from: 0, to: shuffled.count, by: m).map { Array(shuffled[$0..<min(shuffled.count, $0 + m)]) }
            }
        }
        var next = train.count
        for (i, customer) in plant.enumerated() {
            tenants[i % tenants.count].append(Array(next..<(next + customer.count)))
            next += customer.count
        }
        let testSet = featureOptions.examples(test.map(\.text), test.map(\.intent), labels: labels, extractor: extractor, name: "test", log: log)
        return FederatedData(labels: labels, features: features, extractor: extractor, train: encoded, tenants: tenants, test: testSet)
    }

    /// Row indices per tenant: IID (shuffled, dealt evenly) or label skew by Dirichlet(α) per intent.
    static func partition(labels: [Int], tenants: Int, spec: String, rng: inout SplitMix64) throws -> [[Int]] {
        var out = [[Int]](repeating: [], count: tenants)
        if spec == "iid" {
            var rows = Array(labels.indices)
            rows.shuffle(using: &rng)
            for (i, r) in rows.enumerated() { out[i % tenants].append(r) }
            return out
        }
        guard spec.hasPrefix("dirichlet:"), let alpha = Double(spec.dropFirst("dirichlet:".count)), alpha > 0, alpha.isFinite else {
            throw CLIError.usage("--partition must be iid or dirichlet:ALPHA with ALPHA > 0, got \"\(spec)\"")
        }
        var byLabel = [Int: [Int]]()
        for (r, y) in labels.enumerated() where y >= 0 { byLabel[y, default: []].append(r) }
        for y in byLabel.keys.sorted() {
            var rows = byLabel[y]!
            rows.shuffle(using: &rng)
            let weights = (0..<tenants).map { _ in gamma(alpha, &rng) }
            let total = weights.reduce(0, +)
            var cumulative = 0.0
            var start = 0
            for t in 0..<tenants {
                cumulative += weights[t] / total
                let end = t == tenants - 1 ? rows.count : min(rows.count, Int((cumulative * Double(rows.count)).rounded()))
                if end > start { out[t].append(contentsOf: rows[start..<end]) }
                start = max(start, end)
            }
        }
        return out
    }

    /// Gamma(α, 1) by Marsaglia and Tsang (α < 1 through the U^(1/α) boost).
    static func gamma(_ alpha: Double, _ rng: inout SplitMix64) -> Double {
        if alpha < 1 { return gamma(alpha + 1, &rng) * pow(Double.random(in: Double.ulpOfOne..<1, using: &rng), 1 / alpha) }
        let d = alpha - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat {
                let u1 = Double.random(in: Double.ulpOfOne..<1, using: &rng), u2 = Double.random(in: 0..<1, using: &rng)
                x = (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = Double.random(in: Double.ulpOfOne..<1, using: &rng)
            if log(u) < 0.5 * x * x + d - d * v + d * log(v) { return d * v }
        }
    }
}

/// How many rounds, how many customers each, how big the server's steps.
struct Schedule: Equatable {
    var rounds: Int
    var sampleRate: Double
    var serverLearningRate: Double

    /// A fifth of the customers in each of 300 rounds: best when the noise
    /// is moderate (central placement, epsilon 8: 86.5% in-scope on pfl's
    /// CLINC150 split against 84.3% with `fullParticipation`; q 0.1: 83.8%;
    /// 600 rounds: 83.1%).
    static let sampled = Schedule(rounds: 300, sampleRate: 0.2, serverLearningRate: 3)
    /// Every customer in each of 60 rounds: best when the noise is heavy.
    /// A round's noise then falls on the whole population's mean, and there
    /// are five times fewer noisy steps to add up. Central placement, epsilon
    /// 2: 73.8% against 64.4% with `sampled`; epsilon 4: 81.4% against 81.6%;
    /// tenant placement (20 tenants), epsilon 8: 64.3% and 65.0% with secure
    /// noise against 46.5% (with seeded noise, two seeds each, one setting
    /// changed at a time: 64.8-65.1% as it is; server learning rate 3:
    /// 63.5-63.9%, 10: 60.6-60.9%; 100 rounds: 59.9-60.0%).
    static let fullParticipation = Schedule(rounds: 60, sampleRate: 1, serverLearningRate: 6)
    /// Without noise (the non-private reference) larger server steps pay:
    /// CLINC150, 20 tenants, Dirichlet 0.5, 3-message customers, in-scope
    /// 89.98% at learning rate 3, 91.42% at 6, 91.69% at 10 (91.76% with
    /// seed 2), 91.80% at 15; 600 rounds at 3: 91.62%. Centralised: 92.38%.
    static let nonPrivate = Schedule(rounds: 300, sampleRate: 0.2, serverLearningRate: 10)

    /// The schedule to recommend: `fullParticipation` when the noise on the
    /// aggregate is as heavy as central noise at epsilon below 4 (where the
    /// two measured even), `sampled` otherwise, `nonPrivate` without noise.
    /// Tenant placement puts one tenant's worth of noise per tenant on the
    /// aggregate, so its noise is that of central noise with z·sqrt(tenants).
    /// The comparison uses the fast RDP accountant: it only picks a schedule;
    /// the run itself is calibrated and charged with PLD.
    static func recommended(epsilon: Double?, noiseMultiplier: Double?, delta: Double, placement: Plan.Placement, tenants: Int) throws -> Schedule {
        let s = sampled
        let sources = placement == .tenant ? Double(tenants) : 1
        if sources == 1, noiseMultiplier == nil, let epsilon { return epsilon < 4 ? fullParticipation : s }
        let z: Double
        if let noiseMultiplier { z = noiseMultiplier }
        else if let epsilon { z = try NoiseCalibration.noiseMultiplier(epsilon: epsilon, delta: delta, sampleRate: s.sampleRate, steps: s.rounds, accountant: .rdp) }
        else { return nonPrivate }
        let aggregate = try SubsampledGaussian(sampleRate: s.sampleRate, noiseMultiplier: z * sources.squareRoot())
        let centralEquivalent = try RDPAccountant.epsilon(aggregate, steps: s.rounds, delta: delta)
        return centralEquivalent < 4 ? fullParticipation : s
    }
}

/// How a simulation trains: the plan's parameters plus the schedule.
struct SimulationSettings {
    /// The schedule's fields the user set; the others come from
    /// `Schedule.recommended` when the run starts (`resolved`).
    var requested = (rounds: Int?.none, sampleRate: Double?.none, serverLearningRate: Double?.none)
    var schedule = Schedule.sampled
    var rounds: Int { schedule.rounds }
    var sampleRate: Double { schedule.sampleRate }
    var serverLearningRate: Double { schedule.serverLearningRate }
    var delta = 1e-5
    var clip = 1.0
    var placement = Plan.Placement.central
    var optimizer = Plan.ServerOptimizer.Kind.fedavgm
    var serverMomentum = 0.9
    /// nil: no noise (clipping still applies).
    var epsilon: Double? = 8
    /// Given instead of `epsilon`.
    var noiseMultiplier: Double?
    var evalEvery = 25
    var seed: UInt64 = 1
    var insecureSeededNoise = false
    /// Secure placement: the chance each tenant vanishes in a round (at a random stage), and the plan's survivor fraction.
    var dropout = 0.0
    var survivorFraction: Double?

    var dp: Bool { epsilon != nil || noiseMultiplier != nil }

    /// These settings with the schedule complete: what the user set, the rest
    /// recommended for this epsilon, placement and number of tenants.
    func resolved(tenants: Int) throws -> SimulationSettings {
        var s = self
        let recommended = try Schedule.recommended(epsilon: epsilon, noiseMultiplier: noiseMultiplier, delta: delta,
                                                   placement: placement, tenants: tenants)
        s.schedule = Schedule(rounds: requested.rounds ?? recommended.rounds, sampleRate: requested.sampleRate ?? recommended.sampleRate,
                              serverLearningRate: requested.serverLearningRate ?? (optimizer == .fedadam ? 0.03 : recommended.serverLearningRate))
        return s
    }

    /// The shared flags, with the defaults recommended to an operator.
    static let options: [OptionSpec] = [
        .value("rounds", "R", "Rounds (default: 300, or 60 when the noise is heavy; see below)."),
        .value("sample-rate", "Q", "Customer sampling rate per round (default: 0.2, or 1 when the noise is heavy)."),
        .value("epsilon", "E", "Target epsilon over all rounds; z is calibrated with PLD (default 8)."),
        .value("noise-multiplier", "Z", "Noise multiplier instead of --epsilon."),
        .flag("no-dp", "No noise (clipping still applies): the non-private federated reference."),
        .value("delta", "D", "Delta (default 1e-5)."),
        .value("clip", "C", "Per-customer clip norm (default 1)."),
        .value("placement", "tenant|central|secure", "Where noise is added (default central; secure: masked shares, protocol/PROTOCOL.md)."),
        .value("server-optimizer", "fedavg|fedavgm|fedadam", "Server optimiser (default fedavgm)."),
        .value("server-learning-rate", "R", "Server learning rate (default: 3, or 6 when the noise is heavy, 10 without DP; 0.03 with fedadam)."),
        .value("server-momentum", "B", "FedAvgM momentum, FedAdam beta1 (default 0.9)."),
        .value("eval-every", "K", "Evaluate the global model every K rounds (default 25)."),
        .flag("insecure-seeded-noise", "Seeded (insecure) noise so a run repeats exactly; labelled as such in the output."),
        .value("dropout", "P", "Secure placement: each tenant vanishes from a round with probability P, at a random stage (default 0). A round abandoned before unmasking is re-run, uncharged, as the coordinator does."),
        .value("survivor-fraction", "F", "Secure placement: the plan's minimumSurvivorFraction, in (0.5, 1] (default 0.8)."),
    ]

    /// How the schedule defaults are chosen, for the commands' help.
    static let scheduleHelp = """
        Schedule defaults: the noise is heavy when the aggregate carries as much noise as central noise at epsilon < 4
        would (tenant placement adds one tenant's noise per tenant: with 20 tenants, epsilon 8 is heavy; secure
        placement puts central noise on the total). Heavy noise: every customer in each of 60 rounds, server learning
        rate 6; otherwise a fifth of the customers in each of 300 rounds, learning rate 3 (10 without DP).
        """

    static func parse(_ args: ParsedArguments) throws -> SimulationSettings {
        var s = SimulationSettings()
        s.requested.rounds = try args.int("rounds", range: 1...100_000)
        s.requested.sampleRate = try args.double("sample-rate", where: { $0 > 0 && $0 <= 1 }, expectation: "a number in (0, 1]")
        s.delta = try args.double("delta", where: { $0 > 0 && $0 < 1 }, expectation: "a number in (0, 1)") ?? s.delta
        s.clip = try args.double("clip", where: { $0 > 0 }, expectation: "a number > 0") ?? s.clip
        s.evalEvery = try args.int("eval-every", range: 1...100_000) ?? s.evalEvery
        s.seed = UInt64(try args.int("seed", range: 0...Int.max) ?? 1)
        guard let placement = Plan.Placement(rawValue: args.string("placement") ?? "central") else {
            throw CLIError.usage("\(args.command): --placement must be tenant, central or secure")
        }
        s.placement = placement
        guard let kind = Plan.ServerOptimizer.Kind(rawValue: args.string("server-optimizer") ?? "fedavgm") else {
            throw CLIError.usage("\(args.command): --server-optimizer must be fedavg, fedavgm or fedadam")
        }
        s.optimizer = kind
        s.requested.serverLearningRate = try args.double("server-learning-rate", where: { $0 > 0 }, expectation: "a number > 0")
        s.serverMomentum = try args.double("server-momentum", where: { $0 >= 0 && $0 < 1 }, expectation: "a number in [0, 1)") ?? s.serverMomentum
        s.insecureSeededNoise = args.flag("insecure-seeded-noise")
        s.dropout = try args.double("dropout", where: { $0 >= 0 && $0 < 1 }, expectation: "a number in [0, 1)") ?? 0
        s.survivorFraction = try args.double("survivor-fraction", where: { $0 > 0.5 && $0 <= 1 }, expectation: "a number in (0.5, 1]")
        if placement != .secure, s.dropout > 0 || s.survivorFraction != nil {
            throw CLIError.usage("\(args.command): --dropout and --survivor-fraction are for --placement secure")
        }
        if args.flag("no-dp") {
            guard args.string("epsilon") == nil, args.string("noise-multiplier") == nil else {
                throw CLIError.usage("\(args.command): --no-dp excludes --epsilon and --noise-multiplier")
            }
            guard placement != .secure else { throw CLIError.usage("\(args.command): --no-dp has no noise to place: drop --placement secure") }
            s.epsilon = nil
        } else if let z = try args.double("noise-multiplier", where: { $0 > 0 }, expectation: "a number > 0") {
            s.noiseMultiplier = z
            s.epsilon = nil
        } else {
            s.epsilon = try args.double("epsilon", where: { $0 > 0 }, expectation: "a number > 0") ?? 8
        }
        return s
    }
}

/// What a simulated run produced.
struct SimulationResult {
    struct Point {
        var round: Int
        var accuracy: Double
        var accuracyInScope: Double
        var epsilon: Double?
    }

    var model: SoftmaxModel
    var history: [Point]
    var noiseMultiplier: Double?
    var epsilon: Double?
    var final: Metrics
    var bytesPerTenantPerRound: Double
    var seconds: Double
    /// Secure placement: rounds that released nothing (too few survivors), and the survivors of the others, on average.
    var abandonedRounds = 0
    var meanSurvivors: Double?
}

/// Federated training with customer-level DP in one process, through the code
/// the real programs run: the tenant's round computation (`LocalRound`), the
/// update envelope encoded and decoded, the coordinator's norm-bound check
/// and running sum, the round close with the server optimiser, and the PLD
/// accountant. No HTTP.
enum FederatedSimulation {
    static func run(_ data: FederatedData, _ settings: SimulationSettings, log: (String) -> Void) throws -> SimulationResult {
        let q = settings.sampleRate, clip = settings.clip
        var plan = Plan(labels: data.labels, bucketBits: data.features.bucketBits, clipNorm: clip, noiseMultiplier: 1, sampleRate: q,
                        delta: settings.delta, maximumEpsilon: 1e9, placement: settings.placement, minimumTenants: 1, roundSeconds: 600,
                        serverOptimizer: .init(kind: settings.optimizer, learningRate: settings.serverLearningRate, momentum: settings.serverMomentum))
        plan.minimumSurvivorFraction = settings.survivorFraction
        plan.useFeatures(of: data.features)
        if let z = settings.noiseMultiplier {
            plan.noiseMultiplier = z
        } else if let e = settings.epsilon {
            // Calibrated so the charged (grid-effective) multiplier meets the target.
            let needed = try NoiseCalibration.noiseMultiplier(epsilon: e, delta: settings.delta, sampleRate: q, steps: settings.rounds)
            let effective = try GaussianNoise(clipNorm: clip, noiseMultiplier: needed, dimension: plan.dimension).effectiveNoiseMultiplier
            plan.noiseMultiplier = needed * needed / effective * (1 + 1e-9)
        }
        let noise = settings.dp ? try GaussianNoise(clipNorm: clip, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension) : nil
        let charged = try noise.map { try SubsampledGaussian(sampleRate: q, noiseMultiplier: $0.effectiveNoiseMultiplier) }
        let handoff = data.labels.indices.filter { IntentTraining.defaultHandoffIntents.contains(data.labels[$0]) }
        var model = SoftmaxModel(features: data.features, labels: data.labels, handoffLabels: handoff)
        var optimizer = ServerOptimizerState()
        log("\(data.train.count) examples, \(data.tenants.count) tenants, \(data.customerCount) customers, \(data.labels.count) intents, d = \(plan.dimension)")
        log("\(settings.rounds) rounds, q = \(q), C = \(clip), \(settings.optimizer.rawValue) at learning rate \(settings.serverLearningRate)")
        log(settings.dp ? "DP: z = \(String(format: "%.4f", plan.noiseMultiplier)) (\(settings.placement.rawValue)), delta = \(settings.delta)" : "no DP noise")
        if settings.insecureSeededNoise { log("WARNING: --insecure-seeded-noise: the noise is NOT cryptographically secure (simulation only)") }

        var rng = SplitMix64(seed: settings.seed ^ 0x5a4d_504c_494e_4721)
        var noiseSeed = settings.seed ^ 0x6e6f_6973_6573_6565
        func addNoise(_ values: inout [Float]) throws {
            guard let noise else { return }
            if settings.insecureSeededNoise { noiseSeed &+= 1; try noise.privatizeWithInsecureSeededNoise(&values, seed: noiseSeed) }
            else { try noise.privatize(&values, using: SecureRandom()) }
        }
        let customers = data.tenants.map { $0.map { rows in rows.map { (data.train.features.row($0), Int(data.train.labels[$0])) } } }
        // Without DP there is no noise to share: a secure run is then the plain
        // clipped sum (the sweep's and the canary's non-private references).
        let secure = try settings.placement == .secure && settings.dp
            ? SecureRoundSimulation(plan: plan, tenants: customers.count, dropout: settings.dropout) : nil
        let share = try secure.map { try SecureAggregation.noiseShare(plan, threshold: $0.threshold) }
        let gridStep = try secure.map { _ in try SecureAggregation.mechanism(plan).step } ?? 0
        if let secure { log("secure: threshold \(secure.threshold) of \(customers.count) tenants, dropout \(settings.dropout)") }
        // As the coordinator does, a round abandoned before its unmask stage is not charged (nothing was
        // released, and the tenants withdraw its charge): rounds go on until `settings.rounds` are charged.
        var abandoned = 0, survivorsTotal = 0, released = 0, charges = 0, round = 0
        var dropouts = SplitMix64(seed: settings.seed ^ 0x6472_6f70_6f75_7473) // who vanishes, and when: repeatable by seed
        var bytesSent = 0
        var history = [SimulationResult.Point]()
        let start = DispatchTime.now().uptimeNanoseconds
        while charges < settings.rounds {
            round += 1
            guard round <= 10 * settings.rounds + 10 else {
                throw CLIError(.failure, "\(abandoned) of \(round - 1) secure rounds were abandoned: the dropout is too high for the survivor fraction")
            }
            var sum = RoundSum(dimension: plan.dimension)
            let local = LocalRound(model: model, plan: plan)
            func tenantSum(_ t: Int) -> [Float] {
                var values = [Float](repeating: 0, count: plan.dimension)
                for customer in LocalRound.poissonSample(customers[t], rate: q, using: &rng) {
                    local.addCustomerUpdate(examples: customer, into: &values)
                }
                return values
            }
            if let secure, let share {
                // Each tenant's masked input goes through the envelope as it would over the wire.
                let outcome = try secure.run(round: UInt64(round), drawing: &dropouts) { t in
                    noiseSeed &+= 1
                    let values = tenantSum(t)
                    let release = try settings.insecureSeededNoise ? share.gridReleaseWithInsecureSeededNoise(values, seed: noiseSeed)
                                                                   : share.gridRelease(values, using: SecureRandom())
                    return (release, q * Double(customers[t].count))
                }
                bytesSent += outcome.bytesSent
                if let masked = outcome.sum {
                    survivorsTotal += outcome.survivors
                    released += 1
                    sum = masked.unmasked(step: gridStep)
                } else {
                    abandoned += 1
                    log("round \(round): abandoned, nothing released (\(outcome.abandonedBecause ?? ""))")
                }
                if outcome.sum != nil || outcome.reachedUnmasking { charges += 1 }
            } else {
                for t in customers.indices {
                    var values = tenantSum(t)
                    if settings.placement == .tenant { try addNoise(&values) }
                    let envelope = UpdateEnvelope(round: UInt64(round), modelVersion: UInt64(round),
                                                  flags: settings.placement == .tenant && settings.dp ? .tenantNoised : [], weight: q * Double(customers[t].count),
                                                  values: values)
                    let bytes = envelope.encoded()
                    bytesSent += bytes.count
                    let received = try UpdateEnvelope.decode(bytes, maximumDimension: plan.dimension)
                    let bound = updateNormBound(population: received.weight / q, clipNorm: clip, noiseMultiplier: plan.noiseMultiplier,
                                                tenantNoised: received.flags.contains(.tenantNoised), dimension: plan.dimension)
                    guard RoundSum.norm(received.values) <= bound else { throw CLIError(.failure, "round \(round): tenant \(t)'s update fails the coordinator's norm bound") }
                    sum.add(received.values, weight: received.weight)
                }
                charges += 1
            }
            var closing = plan
            if !settings.dp { closing.placement = .tenant } // no central noise without DP
            if sum.count > 0 { // an abandoned secure round releases nothing and leaves the model as it was
                let next = try closeRound(sum: sum, model: model.weights + model.bias, plan: closing, optimizer: &optimizer) { try addNoise(&$0) }
                model.weights = Array(next[0..<model.weights.count])
                model.bias = Array(next[model.weights.count...])
            }
            if charges > (history.last?.round ?? 0), charges % settings.evalEvery == 0 || charges == settings.rounds {
                let metrics = Metrics.evaluate(model, on: data.test)
                let epsilon = try charged.map { try PLDAccountant.epsilon($0, steps: charges, delta: settings.delta) }
                history.append(.init(round: charges, accuracy: metrics.accuracy, accuracyInScope: metrics.accuracyInScope, epsilon: epsilon))
                log(String(format: "round %d: accuracy %.4f, in-scope %.4f", round, metrics.accuracy, metrics.accuracyInScope)
                    + (epsilon.map { String(format: ", epsilon %.3f", $0) } ?? ""))
            }
        }
        return SimulationResult(model: model, history: history, noiseMultiplier: settings.dp ? plan.noiseMultiplier : nil,
                                epsilon: history.last?.epsilon, final: Metrics.evaluate(model, on: data.test),
                                bytesPerTenantPerRound: Double(bytesSent) / Double(data.tenants.count * round),
                                seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, abandonedRounds: abandoned,
                                meanSurvivors: secure == nil || released == 0 ? nil : Double(survivorsTotal) / Double(released))
    }
}
