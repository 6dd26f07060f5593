import Foundation
import SigiloCLI
import SigiloCoordinator
import SigiloCrypto
import SigiloEncoder
import SigiloFederation
import SigiloHTTP
import SigiloModel
import SigiloProtocol
import SigiloTenant
import SigiloText

/// Every decoder that takes bytes from outside the process, as a fuzz target.
///
/// `run` must never crash, hang or allocate without bound, whatever the bytes.
/// Where a decoder accepts, the harness also checks a property that a wrong
/// decoder would break (re-encoding round-trips, chunked parsing agrees with
/// parsing at once), so the fuzzer finds wrong answers, not only crashes.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case httpRequest = "http-request"
    case httpResponse = "http-response"
    case updateEnvelope = "update-envelope"
    case maskedUpdate = "masked-update"
    case modelFile = "model-file"
    case plan
    case signedHeaders = "signed-headers"
    case jsonLines = "json-lines"
    case backupArchive = "backup-archive"
    case secureRound = "secure-round"
    case whatsappWebhook = "whatsapp-webhook"
    case whatsappExport = "whatsapp-export"
    case encoderFile = "encoder-file"

    /// A property a decoder broke: the fuzzer reports it as a crash.
    public struct Violation: Error, CustomStringConvertible {
        public let description: String
    }

    /// Small enough that a fuzzer's inputs are never refused for size alone.
    static let maximumDimension = 1 << 12

    public func run(_ data: [UInt8]) throws {
        switch self {
        case .httpRequest: try Self.httpRequest(data)
        case .httpResponse: try Self.httpResponse(data)
        case .updateEnvelope: try Self.envelope(data, masked: false)
        case .maskedUpdate: try Self.envelope(data, masked: true)
        case .modelFile: try Self.modelFile(data)
        case .plan: try Self.plan(data)
        case .signedHeaders: try Self.signedHeaders(data)
        case .jsonLines: Self.jsonLines(data)
        case .backupArchive: try Self.backupArchive(data)
        case .secureRound: try Self.secureRound(data)
        case .whatsappWebhook: try Self.whatsappWebhook(data)
        case .whatsappExport: try Self.whatsappExport(data)
        case .encoderFile: try Self.encoderFile(data)
        }
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw Violation(description: message()) }
    }

    // MARK: HTTP

    /// The first byte picks a chunk size; the rest is parsed twice, at once and
    /// in chunks of that size: a stream parser must not depend on how TCP
    /// happens to cut the bytes.
    static func httpRequest(_ data: [UInt8]) throws {
        guard let (chunk, bytes) = split(data) else { return }
        let limits = HTTPLimits(maximumHeaderBytes: 2048, maximumHeaderCount: 16, maximumBodyBytes: 1 << 16)
        func parse(_ chunkSize: Int) -> [String] {
            var parser = RequestParser(limits: limits)
            var events = [String]()
            var offset = 0
            while true {
                let result = parser.next()
                switch result {
                case .needMore:
                    guard offset < bytes.count else { return events + ["needMore"] }
                    let end = min(bytes.count, offset + chunkSize)
                    parser.feed(bytes[offset..<end])
                    offset = end
                case .head(let request, let length):
                    events.append("head \(request.method) \(request.target) \(length)")
                case .request(let request):
                    events.append("request \(request.method) \(request.target) \(request.body.count)")
                case .failure(let error):
                    return events + ["failure \(error.status) \(error.code)"]
                }
            }
        }
        let whole = parse(max(1, bytes.count))
        let chunked = parse(chunk)
        try check(whole == chunked, "request parsing depends on chunking (\(chunk)): \(whole) vs \(chunked)")
    }

    static func httpResponse(_ data: [UInt8]) throws {
        guard let (chunk, bytes) = split(data) else { return }
        let limits = HTTPLimits(maximumHeaderBytes: 2048, maximumHeaderCount: 16, maximumBodyBytes: 1 << 16)
        func parse(_ chunkSize: Int) -> String {
            var parser = ResponseParser(limits: limits)
            var offset = 0
            while true {
                switch parser.next() {
                case .needMore:
                    guard offset < bytes.count else { return "needMore" }
                    let end = min(bytes.count, offset + chunkSize)
                    bytes[offset..<end].withUnsafeBytes { parser.feed($0) }
                    offset = end
                case .response(let response):
                    // Not keepAlive: surplus bytes in the same read make it false, which
                    // a later read cannot (the client's idle check catches those instead).
                    return "response \(response.status) \(response.body)"
                case .failure(let reason):
                    return "failure \(reason)"
                }
            }
        }
        let whole = parse(max(1, bytes.count))
        let chunked = parse(chunk)
        try check(whole == chunked, "response parsing depends on chunking (\(chunk)): \(whole) vs \(chunked)")
    }

    static func split(_ data: [UInt8]) -> (chunk: Int, rest: [UInt8])? {
        guard let first = data.first else { return nil }
        return (Int(first % 64) + 1, Array(data.dropFirst()))
    }

    // MARK: Protocol

    /// The payload checksum would stop the fuzzer at the first mutation, so the
    /// harness writes the right one (the mismatch path has its own unit test);
    /// `masked` sets the encoding field so both payload kinds get explored.
    static func envelope(_ data: [UInt8], masked: Bool) throws {
        var bytes = data
        if bytes.count >= UpdateEnvelope.headerBytes {
            bytes[10] = masked ? 2 : 1
            bytes[11] = 0
            bytes.replaceSubrange(48..<80, with: SHA256.hash(bytes[UpdateEnvelope.headerBytes...]))
        }
        guard let envelope = try? UpdateEnvelope.decode(bytes, maximumDimension: maximumDimension) else { return }
        try check(envelope.weight.isFinite && envelope.weight >= 0, "accepted weight \(envelope.weight)")
        try check(envelope.values.allSatisfy(\.isFinite), "accepted a non-finite value")
        try check(envelope.encoded() == bytes, "decode then encode does not give back the bytes")
        if let words = envelope.masked {
            var sum = SecureAggregation.MaskedSum(dimension: words.count)
            sum.add(words, weight: envelope.weight)
        }
    }

    /// Lines of `name: value` become the request's headers.
    static func signedHeaders(_ data: [UInt8]) throws {
        var headers = [String: String]()
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        }
        guard let credentials = try? RequestSigning.credentials({ headers[$0] }) else { return }
        try check(credentials.signature.count == 64, "accepted a \(credentials.signature.count)-byte signature")
        // The seeds are signed by `fuzzIdentity`; no input may verify under a key that signed nothing.
        let verified = (try? RequestSigning.verifyHead(credentials, method: "POST", path: "/v1/updates",
                                                       publicKey: bystander.publicKey,
                                                       now: credentials.timestamp, skewWindow: 300)) != nil
        try check(!verified, "a signature verified under a key that signed nothing")
        _ = try? RequestSigning.verifyHead(credentials, method: "POST", path: "/v1/updates", publicKey: fuzzIdentity.publicKey,
                                           now: credentials.timestamp, skewWindow: 300)
    }

    /// A secure round's JSON as either end reads it: the first byte picks the
    /// decoder (0 the round view a tenant is given; 1, 2, 3 the advertise,
    /// share and unmask bodies the coordinator takes); what is accepted must
    /// come back the same once re-rendered.
    static func secureRound(_ data: [UInt8]) throws {
        guard let kind = data.first, let object = try? SecureRoundWire.body(Array(data.dropFirst())) else { return }
        func reparse(_ text: String) throws -> [String: Any] { try SecureRoundWire.body(Array(text.utf8)) }
        switch kind % 4 {
        case 0:
            guard let view = try? SecureRoundWire.view(object, round: 7, modelVersion: 6) else { return }
            try check(try SecureRoundWire.view(reparse(SecureRoundWire.render(view)), round: 7, modelVersion: 6) == view, "a round view does not round-trip")
            _ = try? view.parameters.neighbours(of: view.parameters.cohort[0])
        case 1:
            guard let keys = try? SecureRoundWire.advertisement(object) else { return }
            try check([keys.encryptionKey.count, keys.maskKey.count, keys.seedCommitment.count, keys.signature.count] == [32, 32, 32, 64],
                      "accepted keys of the wrong sizes")
        case 2:
            guard let shares = try? SecureRoundWire.shares(object) else { return }
            try check(shares.allSatisfy { $0.ciphertext.count == SecureAggregation.shareCiphertextBytes }, "accepted a share of the wrong size")
        default:
            guard let reveals = try? SecureRoundWire.reveals(object) else { return }
            try check(try SecureRoundWire.reveals(reparse(SecureRoundWire.reveals(reveals))) == reveals, "revealed shares do not round-trip")
        }
    }

    static let fuzzIdentity = try! Ed25519.KeyPair(privateKey: [UInt8](repeating: 7, count: 32))
    static let bystander = try! Ed25519.KeyPair(privateKey: [UInt8](repeating: 9, count: 32))

    // MARK: Files

    static func modelFile(_ data: [UInt8]) throws {
        guard let model = try? ModelFile.decode(data) else { return }
        try check(model.weights.count == model.features.dimension * model.labelCount, "weights do not match dimension x labels")
        try check(model.weights.allSatisfy(\.isFinite) && model.bias.allSatisfy(\.isFinite), "accepted non-finite weights")
        try check((try? ModelFile.decode(ModelFile.encode(model))) == model, "a decoded model does not round-trip")
    }

    /// An encoder file (loaded only after its digest is checked in the
    /// programs, but the decoder must not trust that): whatever loads must
    /// embed a text, cut to the positions, without a crash.
    static func encoderFile(_ data: [UInt8]) throws {
        guard let file = try? EncoderFile(bytes: data), file.architecture.hidden * file.architecture.intermediate <= 1 << 16,
              file.architecture.layers <= 2, let encoder = try? Encoder(file: file) else { return }
        let vectors = encoder.embed(["oi, quero falar com alguém!", String(repeating: "a", count: 100)], parallel: false)
        try check(vectors.count == 2 && vectors.allSatisfy { $0.count == file.architecture.hidden }, "an embedding of the wrong size")
    }

    static func plan(_ data: [UInt8]) throws {
        guard let plan = try? Plan.decode(Data(data)) else { return }
        try plan.validate()
        let again = try Plan.decode(JSONEncoder().encode(plan))
        try check(again == plan, "a decoded plan does not round-trip")
        // As a change from a plan in force: every old intent lands in exactly one new class, or the change is refused.
        let old = ["greeting", "billing", "boleto", "oos"]
        let index = plan.labelIndex
        try check(index.values.allSatisfy(plan.labels.indices.contains), "a label index outside the labels")
        if let relabelling = try? Relabelling(from: old, to: plan) {
            try check(relabelling.sources.count == plan.labels.count && relabelling.sources.joined().sorted() == Array(old.indices),
                      "a relabelling that loses or repeats an intent")
            try check(old.indices.allSatisfy { i in relabelling.sources[index[old[i]]!].contains(i) }, "an intent moved where formerLabels does not say")
        }
    }

    /// An export as `sigilo-tenant import` reads it, each record redacted as import does.
    static func jsonLines(_ data: [UInt8]) {
        let redactor = Redactor()
        _ = try? JSONLines.parse(Data(data), name: "fuzz") { object, _ in
            let record = try ImportCommand.record(object, labels: ["greeting", "billing"])
            _ = redactor.redact(record.text)
        }
    }

    /// A webhook delivery as `serve` reads it once its signature holds.
    static func whatsappWebhook(_ data: [UInt8]) throws {
        guard let payload = try? WhatsAppWebhook.parse(data) else { return }
        for text in payload.texts {
            try check(text.body.utf8.count <= ImportCommand.maximumTextBytes && !text.id.isEmpty && !text.from.isEmpty, "an accepted message breaks a limit")
        }
    }

    /// A chat export: never a crash, and every message within the limits on a line that exists.
    static func whatsappExport(_ data: [UInt8]) throws {
        let parsed = WhatsAppExport.parse(Data(data), file: "fuzz", maximumTextBytes: 256)
        let lines = data.reduce(1) { $0 + ($1 == 0x0a ? 1 : 0) }
        for message in parsed.messages {
            try check(message.text.utf8.count <= 256 && (1...lines).contains(message.line), "an accepted message breaks a limit")
            try check(message.time.utf8.count == 16 || message.time.utf8.count == 19, "a malformed time \(message.time)")
        }
    }

    /// The trailing SHA-256 is rewritten for the same reason as the envelope's.
    static func backupArchive(_ data: [UInt8]) throws {
        var bytes = data
        if bytes.count > 32 { bytes.replaceSubrange((bytes.count - 32)..., with: SHA256.hash(bytes[..<(bytes.count - 32)])) }
        guard let archive = try? BackupArchive.decode(bytes) else { return }
        try check(archive.encoded() == bytes, "a decoded backup does not round-trip")
    }
}
