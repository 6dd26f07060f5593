import Foundation
import SigiloCLI
import SigiloEncoder

/// `sigilo-eval bench-encoder`: the Swift side of tools/bench-encoder.
enum BenchEncoderCommand {
    static let spec = CommandSpec(
        name: "bench-encoder",
        summary: "Time the sentence encoder on a file of messages and print one JSON line of throughput.",
        usage: "sigilo-eval bench-encoder --messages FILE [--encoder PATH] [--serial] [--runs N]",
        options: [
            .value("messages", "FILE", "Messages, one per line (JSON Lines with a \"text\" field also work)."),
            .value("encoder", "PATH", "An encoder file (default: the shipped one, its digest checked)."),
            .flag("serial", "One thread (default: every core)."),
            .value("runs", "N", "Timed passes over the messages; the median is printed (default 3)."),
            .flag("one-by-one", "Embed each message alone on one thread, as a live service does, and print per-message latency instead."),
        ],
        discussion: """
        Prints {"messages","tokens","threads","seconds","messages_per_second","tokens_per_second","load_seconds"}; with --one-by-one
        {"messages","p50_ms","p90_ms","p99_ms","max_ms","mean_ms"} over every pass (the centred feature vector, as a model reads it).
        """
    )

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("messages")
        let runs = try args.int("runs", range: 1...100) ?? 3
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw CLIError(.noInput, "bench-encoder: cannot read \(path)")
        }
        let messages = text.split(separator: "\n").map { line -> String in
            if line.hasPrefix("{"), let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
               let text = object["text"] as? String { return text }
            return String(line)
        }
        guard !messages.isEmpty else { throw CLIError(.dataError, "bench-encoder: \(path) has no messages") }
        let loadStart = Date()
        let encoder: Encoder
        do { encoder = try EncoderLocation.load(path: args.string("encoder")) } catch { throw CLIError(.dataError, "bench-encoder: \(error)") }
        let loadSeconds = Date().timeIntervalSince(loadStart)
        if args.flag("one-by-one") {
            var latencies = [Double]()
            for run in 1...runs {
                for message in messages {
                    let start = DispatchTime.now().uptimeNanoseconds
                    _ = encoder.features([message], parallel: false)
                    latencies.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6)
                }
                printError("bench-encoder: one-by-one pass \(run) of \(runs) done")
            }
            latencies.sort()
            func quantile(_ q: Double) -> Double { latencies[min(latencies.count - 1, Int(q * Double(latencies.count)))] }
            print(String(format: "{\"messages\":%d,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f}",
                         messages.count, quantile(0.5), quantile(0.9), quantile(0.99), latencies.last!, latencies.reduce(0, +) / Double(latencies.count)))
            return
        }
        let parallel = !args.flag("serial")
        let tokens = messages.reduce(0) { $0 + encoder.tokens($1).count }
        var times = [Double]()
        for run in 1...runs {
            let start = Date()
            _ = encoder.embed(messages, parallel: parallel)
            times.append(Date().timeIntervalSince(start))
            printError("bench-encoder: pass \(run) of \(runs): \(String(format: "%.2f", times.last!)) s")
        }
        let median = times.sorted()[times.count / 2]
        let threads = parallel ? ProcessInfo.processInfo.activeProcessorCount : 1
        print(String(format: "{\"messages\":%d,\"tokens\":%d,\"threads\":%d,\"seconds\":%.3f,\"messages_per_second\":%.1f,\"tokens_per_second\":%.0f,\"load_seconds\":%.3f}",
                     messages.count, tokens, threads, median, Double(messages.count) / median, Double(tokens) / median, loadSeconds))
    }
}
