import Foundation
import SigiloCLI
import SigiloHTTP

/// `sigilo-eval bench-serve-clients`: the agents of tools/bench-serve. C
/// callers, each on its own thread with its own kept-alive connection, call
/// `sigilo-tenant serve`'s `POST /v1/classify`.
///
/// Single messages go out open-loop at a fixed total rate (caller i's k-th
/// request is due at (k + i / C) x C / rate seconds): a slow answer does not
/// slow the offered load, and a request that starts late is counted as late
/// (`late_ms`), so queueing is not hidden. With `--batch N` each caller sends
/// batches of N messages back to back and the figure is messages per second.
enum BenchServeClientsCommand {
    static let spec = CommandSpec(
        name: "bench-serve-clients",
        summary: "Benchmark callers for tools/bench-serve: C agents call a running 'sigilo-tenant serve' at a fixed rate (or in batches).",
        usage: "sigilo-eval bench-serve-clients --port P --token-file F --messages FILE [--callers C] [--rate R] [--seconds S] [--batch N] [--customers]",
        options: [.value("port", "P", "The service's port on 127.0.0.1."),
                  .value("token-file", "F", "An agent token."),
                  .value("messages", "FILE", "Texts, one per line, sent in turn."),
                  .value("callers", "C", "Concurrent callers (default 50)."),
                  .value("rate", "R", "Requests per second in all (default 1000); ignored with --batch."),
                  .value("seconds", "S", "How long to call (default 20)."),
                  .value("batch", "N", "Send batches of N messages back to back instead."),
                  .flag("customers", "Name a customer in each message (the service then offers it to the store).")],
        discussion: "Prints one JSON object: requests, failures, latency percentiles and maximum (ms), requests over 10 ms, messages per second.")

    final class Results: @unchecked Sendable {
        let lock = NSLock()
        var latencies = [Double]()
        var lateness = [Double]()
        var failures = [String]()
        var messages = 0
    }

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        guard let port = UInt16(try args.required("port")) else { throw CLIError.usage("bench-serve-clients: --port expects a port number") }
        let tokenFile = try args.required("token-file"), messagesFile = try args.required("messages")
        guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) else {
            throw CLIError(.noInput, "bench-serve-clients: cannot read \(tokenFile)")
        }
        guard let text = try? String(contentsOfFile: messagesFile, encoding: .utf8) else { throw CLIError(.noInput, "bench-serve-clients: cannot read \(messagesFile)") }
        let texts = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.isEmpty }
        guard !texts.isEmpty else { throw CLIError(.dataError, "bench-serve-clients: \(messagesFile) holds no messages") }
        let callers = try args.int("callers", range: 1...10_000) ?? 50
        let rate = try args.double("rate", where: { $0 > 0 }, expectation: "a positive rate") ?? 1000
        let seconds = try args.double("seconds", where: { $0 > 0 }, expectation: "a positive duration") ?? 20
        let batch = try args.int("batch", range: 1...10_000)
        let customers = args.flag("customers")

        // Bodies are rendered before the clock starts: the callers measure the service, not JSON encoding.
        func escaped(_ s: String) -> String { var out = ""; JSON.escape(s, into: &out); return out }
        func item(_ i: Int) -> String {
            #"{"text":\#(escaped(texts[i % texts.count]))"# + (customers ? #","customer":"bench-\#(i % 997)"}"# : "}")
        }
        let bodies: [[UInt8]]
        if let batch {
            bodies = (0..<max(1, min(64, texts.count / batch))).map { b in
                Array((#"{"messages":["# + (0..<batch).map { item(b * batch + $0) }.joined(separator: ",") + "]}").utf8)
            }
        } else {
            bodies = texts.indices.map { Array(item($0).utf8) }
        }

        let results = Results()
        let headers = [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")]
        let start = DispatchTime.now().uptimeNanoseconds + 200_000_000
        let end = start + UInt64(seconds * 1e9)
        let interval = Double(callers) / rate
        let group = DispatchGroup()
        for caller in 0..<callers {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                let client = HTTPClient(host: "127.0.0.1", port: port, timeout: 30)
                var latencies = [Double](), lateness = [Double](), failures = [String](), sent = 0
                var k = 0
                while true {
                    var now = DispatchTime.now().uptimeNanoseconds
                    if batch == nil {
                        let due = start + UInt64((Double(k) + Double(caller) / Double(callers)) * interval * 1e9)
                        if due >= end { break }
                        if due > now { usleep(UInt32((due - now) / 1000)); now = DispatchTime.now().uptimeNanoseconds }
                        lateness.append(Double(now > due ? now - due : 0) / 1e6)
                    } else {
                        if now < start { usleep(UInt32((start - now) / 1000)); now = DispatchTime.now().uptimeNanoseconds }
                        if now >= end { break }
                    }
                    let body = bodies[(k * callers + caller) % bodies.count]
                    do {
                        let response = try client.send(method: "POST", target: "/v1/classify", headers: headers, body: body)
                        if response.status != 200 { failures.append("status \(response.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))") }
                        else { sent += batch ?? 1 }
                    } catch {
                        failures.append("\(error)")
                    }
                    latencies.append(Double(DispatchTime.now().uptimeNanoseconds - now) / 1e6)
                    k += 1
                }
                results.lock.withLock {
                    results.latencies += latencies
                    results.lateness += lateness
                    results.failures += failures
                    results.messages += sent
                }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let sorted = results.latencies.sorted(), late = results.lateness.sorted()
        func percentile(_ values: [Double], _ p: Double) -> Double {
            values.isEmpty ? 0 : values[min(values.count - 1, Int((p * Double(values.count)).rounded(.up)) - 1)]
        }
        let fields: [(String, JSON)] = [
            ("callers", .integer(callers)), ("batch", batch.map { .integer($0) } ?? .null), ("offered_rps", batch == nil ? .number(rate) : .null),
            ("requests", .integer(sorted.count)), ("failed", .integer(results.failures.count)),
            ("p50_ms", .number(percentile(sorted, 0.5))), ("p99_ms", .number(percentile(sorted, 0.99))),
            ("p999_ms", .number(percentile(sorted, 0.999))), ("max_ms", .number(sorted.last ?? 0)),
            ("mean_ms", .number(sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count))),
            ("over_10ms", .integer(sorted.filter { $0 > 10 }.count)),
            ("late_p99_ms", .number(percentile(late, 0.99))),
            ("achieved_rps", .number(Double(sorted.count) / elapsed)), ("messages_per_s", .number(Double(results.messages) / elapsed)),
            ("first_failure", results.failures.first.map { .string($0) } ?? .null),
        ]
        OutputStream.standardOutput.write(JSON.object(fields).rendered() + "\n")
    }
}
