import Foundation
import Testing

/// Issue 23: /metrics as Prometheus reads it, from the real server after real
/// traffic: every series belongs to a family declared by one `# TYPE` line
/// before it, every value is a number, every summary has `_sum` and `_count`.
@Suite(.serialized) struct MetricsExpositionTests {
    /// The problems of an exposition, one per offending line.
    static func problems(_ text: String) -> [String] {
        var types = [String: String](), seen = [String: Set<String>](), out = [String]()
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.isEmpty {
            let where_ = "line \(number + 1) \"\(line.prefix(80))\""
            if line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ")
                guard parts.count == 4, ["counter", "gauge", "summary", "histogram", "untyped"].contains(String(parts[3])) else { out.append("\(where_): malformed TYPE"); continue }
                if types[String(parts[2])] != nil { out.append("\(where_): second TYPE for \(parts[2])") }
                types[String(parts[2])] = String(parts[3])
                continue
            }
            if line.hasPrefix("#") { continue }
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            guard name.range(of: "^[a-zA-Z_:][a-zA-Z0-9_:]*$", options: .regularExpression) != nil else { out.append("\(where_): bad name"); continue }
            guard let value = line.split(separator: " ").last, Double(value) != nil else { out.append("\(where_): value is not a number"); continue }
            var family = name
            for suffix in ["_sum", "_count", "_bucket"] where name.hasSuffix(suffix) && ["summary", "histogram"].contains(types[String(name.dropLast(suffix.count))]) {
                family = String(name.dropLast(suffix.count))
                seen[family, default: []].insert(suffix)
            }
            if types[family] == nil { out.append("\(where_): no TYPE before the first series of \(family)") }
        }
        for (family, kind) in types where kind == "summary" && seen[family] != ["_sum", "_count"] {
            out.append("summary \(family) lacks _sum or _count")
        }
        return out
    }

    @Test func theExpositionParsesAsPrometheusReadsIt() throws {
        #expect(Self.problems("# TYPE a counter\na 1\nb 2\n").count == 1) // the checker itself finds an untyped series
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, _) = try coordinatorState(in: dir, tenants: 1)
        let auditor = try Binary.run("sigilo-coordinator", ["auditor", "add", "dpo", "--state", state.path]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let server = try RunningCoordinator(state: state)
        defer { _ = server.stop() }
        // Traffic that fills the counters: health probes, a refused credential, an auditor's reads.
        _ = http("GET", server.url.appendingPathComponent("healthz"))
        _ = http("GET", server.url.appendingPathComponent("v1/audit/ledger"), headers: [("Authorization", "Bearer auditor-1.00")])
        _ = http("GET", server.url.appendingPathComponent("v1/audit/ledger"), headers: [("Authorization", "Bearer \(auditor)")])
        usleep(1_100_000) // past the one-second snapshot
        let metrics = http("GET", server.url.appendingPathComponent("metrics"), headers: [("Authorization", "Bearer \(auditor)")])
        #expect(metrics.status == 200)
        let text = String(decoding: metrics.body, as: UTF8.self)
        #expect(text.contains("sigilo_request_seconds_count"))
        #expect(Self.problems(text) == [], "\(text)")
    }

    /// The Grafana dashboard (tools/deploy) queries only series the programs export,
    /// and the coordinator exports its budget beside the epsilon spent.
    @Test func theDashboardQueriesSeriesThatExist() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dashboard = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("tools/deploy/grafana-dashboard.json"))) as? [String: Any])
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let expressions = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(panels.count >= 8 && expressions.count >= panels.count)
        var exported = ""
        for module in ["SigiloCoordinator", "SigiloTenant", "SigiloHTTP"] {
            let folder = root.appendingPathComponent("Sources/\(module)")
            for file in try FileManager.default.contentsOfDirectory(atPath: folder.path) where file.hasSuffix(".swift") {
                exported += try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            }
        }
        let names = Set(exported.matches(of: /sigilo_[a-z_]+/).map { String($0.output) })
        let missing = expressions.flatMap { e in e.matches(of: /sigilo_[a-z_]+/).map { String($0.output) }.filter { !names.contains($0) }.map { "\($0) in \(e)" } }
        #expect(missing.isEmpty, "queried but not exported: \(missing)")
    }
}
