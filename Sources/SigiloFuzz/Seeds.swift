import Foundation
import SigiloCoordinator
import SigiloCrypto
import SigiloEncoder
import SigiloFederation
import SigiloModel
import SigiloProtocol
import SigiloText

extension FuzzTarget {
    /// Valid (and a few nearly valid) inputs to start from: `tools/fuzz seed`
    /// writes them as the committed corpus, so a fuzzer begins past the magic
    /// numbers and length fields instead of guessing them.
    public var seeds: [[UInt8]] {
        switch self {
        case .httpRequest:
            return [
                "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
                "POST /v1/updates HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nx-sigilo-key-id: tenant-1\r\n\r\nhello",
                "POST /v1/updates HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabcGET / HTTP/1.0\r\n\r\n",
                "PUT /v1/admin/plan HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET /v1/rounds/current?wait=30 HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n",
            ].map { [7] + Array($0.utf8) }
        case .httpResponse:
            return [
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n",
                "HTTP/1.0 204 No Content\r\n\r\n",
            ].map { [5] + Array($0.utf8) }
        case .updateEnvelope:
            return [
                UpdateEnvelope(round: 3, modelVersion: 2, flags: [], weight: 12.5, values: [0.5, -1, 0, 3e-7]).encoded(),
                UpdateEnvelope(round: 1, modelVersion: 0, flags: [], weight: 0, values: [1]).encoded(),
            ]
        case .maskedUpdate:
            return [UpdateEnvelope(round: 9, modelVersion: 8, weight: 4, masked: [0, 1, .max, 1 << 40]).encoded()]
        case .modelFile:
            let features = FeatureConfiguration(bucketBits: 8)
            var model = SoftmaxModel(features: features, labels: ["saudacao", "boleto", "oos"], temperature: 1.5,
                                     handoffThreshold: 0.4, handoffLabels: [2])
            for i in model.weights.indices { model.weights[i] = Float(i % 7) * 0.25 - 0.75 }
            return [ModelFile.encode(model)]
        case .plan:
            var secure = Plan(labels: ["a", "b"], placement: .secure, minimumTenants: 3)
            secure.maximumTenantWeight = 500
            var relabelled = Plan(labels: ["greeting", "segunda_via", "oos"])
            (relabelled.formerLabels, relabelled.dormantAfterMissedRounds) = (["billing": "segunda_via", "boleto": "segunda_via"], 5)
            return [try! JSONEncoder().encode(Plan(labels: ["greeting", "billing", "oos"])), try! JSONEncoder().encode(secure),
                    try! JSONEncoder().encode(relabelled)]
                .map { Array($0) }
        case .secureRound:
            let p = try! SecureAggregation.RoundParameters(round: 7, modelVersion: 6, cohort: ["tenant-1", "tenant-2", "tenant-3"], threshold: 3,
                                                           degree: 2, graphSeed: [UInt8](repeating: 3, count: 32))
            let secrets = try! SecureAggregation.RoundSecrets(encryption: .init(privateKey: [UInt8](repeating: 4, count: 32)),
                                                              mask: .init(privateKey: [UInt8](repeating: 5, count: 32)), seed: [UInt8](repeating: 6, count: 32))
            let ad = try! SecureAggregation.Advertisement.signed(round: 7, tenant: "tenant-2", identity: FuzzTarget.fuzzIdentity, secrets: secrets)
            let share = SecureAggregation.EncryptedShare(from: "tenant-2", to: "tenant-1", ciphertext: [UInt8](repeating: 8, count: SecureAggregation.shareCiphertextBytes))
            let view = SecureAggregation.RoundView(parameters: p, stage: .unmask, stageDeadline: 1_800_000_000.5, neighbours: [ad],
                                                   sharedNeighbours: ["tenant-2"], survivors: ["tenant-1", "tenant-2", "tenant-3"],
                                                   shares: [.init(from: "tenant-2", to: "", ciphertext: share.ciphertext)])
            let reveal = SecureAggregation.RevealedShare(owner: "tenant-2", kind: .seed, share: .init(x: 1, values: [1, 2, 3, 4, (1 << 61) - 2]))
            return [[0] + Array(SecureRoundWire.render(view).utf8), [1] + Array(SecureRoundWire.advertisement(ad).utf8),
                    [2] + Array(SecureRoundWire.shares([share]).utf8), [3] + Array(SecureRoundWire.reveals([reveal]).utf8)]
        case .signedHeaders:
            let identity = FuzzTarget.fuzzIdentity
            let headers = try! RequestSigning.sign(method: "POST", path: "/v1/updates", body: Array("x".utf8), keyId: "tenant-1",
                                                   key: identity, timestamp: 1_800_000_000,
                                                   nonce: [UInt8](repeating: 1, count: 16))
            return [Array(headers.map { "\($0.0): \($0.1)" }.joined(separator: "\n").utf8)]
        case .jsonLines:
            return [
                #"{"customer": "+55 11 91234-5678", "text": "Oi, meu CPF é 123.456.789-09", "intent": "greeting", "consent": true}"#
                    + "\n" + #"{"customer": "c2", "text": "boleto atrasado", "intent": "billing", "consent": false, "time": "2026-01-01", "id": "m-1"}"#,
                "\n\r\n{\"customer\": 1}\n[1, 2]\nnot json\n",
            ].map { Array($0.utf8) }
        case .whatsappWebhook:
            return [
                #"{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"5511987654321","id":"wamid.A","timestamp":"1733400000","type":"text","text":{"body":"cadê meu pedido?"}},{"from":"1","id":"b","timestamp":"2","type":"image","image":{}}],"statuses":[{"id":"s"}]}}]}]}"#,
                #"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"from":"1"}]}}]}]}"#,
            ].map { Array($0.utf8) }
        case .whatsappExport:
            return [
                "12/03/2024 14:05 - Sistema sem autor\n12/03/2024 14:05 - Maria: Oi\nsegunda linha\n13/03/2024 09:00 - Maria: <Mídia oculta>\n",
                "\u{200E}[3/12/24, 2:05:40\u{202F}PM] Maria: Hi\n[3/12/24, 2:06:01 PM] Loja: \u{200E}image omitted\r\n",
            ].map { Array($0.utf8) }
        case .encoderFile:
            var shorter = TinyEncoder()
            (shorter.hidden, shorter.heads, shorter.intermediate, shorter.positions, shorter.pieces) = (32, 4, 32, 8, ["<s>", "<p>", "</s>", "<u>", "▁a"])
            return [TinyEncoder().bytes(), shorter.bytes()]
        case .backupArchive:
            return [BackupArchive(signingKey: [UInt8](repeating: 3, count: 32), database: Array("SQLite format 3\0".utf8)).encoded()]
        }
    }
}
