import Foundation
import SigiloCLI
import SigiloCrypto
import SigiloEncoder
import SigiloModel
import SigiloText

/// `--features hashed|encoder|both`, `--encoder PATH` and
/// `--embedding-cache DIR`, shared by the commands that train: the feature
/// extractor they describe, and examples encoded with it, the encoder's
/// embeddings read from (or added to) the cache.
struct FeatureOptions {
    static let specs: [OptionSpec] = [
        .value("features", "hashed|encoder|both", "Hashed n-grams (default), the sentence encoder's centred embedding, or both side by side."),
        .value("encoder", "PATH", "Encoder file for encoder features (default: the shipped models/e5-small-enpt-q4.sgle, digest checked)."),
        .value("embedding-cache", "DIR", "Where encoder embeddings of data sets are kept between runs, keyed by the encoder's digest and the texts "
               + "(default: $XDG_CACHE_HOME/sigilo or ~/.cache/sigilo)."),
    ]

    let kind: FeatureKind
    let encoder: Encoder?
    let cache: URL

    init(_ args: ParsedArguments) throws {
        let raw = args.string("features") ?? "hashed"
        guard let kind = FeatureKind(rawValue: raw) else {
            throw CLIError.usage("\(args.command): --features expects hashed, encoder or both, got \"\(raw)\"")
        }
        self.kind = kind
        if kind.usesEncoder {
            do { encoder = try EncoderLocation.load(path: args.string("encoder")) } catch {
                throw CLIError(.noInput, "\(args.command): \(error)")
            }
        } else {
            encoder = nil
        }
        let environment = ProcessInfo.processInfo.environment
        let base = args.string("embedding-cache").map { URL(fileURLWithPath: $0) }
            ?? environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0).appendingPathComponent("sigilo") }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/sigilo")
        cache = base.appendingPathComponent("embeddings")
    }

    /// The configuration `base` with this kind (and encoder) applied.
    func configuration(_ base: FeatureConfiguration) -> FeatureConfiguration {
        FeatureExtractor.configuration(base, kind: kind, encoder: encoder)
    }

    func extractor(_ configuration: FeatureConfiguration) throws -> FeatureExtractor {
        try FeatureExtractor(configuration, encoder: encoder)
    }

    /// Examples of `texts` for `extractor`, the encoder's part from the cache when it is there.
    func examples(_ texts: [String], _ intents: [String], labels: [String], extractor: FeatureExtractor, name: String,
                  log: (String) -> Void) -> EncodedExamples {
        let embeddings = extractor.configuration.kind.usesEncoder ? centredEmbeddings(texts, extractor: extractor, name: name, log: log) : nil
        return EncodedExamples(texts: texts, intents: intents, labels: labels, extractor: extractor, centredEmbeddings: embeddings)
    }

    /// The encoder's centred embeddings of `texts` (redacted as the
    /// extractor does): read from `cache/<key>.f32` when present, computed
    /// with progress and written there otherwise. The key is the SHA-256 of
    /// the encoder's digest and every text, so a changed text or encoder
    /// never reads a stale entry. A damaged entry is recomputed.
    func centredEmbeddings(_ texts: [String], extractor: FeatureExtractor, name: String, log: (String) -> Void) -> [[Float]] {
        let encoder = extractor.encoder!
        let inputs = texts.map(extractor.encoderInput)
        var keyed = Array(encoder.digest.utf8)
        for text in inputs { keyed += [0x0A] + Array(text.utf8) }
        let file = cache.appendingPathComponent(Hex.encode(SHA256.hash(keyed)) + ".f32")
        let width = encoder.architecture.hidden
        if let data = FileManager.default.contents(atPath: file.path), data.count == inputs.count * width * 4 {
            let floats = data.withUnsafeBytes { raw in (0..<inputs.count * width).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) } }
            if floats.allSatisfy(\.isFinite) {
                log("\(name): \(inputs.count) embeddings from \(file.path)")
                return (0..<inputs.count).map { Array(floats[$0 * width..<($0 + 1) * width]) }
            }
        }
        var out = [[Float]]()
        out.reserveCapacity(inputs.count)
        let start = Date()
        for chunk in stride(from: 0, to: inputs.count, by: 1024) {
            out += encoder.features(Array(inputs[chunk..<min(inputs.count, chunk + 1024)]))
            let seconds = Date().timeIntervalSince(start)
            log(String(format: "%@: embedded %d of %d messages (%.0f/s)", name, out.count, inputs.count, Double(out.count) / max(seconds, 1e-9)))
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(inputs.count * width * 4)
        for v in out { for x in v { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes += $0 } } }
        do {
            try FileManager.default.createDirectory(at: cache, withIntermediateDirectories: true)
            try Data(bytes).write(to: file, options: .atomic)
        } catch {
            log("\(name): embeddings not cached (\(error.localizedDescription))")
        }
        return out
    }
}
