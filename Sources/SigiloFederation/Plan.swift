import Foundation
import SigiloCrypto
import SigiloText

/// Why a plan was refused: names the field.
public struct PlanError: Error, CustomStringConvertible, Equatable, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What the coordinator runs: taxonomy, model shape, privacy parameters,
/// round schedule and server optimiser (protocol/PLAN.md documents the file).
public struct Plan: Codable, Equatable, Sendable {
    public enum Placement: String, Codable, Sendable { case tenant, central, secure }

    public struct ServerOptimizer: Codable, Equatable, Sendable {
        public enum Kind: String, Codable, Sendable { case fedavg, fedavgm, fedadam }
        public var kind: Kind
        public var learningRate: Double
        public var momentum: Double
        public var beta2: Double
        public var epsilon: Double

        public init(kind: Kind = .fedavgm, learningRate: Double = 1, momentum: Double = 0.9, beta2: Double = 0.99, epsilon: Double = 1e-3) {
            self.kind = kind
            self.learningRate = learningRate
            self.momentum = momentum
            self.beta2 = beta2
            self.epsilon = epsilon
        }
    }

    public var labels: [String]
    public var bucketBits: Int
    public var clipNorm: Double
    public var noiseMultiplier: Double
    public var sampleRate: Double
    public var delta: Double
    /// The plan's privacy budget: no round opens that would take ε above it.
    public var maximumEpsilon: Double
    public var placement: Placement
    public var minimumTenants: Int
    public var roundSeconds: Double
    public var serverOptimizer: ServerOptimizer
    /// Refuse updates flagged as anomalous (absent: flag them, count them, keep them).
    public var excludeAnomalousUpdates: Bool?
    /// The largest weight (expected sampled customers) a tenant may declare, unless
    /// the operator sets its own cap; absent: no cap but a tenant's own.
    public var maximumTenantWeight: Double?
    /// Secure placement: the least fraction of a round's cohort that must stay
    /// to the end for anything to be released (absent: 0.8). It sets t, the
    /// round's threshold, which each tenant's noise share is calibrated to.
    public var minimumSurvivorFraction: Double?

    /// Which features the model reads (absent: `hashed`). `encoder` and
    /// `both` name the encoder by the SHA-256 of its file and its width: every
    /// tenant computes the same embeddings or refuses the plan.
    public var features: FeatureKind?
    public var encoderSHA256: String?
    public var encoderDimension: Int?

    /// Names intents had before a rename or merge, each with the label that
    /// took its place (protocol/PLAN.md, "Renaming or merging intents"):
    /// tenants' messages labelled with a former name train the current one.
    public var formerLabels: [String: String]?

    /// Each intent name a tenant's message may carry, current or former, with
    /// the index of the label it trains.
    public var labelIndex: [String: Int] {
        var index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        for (former, current) in formerLabels ?? [:] { index[former] = index[current] }
        return index
    }

    /// `features`, or its default.
    public var featureKind: FeatureKind { features ?? .hashed }

    /// The feature configuration of the plan's models.
    public var featureConfiguration: FeatureConfiguration {
        var c = FeatureConfiguration(bucketBits: bucketBits)
        c.kind = featureKind
        if featureKind.usesEncoder {
            c.encoderDimension = encoderDimension ?? 0
            c.encoderDigest = encoderSHA256.flatMap(Hex.decode) ?? []
        }
        return c
    }

    /// The plan's features set to those of `configuration` (kind, encoder digest and width).
    public mutating func useFeatures(of configuration: FeatureConfiguration) {
        if configuration.kind == .hashed {
            (features, encoderSHA256, encoderDimension) = (nil, nil, nil)
        } else {
            features = configuration.kind
            encoderSHA256 = Hex.encode(configuration.encoderDigest)
            encoderDimension = configuration.encoderDimension
        }
    }

    /// After how many rounds in a row that a tenant was expected in and did not
    /// answer it is dormant: no longer counted on or waited for until it polls
    /// again (absent: 3, so one slow or restarting tenant is not dropped while
    /// a vanished one costs at most three rounds; 1-1000).
    public var dormantAfterMissedRounds: Int?

