import Foundation
import Testing
@testable import SigiloTenant

@Suite struct WhatsAppWebhookTests {
    /// From tools/gen-webhook-vectors.py (Python's hmac, not Sigilo's code).
    static let vectors: [(secret: String, body: String, signature: String)] = [
        (secret: "appsecret123", body: "{\"object\":\"whatsapp_business_account\",\"entry\":[]}", signature: "sha256=5f5d4ae685e6c323ebea2d5a7d58ac41acf4344a54bae38373a09987238e8198"),
        (secret: "0123456789abcdef0123456789abcdef", body: "{\"object\":\"whatsapp_business_account\",\"entry\":[{\"id\":\"102290129340398\",\"changes\":[{\"value\":{\"messaging_product\":\"whatsapp\",\"metadata\":{\"display_phone_number\":\"15550783881\",\"phone_number_id\":\"106540352242922\"},\"contacts\":[{\"profile\":{\"name\":\"Maria\"},\"wa_id\":\"5511987654321\"}],\"messages\":[{\"from\":\"5511987654321\",\"id\":\"wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDNzE3\",\"timestamp\":\"1733400000\",\"text\":{\"body\":\"Olá, cadê meu pedido?\"},\"type\":\"text\"}]},\"field\":\"messages\"}]}]}", signature: "sha256=273fe6357b89dad2779012c8cebf62ef2b3a5fc147d37076e9af2d83e039f879"),
        (secret: "ségredo com espaço", body: "corpo qualquer — com UTF-8\n", signature: "sha256=aab586b36da74440747e48793ba132bd95087d28ca830c5e3c3d34cf64f0abb7"),
    ]

    @Test func signaturesMatchAnIndependentImplementation() throws {
        for v in Self.vectors {
            try WhatsAppWebhook.verifySignature(v.signature, body: Array(v.body.utf8), appSecret: Array(v.secret.utf8))
            // Upper-case hex is the same digest.
            try WhatsAppWebhook.verifySignature("sha256=" + v.signature.dropFirst(7).uppercased(), body: Array(v.body.utf8), appSecret: Array(v.secret.utf8))
        }
    }

    @Test func wrongMissingOrMalformedSignaturesAreRefusedPrecisely() {
        let v = Self.vectors[1]
        func code(_ header: String?, body: String = v.body, secret: String = v.secret) -> String? {
            do { try WhatsAppWebhook.verifySignature(header, body: Array(body.utf8), appSecret: Array(secret.utf8)); return nil } catch {
                return (error as? WhatsAppWebhook.Refusal)?.code
            }
        }
        #expect(code(nil) == "unsigned")
        #expect(code("sha1=" + v.signature.dropFirst(7)) == "malformed_signature")
        #expect(code(String(v.signature.dropLast(2))) == "malformed_signature")
        #expect(code(v.signature + "00") == "malformed_signature")
        #expect(code(v.signature, body: v.body + " ") == "bad_signature")
        #expect(code(v.signature, secret: "another secret") == "bad_signature")
        var flipped = Array(v.signature)
        flipped[10] = flipped[10] == "0" ? "1" : "0"
        #expect(code(String(flipped)) == "bad_signature")
    }

    @Test func theVerificationHandshake() throws {
        let token = Array("verify-me".utf8)
        #expect(try WhatsAppWebhook.verificationChallenge(query: "hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444", verifyToken: token) == "1158201444")
        #expect(try WhatsAppWebhook.verificationChallenge(query: "hub.challenge=a%20b&hub.verify_token=verify%2Dme&hub.mode=subscribe", verifyToken: token) == "a b")
        for (query, code) in [("hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1", "bad_verify_token"),
                              ("hub.mode=unsubscribe&hub.verify_token=verify-me&hub.challenge=1", "bad_mode"),
                              ("hub.mode=subscribe&hub.verify_token=verify-me", "bad_challenge"), ("", "bad_mode")] {
            #expect(throws: WhatsAppWebhook.Refusal.self) { try WhatsAppWebhook.verificationChallenge(query: Substring(query), verifyToken: token) }
            do { _ = try WhatsAppWebhook.verificationChallenge(query: Substring(query), verifyToken: token) } catch {
                #expect((error as? WhatsAppWebhook.Refusal)?.code == code, "\(query)")
            }
        }
    }

    @Test func payloadsAreReadAndBadOnesNameTheField() throws {
        let payload = try WhatsAppWebhook.parse(Array(Self.vectors[1].body.utf8))
        #expect(payload.texts == [.init(from: "5511987654321", id: "wamid.HBgNNTUxMTk4NzY1NDMyMRUCABIYFjNFQjBDNzE3", timestamp: 1_733_400_000, body: "Olá, cadê meu pedido?")])
        let mixed = #"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{"id":"x"},{"id":"y"}]}},{"value":{"messages":[{"from":"1","id":"a","timestamp":"5","type":"image","image":{}},{"from":"1","id":"b","timestamp":"6","type":"text","text":{"body":"oi"}}]}}]}]}"#
        let p = try WhatsAppWebhook.parse(Array(mixed.utf8))
        #expect(p.statuses == 2 && p.otherMessages == 1 && p.texts.map(\.id) == ["b"])
        let long = String(repeating: "a", count: 4097)
        for (body, message) in [
            ("[]", "body: not a JSON object"), ("{", "body: not a JSON object"),
            (#"{"object":"page","entry":[]}"#, "object: must be \"whatsapp_business_account\""),
            (#"{"object":"whatsapp_business_account"}"#, "entry: missing or not an array"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"from":"1","id":"a","timestamp":"x","type":"text","text":{"body":"oi"}}]}}]}]}"#,
             "entry[0].changes[0].value.messages[0].timestamp: not a non-negative integer"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"id":"a","timestamp":"1","type":"text","text":{"body":"oi"}}]}}]}]}"#,
             "entry[0].changes[0].value.messages[0].from: missing, empty or longer than 64 bytes"),
            (#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"from":"1","id":"a","timestamp":"1","type":"text","text":{"body":"\#(long)"}}]}}]}]}"#,
             "entry[0].changes[0].value.messages[0].text.body: longer than 4096 bytes"),
        ] {
            #expect(throws: WhatsAppWebhook.Refusal(code: "bad_payload", description: message)) { try WhatsAppWebhook.parse(Array(body.utf8)) }
        }
    }
}

