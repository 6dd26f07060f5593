import Foundation

/// The service's counters, rendered in Prometheus' text format.
final class ServiceMetrics: @unchecked Sendable {
    /// Upper bounds of the latency histogram, in seconds.
    static let latencyBounds: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1]

    private let lock = NSLock()
    private var requests = [String: Int]()       // "route,status"
    private var decisions = [String: Int]()      // "answer" or the hand-off reason
    private var feedback = [String: Int]()       // labelled, corrected, unchanged, discarded, unknown_intent
    private var stored = [String: Int]()         // what became of live messages offered to the store
    private var webhookRefused = [String: Int]() // by reason
    private var latencyCounts = [Int](repeating: 0, count: latencyBounds.count + 1)
    private var latencySum = 0.0
    private var encoderMessages = 0
    private var encoderSeconds = 0.0

    func request(route: String, status: Int, seconds: Double) {
        lock.withLock {
            requests["\(route),\(status)", default: 0] += 1
            let bucket = Self.latencyBounds.firstIndex(where: { seconds <= $0 }) ?? Self.latencyBounds.count
            latencyCounts[bucket] += 1
            latencySum += seconds
        }
    }

    func decisions(_ reasons: [ServingModel.HandoffReason?]) {
        lock.withLock { for reason in reasons { decisions[reason?.rawValue ?? "none", default: 0] += 1 } }
    }

    /// Messages through the encoder's forward pass, and the time it took (a share of the request time above).
    func encoded(messages: Int, seconds: Double) {
        lock.withLock {
            encoderMessages += messages
            encoderSeconds += seconds
        }
    }

    func feedback(_ outcome: String) { lock.withLock { feedback[outcome, default: 0] += 1 } }
    func stored(_ outcome: String, count: Int = 1) { lock.withLock { stored[outcome, default: 0] += count } }
    func webhookRefused(_ reason: String) { lock.withLock { webhookRefused[reason, default: 0] += 1 } }

    /// The exposition; `model` is the version in use (nil: none), `swaps` how many models were taken up.
    func render(model: ServingModel?, swaps: Int) -> String {
        lock.withLock {
            var out = "# HELP sigilo_tenant_requests_total Requests answered, by route and status.\n# TYPE sigilo_tenant_requests_total counter\n"
            for (key, n) in requests.sorted(by: { $0.key < $1.key }) {
                let parts = key.split(separator: ",")
                out += "sigilo_tenant_requests_total{route=\"\(parts[0])\",status=\"\(parts[1])\"} \(n)\n"
            }
            out += "# HELP sigilo_tenant_decisions_total Messages classified, by decision and hand-off reason.\n# TYPE sigilo_tenant_decisions_total counter\n"
            for (reason, n) in decisions.sorted(by: { $0.key < $1.key }) {
                out += "sigilo_tenant_decisions_total{decision=\"\(reason == "none" ? "answer" : "handoff")\",reason=\"\(reason)\"} \(n)\n"
            }
            let total = decisions.values.reduce(0, +), handoffs = total - decisions["none", default: 0]
            out += "# HELP sigilo_tenant_handoff_ratio Share of classified messages handed off to a human since start.\n# TYPE sigilo_tenant_handoff_ratio gauge\n"
            out += "sigilo_tenant_handoff_ratio \(total == 0 ? 0 : Double(handoffs) / Double(total))\n"
            out += "# HELP sigilo_tenant_feedback_total Attendants' labels received, by outcome (discarded: not stored, e.g. no consent).\n# TYPE sigilo_tenant_feedback_total counter\n"
            for (outcome, n) in feedback.sorted(by: { $0.key < $1.key }) { out += "sigilo_tenant_feedback_total{outcome=\"\(outcome)\"} \(n)\n" }
            out += "# HELP sigilo_tenant_messages_total Live messages offered to the store, by outcome.\n# TYPE sigilo_tenant_messages_total counter\n"
            for (outcome, n) in stored.sorted(by: { $0.key < $1.key }) { out += "sigilo_tenant_messages_total{outcome=\"\(outcome)\"} \(n)\n" }
            out += "# HELP sigilo_tenant_webhook_refused_total Webhook requests refused, by reason.\n# TYPE sigilo_tenant_webhook_refused_total counter\n"
            for (reason, n) in webhookRefused.sorted(by: { $0.key < $1.key }) { out += "sigilo_tenant_webhook_refused_total{reason=\"\(reason)\"} \(n)\n" }
            out += "# HELP sigilo_tenant_model_info The model in use.\n# TYPE sigilo_tenant_model_info gauge\n"
            if let model {
                let kind = model.identity.personalCreatedAt == nil ? "global" : "personalised"
                out += "sigilo_tenant_model_info{kind=\"\(kind)\",global_version=\"\(model.identity.globalVersion ?? 0)\"} 1\n"
            }
            out += "# HELP sigilo_tenant_model_swaps_total Models taken up since start, the first included.\n# TYPE sigilo_tenant_model_swaps_total counter\n"
            out += "sigilo_tenant_model_swaps_total \(swaps)\n"
            out += "# HELP sigilo_tenant_request_seconds Time to answer a request, in the handler.\n# TYPE sigilo_tenant_request_seconds histogram\n"
            var cumulative = 0
            for (i, bound) in Self.latencyBounds.enumerated() {
                cumulative += latencyCounts[i]
                out += "sigilo_tenant_request_seconds_bucket{le=\"\(bound)\"} \(cumulative)\n"
            }
            cumulative += latencyCounts[Self.latencyBounds.count]
            out += "sigilo_tenant_request_seconds_bucket{le=\"+Inf\"} \(cumulative)\n"
            out += "sigilo_tenant_request_seconds_sum \(latencySum)\nsigilo_tenant_request_seconds_count \(cumulative)\n"
            out += "# HELP sigilo_tenant_encoder_messages_total Messages embedded by the sentence encoder (models that read encoder features).\n"
            out += "# TYPE sigilo_tenant_encoder_messages_total counter\nsigilo_tenant_encoder_messages_total \(encoderMessages)\n"
            out += "# HELP sigilo_tenant_encoder_seconds_total Time spent in the encoder's forward pass, part of the request time.\n"
            out += "# TYPE sigilo_tenant_encoder_seconds_total counter\nsigilo_tenant_encoder_seconds_total \(encoderSeconds)\n"
            return out
        }
    }
}