    /// `dormantAfterMissedRounds`, or its default.
    public var dormancyThreshold: Int { dormantAfterMissedRounds ?? Self.defaultDormancyThreshold }
    public static let defaultDormancyThreshold = 3

    /// `minimumSurvivorFraction`, or its default.
    public var survivorFraction: Double { minimumSurvivorFraction ?? 0.8 }

    public init(labels: [String], bucketBits: Int = 12, clipNorm: Double = 1, noiseMultiplier: Double = 1, sampleRate: Double = 0.1,
                delta: Double = 1e-6, maximumEpsilon: Double = 8, placement: Placement = .tenant, minimumTenants: Int = 2,
                roundSeconds: Double = 600, serverOptimizer: ServerOptimizer = ServerOptimizer()) {
        self.labels = labels
        self.bucketBits = bucketBits
        self.clipNorm = clipNorm
        self.noiseMultiplier = noiseMultiplier
        self.sampleRate = sampleRate
        self.delta = delta
        self.maximumEpsilon = maximumEpsilon
        self.placement = placement
        self.minimumTenants = minimumTenants
        self.roundSeconds = roundSeconds
        self.serverOptimizer = serverOptimizer
    }

    /// Number of model parameters: one weight per feature and label (B hashed
    /// buckets and/or the encoder's width) plus one bias per label.
    public var dimension: Int { featureConfiguration.dimension * labels.count + labels.count }

    /// Checks every field; the error names the first one that is wrong.
    public func validate() throws {
        guard (1...4096).contains(labels.count) else { throw PlanError("labels: need 1...4096 labels, got \(labels.count)") }
        guard Set(labels).count == labels.count else { throw PlanError("labels: duplicates are not allowed") }
        if let bad = labels.first(where: { $0.isEmpty || $0.utf8.count > 256 }) { throw PlanError("labels: \"\(bad)\" must be 1-256 bytes") }
        guard (formerLabels?.count ?? 0) <= 4096 else { throw PlanError("formerLabels: at most 4096 names") }
        for (former, current) in (formerLabels ?? [:]).sorted(by: { $0.key < $1.key }) {
            guard !former.isEmpty, former.utf8.count <= 256 else { throw PlanError("formerLabels: \"\(former)\" must be 1-256 bytes") }
            guard !labels.contains(former) else { throw PlanError("formerLabels: \"\(former)\" is a current label; only names no longer in labels can be former ones") }
            guard labels.contains(current) else { throw PlanError("formerLabels.\(former): \"\(current)\" is not in labels") }
        }
        guard (8...20).contains(bucketBits) else { throw PlanError("bucketBits: must be in 8...20, got \(bucketBits)") }
        if featureKind.usesEncoder {
            guard let digest = encoderSHA256, digest.utf8.count == 64, digest == digest.lowercased(), Hex.decode(digest) != nil else {
                throw PlanError("encoderSHA256: \(featureKind.rawValue) features need the encoder file's SHA-256, 64 lower-case hex digits")
            }
            guard let width = encoderDimension, (1...4096).contains(width) else {
                throw PlanError("encoderDimension: \(featureKind.rawValue) features need the encoder's width, 1...4096")
            }
        } else if encoderSHA256 != nil || encoderDimension != nil {
            throw PlanError("\(encoderSHA256 != nil ? "encoderSHA256" : "encoderDimension"): only for encoder or both features (features is hashed)")
        }
        guard clipNorm.isFinite, clipNorm > 0 else { throw PlanError("clipNorm: must be a finite number > 0, got \(clipNorm)") }
        guard noiseMultiplier.isFinite, noiseMultiplier > 0 else { throw PlanError("noiseMultiplier: must be a finite number > 0, got \(noiseMultiplier)") }
        guard sampleRate.isFinite, sampleRate > 0, sampleRate <= 1 else { throw PlanError("sampleRate: must be in (0, 1], got \(sampleRate)") }
        guard delta.isFinite, delta > 0, delta < 1 else { throw PlanError("delta: must be in (0, 1), got \(delta)") }
        guard maximumEpsilon.isFinite, maximumEpsilon > 0 else { throw PlanError("maximumEpsilon: must be a finite number > 0, got \(maximumEpsilon)") }
        if let cap = maximumTenantWeight, !(cap.isFinite && cap > 0) { throw PlanError("maximumTenantWeight: must be a finite number > 0, got \(cap)") }
        guard minimumTenants >= 1 else { throw PlanError("minimumTenants: must be >= 1, got \(minimumTenants)") }
        // Above one half: two disjoint sets of survivors can never both reach t, so no two sums over different tenants are unmasked.
        if let f = minimumSurvivorFraction, !(f.isFinite && f > 0.5 && f <= 1) {
            throw PlanError("minimumSurvivorFraction: must be in (0.5, 1], got \(f)")
        }
        if placement == .secure, (survivorFraction * Double(minimumTenants)).rounded(.up) < 2 {
            throw PlanError("minimumTenants: a secure round needs at least 2 survivors (minimumSurvivorFraction \(survivorFraction) x minimumTenants \(minimumTenants) rounds up to 1): a sum of one tenant's input is that tenant's input")
        }
        if let n = dormantAfterMissedRounds, !(1...1000).contains(n) { throw PlanError("dormantAfterMissedRounds: must be in 1...1000, got \(n)") }
        guard roundSeconds.isFinite, roundSeconds >= 1, roundSeconds <= 7 * 86400 else { throw PlanError("roundSeconds: must be in 1...604800, got \(roundSeconds)") }
        let o = serverOptimizer
        guard o.learningRate.isFinite, o.learningRate > 0 else { throw PlanError("serverOptimizer.learningRate: must be > 0, got \(o.learningRate)") }
        guard o.momentum >= 0, o.momentum < 1 else { throw PlanError("serverOptimizer.momentum: must be in [0, 1), got \(o.momentum)") }
        guard o.beta2 >= 0, o.beta2 < 1 else { throw PlanError("serverOptimizer.beta2: must be in [0, 1), got \(o.beta2)") }
        guard o.epsilon.isFinite, o.epsilon > 0 else { throw PlanError("serverOptimizer.epsilon: must be > 0, got \(o.epsilon)") }
    }

