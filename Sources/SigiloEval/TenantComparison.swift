import SigiloModel
import SigiloText

/// Each tenant's view: on a test slice with the tenant's own label mix, the
/// model it could train alone (local-only), the shared model (global), and
/// the shared model fine-tuned on its own data, which never leaves it
/// (personalised). Local-only and personalised training are the tenant's own
/// business on its own data, so neither needs noise.
struct TenantOutcome {
    var tenant: Int
    var trainExamples: Int
    var testExamples: Int
    var localOnly: Double
    var global: Double
    var personalised: Double
}

enum TenantComparison {
    /// Size of each tenant's test slice (at most; fewer when the test set is small).
    static let sliceSize = 300
    /// Both local-only and personalised training use the centralised trainer's defaults.
    static let training = TrainingOptions()

    static func evaluate(_ data: FederatedData, global: SoftmaxModel, seed: UInt64) -> [TenantOutcome] {
        let byLabel = Dictionary(grouping: data.test.labels.indices.filter { data.test.labels[$0] >= 0 }) { Int(data.test.labels[$0]) }
        let blank = SoftmaxModel(features: data.features, labels: data.labels, handoffLabels: global.handoffLabels)
        // Tenants are independent (each trains on its own rows with its own seed): all cores at once.
        return Array(data.tenants.indices).concurrentMap { t in
            let rows = data.rows(ofTenant: t)
            let own = data.train.subset(rows)
            let slice = data.test.subset(testSlice(labels: own.labels, byLabel: byLabel, seed: seed &+ UInt64(t)))
            var options = training
            options.seed = seed &+ UInt64(t)
            let local = SoftmaxTrainer.train(own.features, labels: own.labels, model: blank, options: options)
            let personal = Personalisation.fit(global, on: own, options: options).model
            return TenantOutcome(tenant: t, trainExamples: rows.count, testExamples: slice.count,
                                 localOnly: Metrics.evaluate(local, on: slice).accuracyInScope,
                                 global: Metrics.evaluate(global, on: slice).accuracyInScope,
                                 personalised: Metrics.evaluate(personal, on: slice).accuracyInScope)
        }
    }

    /// Test rows drawn (without replacement, per label) in the proportions of `labels`.
    static func testSlice(labels: [Int32], byLabel: [Int: [Int]], seed: UInt64) -> [Int] {
        var counts = [Int: Int]()
        for y in labels where y >= 0 { counts[Int(y), default: 0] += 1 }
        let total = counts.values.reduce(0, +)
        guard total > 0 else { return [] }
        let available = byLabel.values.reduce(0) { $0 + $1.count }
        let size = min(sliceSize, available)
        var rng = SplitMix64(seed: seed ^ 0x7465_7374_736c_6963)
        var out = [Int]()
        for y in counts.keys.sorted() {
            guard var pool = byLabel[y] else { continue }
            pool.shuffle(using: &rng)
            let wanted = Int((Double(size) * Double(counts[y]!) / Double(total)).rounded())
            out += pool.prefix(max(1, wanted))
        }
        return out.sorted()
    }

    /// Median of the differences personalised - local-only, over all tenants and over the quarter with the least data.
    static func gains(_ outcomes: [TenantOutcome]) -> (median: Double, leastDataQuarter: Double) {
        let quarter = outcomes.sorted { $0.trainExamples < $1.trainExamples }.prefix(max(1, outcomes.count / 4))
        return (median(outcomes.map { $0.personalised - $0.localOnly }), median(quarter.map { $0.personalised - $0.localOnly }))
    }
}

/// The median (0 for no values).
func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    guard !s.isEmpty else { return 0 }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