@Suite struct WhatsAppExportTests {
    func parse(_ text: String, order: WhatsAppExport.DateOrder? = nil) -> WhatsAppExport.Parsed {
        WhatsAppExport.parse(Data(text.utf8), file: "chat.txt", order: order)
    }

    @Test func androidInPortuguese() {
        let p = parse("""
        12/03/2024 14:05 - As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta.
        12/03/2024 14:05 - Maria Silva: Oi, boa tarde
        12/03/2024 14:06 - Loja Exemplo: Olá Maria! Como posso ajudar?
        12/03/2024 14:07 - Maria Silva: Meu pedido não chegou
        ainda, já faz 5 dias
        13/03/2024 09:00 - Maria Silva: <Mídia oculta>
        13/03/2024 09:01 - Maria Silva: Esta mensagem foi apagada
        13/03/2024 09:02 - Maria Silva: obrigada <Esta mensagem foi editada>

        """)
        #expect(p.errors.isEmpty && p.dateOrder == .dayFirst && p.skipped == 3)
        #expect(p.messages == [
            .init(line: 2, time: "2024-03-12T14:05", author: "Maria Silva", text: "Oi, boa tarde"),
            .init(line: 3, time: "2024-03-12T14:06", author: "Loja Exemplo", text: "Olá Maria! Como posso ajudar?"),
            .init(line: 4, time: "2024-03-12T14:07", author: "Maria Silva", text: "Meu pedido não chegou\nainda, já faz 5 dias"),
            .init(line: 8, time: "2024-03-13T09:02", author: "Maria Silva", text: "obrigada"),
        ])
    }

    @Test func androidInEnglishWithTwelveHourTimes() {
        let p = parse("3/12/24, 2:05\u{202F}PM - Maria: Hi\r\n3/12/24, 12:10 AM - Maria: <Media omitted>\r\n3/13/24, 12:01 PM - Maria: where is my order\r\n")
        #expect(p.errors.isEmpty && p.dateOrder == .monthFirst && p.skipped == 1)
        #expect(p.messages.map(\.time) == ["2024-03-12T14:05", "2024-03-13T12:01"])
    }

    @Test func iOSInBothLanguages() {
        let pt = parse("""
        \u{200E}[12/03/2024, 14:05:32] Loja: \u{200E}As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta.
        [12/03/2024, 14:05:40] Maria: Oi
        [12/03/2024, 14:06:01] Maria: \u{200E}imagem ocultada
        [12/03/2024, 14:06:09] Maria: \u{200E}<anexado: 00000012-PHOTO-2024-03-12-14-06-09.jpg>
        [12/03/2024, 14:07:00] Maria: dois
        parágrafos
        """)
        #expect(pt.errors.isEmpty && pt.skipped == 3)
        #expect(pt.messages == [.init(line: 2, time: "2024-03-12T14:05:40", author: "Maria", text: "Oi"),
                                .init(line: 5, time: "2024-03-12T14:07:00", author: "Maria", text: "dois\nparágrafos")])
        let en = parse("[3/12/24, 2:05:40\u{202F}PM] Maria: Hi\n[3/12/24, 2:06:01\u{202F}PM] Maria: image omitted\n")
        #expect(en.errors.isEmpty && en.dateOrder == .monthFirst && en.skipped == 1 && en.messages.map(\.time) == ["2024-03-12T14:05:40"])
    }

    @Test func errorsNameTheLine() {
        let p = parse("""
        texto solto antes de tudo
        31/02/2024 10:00 - Maria: fevereiro não tem 31
        15/13/2024 10:00 - Maria: nem mês 13
        01/03/2024 25:00 - Maria: nem 25 horas
        01/03/2024 10:00 - Maria: esta vale
        13/03/0224 06:00 - Maria: ano 224
        """)
        #expect(p.errors.map(\.description) == [
            "chat.txt:1: text before the first dated message line",
            "chat.txt:2: day 31 does not exist in month 2 of 2024",
            "chat.txt:3: month 13 does not exist (date order dmy; see --date-order)",
            "chat.txt:4: time 25:00 does not exist",
            "chat.txt:6: year 224 is outside 2000-2099",
        ])
        #expect(p.messages.map(\.text) == ["esta vale"])
        let invalid = WhatsAppExport.parse(Data([0x31, 0x0a, 0xff, 0xfe, 0x0a]), file: "bad.txt")
        #expect(invalid.errors.map(\.description).contains("bad.txt:2: not valid UTF-8"))
        let long = parse("01/03/2024 10:00 - Maria: " + String(repeating: "a", count: 5000))
        #expect(long.errors.map(\.description) == ["chat.txt:1: message longer than 4096 bytes"] && long.messages.isEmpty)
    }

    @Test func theDateOrderCanBeForced() {
        let p = parse("01/02/2024 10:00 - Maria: oi\n", order: .monthFirst)
        #expect(p.messages.map(\.time) == ["2024-01-02T10:00"])
        #expect(parse("01/02/2024 10:00 - Maria: oi\n").messages.map(\.time) == ["2024-02-01T10:00"])
    }
}