    /// Decodes and validates a plan file (JSON).
    public static func decode(_ data: Data) throws -> Plan {
        let plan: Plan
        do { plan = try JSONDecoder().decode(Plan.self, from: data) } catch let error as DecodingError {
            throw PlanError("plan file: \(Self.describe(error))")
        }
        try plan.validate()
        return plan
    }

    /// As `decode`, for a plan an operator wrote (`plan set`, `PUT /v1/admin/plan`):
    /// a field this build does not know is refused by name, since a misspelt
    /// `excludeAnomalousUpdates` or an invented `epsilonBudget` would otherwise
    /// be dropped silently. (Tenants read the coordinator's plan with `decode`,
    /// so a newer coordinator's extra field does not stop an older tenant.)
    public static func decodeOperatorFile(_ data: Data) throws -> Plan {
        let plan = try decode(data)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return plan }
        if let unknown = unknownFields(object, known: Plan(labels: [])).first {
            throw PlanError("plan file: unknown field \(unknown); this build knows \(fieldNames(of: Plan(labels: [])).sorted().joined(separator: ", "))")
        }
        if let optimizer = object["serverOptimizer"] as? [String: Any], let unknown = unknownFields(optimizer, known: ServerOptimizer()).first {
            throw PlanError("plan file: unknown field serverOptimizer.\(unknown); this build knows \(fieldNames(of: ServerOptimizer()).sorted().joined(separator: ", "))")
        }
        return plan
    }

    /// The stored properties of `value`, which are its synthesised coding keys.
    static func fieldNames(of value: Any) -> Set<String> { Set(Mirror(reflecting: value).children.compactMap(\.label)) }

    static func unknownFields(_ object: [String: Any], known value: Any) -> [String] {
        let known = fieldNames(of: value)
        return object.keys.filter { !known.contains($0) }.sorted()
    }

    static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing field \(path(context).isEmpty ? "" : path(context) + ".")\(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context): return "\(path(context)): wrong type"
        case .dataCorrupted(let context): return path(context).isEmpty ? "not valid JSON" : "\(path(context)): invalid value"
        @unknown default: return "invalid"
        }
    }
}
