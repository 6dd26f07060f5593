import Foundation
import Testing
import SigiloCrypto
import SigiloHTTP
import SigiloSQLite

/// `sigilo-tenant serve` as a business's agent and WhatsApp reach it: real processes, real HTTP.
@Suite(.serialized) struct TenantServiceEndToEndTests {
    /// A served tenant of `world`, with an agent token and the webhook secrets.
    struct Served {
        let server: RunningCoordinator
        let client: HTTPClient
        let token: String
        let appSecret = "test-app-secret"

        func call(_ method: String, _ target: String, _ body: String = "", token: String? = nil, headers: [(String, String)] = []) throws -> (status: Int, json: [String: Any]) {
            let response = try client.send(method: method, target: target, headers: [("Authorization", "Bearer \(token ?? self.token)")] + headers, body: Array(body.utf8))
            return (response.status, (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:])
        }

        /// A webhook delivery of text messages (customer, id, text), signed with the app secret unless `signature` is given.
        func deliver(_ messages: [(from: String, id: String, text: String)], signature: String? = nil) throws -> (status: Int, json: [String: Any]) {
            let items = messages.map { m -> [String: Any] in
                ["from": m.from, "id": m.id, "timestamp": String(Int(Date().timeIntervalSince1970)), "type": "text", "text": ["body": m.text]]
            }
            let body = try JSONSerialization.data(withJSONObject: ["object": "whatsapp_business_account",
                                                                   "entry": [["id": "1", "changes": [["field": "messages", "value": ["messages": items]]]]]])
            let signed = signature ?? "sha256=" + Hex.encode(HMACSHA256.authenticate(Array(body), key: Array(appSecret.utf8)))
            let response = try client.send(method: "POST", target: "/v1/whatsapp/webhook", headers: [("X-Hub-Signature-256", signed)], body: Array(body))
            return (response.status, (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:])
        }

        /// Waits until /healthz names a model containing `name`.
        func waitForModel(_ name: String) throws {
            for _ in 0..<50 {
                let health = try client.send(method: "GET", target: "/healthz")
                if String(decoding: health.body, as: UTF8.self).contains(name) { return }
                usleep(100_000)
            }
            Issue.record("the service never took up a model named \(name)")
        }
    }

    func serve(_ world: TenantWorld, _ args: [String]) throws -> Served {
        let token = try Binary.run("sigilo-tenant", ["agent-token", "create", "agent"] + args).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("sga_"))
        let secret = world.dir.appendingPathComponent("app-secret"), verify = world.dir.appendingPathComponent("verify-token")
        try writePrivateFile(secret.path, "test-app-secret\n")
        try writePrivateFile(verify.path, "verify-me\n")
        let server = try RunningCoordinator(program: "sigilo-tenant", arguments: ["serve", "--listen", "127.0.0.1:0",
            "--whatsapp-app-secret-file", secret.path, "--whatsapp-verify-token-file", verify.path] + args,
                                            log: world.dir.appendingPathComponent("serve.log"))
        return Served(server: server, client: HTTPClient(host: "127.0.0.1", port: server.port, timeout: 10), token: token)
    }

    func writePrivateFile(_ path: String, _ text: String) throws {
        #expect(FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]))
    }

    /// (source, customer handle count) of what the store holds: read from the database itself, not from any answer.
    func storedMessages(_ world: TenantWorld, _ name: String) throws -> (webhook: Int, labelled: Int, all: Int) {
        let db = try Database(path: world.dir.appendingPathComponent("\(name)/tenant.sqlite").path)
        var counts = (webhook: 0, labelled: 0, all: 0)
        try db.run("SELECT COUNT(*), SUM(source = 'webhook'), SUM(source = 'webhook' AND intent IS NOT NULL) FROM messages") {
            counts = (Int($0.integer(1)), Int($0.integer(2)), Int($0.integer(0)))
        }
        return counts
    }

    @Test func webhookMessagesHandedOffLabelledByAttendantsThenLearnt() throws {
        let world = try TenantWorld()
        defer { world.close() }
        let args = try world.tenant("loja")
        let file = world.data.appendingPathComponent("tenant-01-loja.jsonl")
        #expect(try Binary.run("sigilo-tenant", ["import", file.path] + args).status == 0)
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
        #expect(try TenantEndToEndTests().waitForOpenRound(args).status == 0)
        let served = try serve(world, args)
        defer { _ = served.server.stop() }
        try served.waitForModel("global 1")

        // Three WhatsApp customers: one consents, one never did, one consents and is then forgotten.
        let (consenting, silent, forgotten) = ("5511900000001", "5511900000002", "5511900000003")
        for customer in [consenting, forgotten] {
            let r = try served.call("POST", "/v1/consent", #"{"customer":"\#(customer)","consent":true}"#)
            #expect(r.status == 200 && r.json["customer_was_known"] as? Bool == false)
        }
        // A phrasing the shared model never saw, meaning "when does it arrive", and two messages a human must take.
        let novel = ["o zorbix do flurpo chega quando", "zorbix flurpo previsão", "meu flurpo zorbix vem hoje", "quando vem o zorbix flurpo",
                     "flurpo zorbix data", "zorbix e flurpo quando chegam"]
        var messages = novel.enumerated().map { (from: consenting, id: "wamid.N\($0)", text: $1) }
        messages += [(consenting, "wamid.H1", "quero falar com um atendente humano agora"),
                     (consenting, "wamid.S1", "meu cpf é 123.456.789-09, pode conferir?"),
                     (silent, "wamid.X1", "o zorbix do flurpo chega quando"), (forgotten, "wamid.F1", "o zorbix do flurpo chega quando")]
        let delivered = try served.deliver(messages)
        #expect(delivered.status == 200, "\(delivered.json)")
        let results = try #require(delivered.json["results"] as? [[String: Any]])
        #expect(results.count == messages.count && results.map { $0["message_id"] as? String } == messages.map(\.id))
        let byID = Dictionary(uniqueKeysWithValues: results.map { ($0["message_id"] as! String, $0) })
        for result in results {
            #expect((result["decision"] as? String == "handoff") == (result["reason"] is String), "\(result)")
            if result["intent"] as? String == "falar_com_humano" { #expect(result["reason"] as? String == "customer_asked_for_human") }
        }
        #expect(byID["wamid.S1"]?["decision"] as? String == "handoff" && byID["wamid.S1"]?["reason"] as? String == "sensitive_data")
        #expect(byID["wamid.N0"]?["intent"] as? String != "prazo_entrega")
        // Kept for feedback: the consenting customers' nine, not the silent one's.
        #expect(try storedMessages(world, "loja").webhook == 9)

        // A replayed delivery, a forged one and an oversized one change nothing.
        #expect(try served.deliver(messages).status == 200)
        let forged = try served.deliver([(consenting, "wamid.Z1", "forjada")], signature: "sha256=" + String(repeating: "ab", count: 32))
        #expect(forged.status == 401 && forged.json["error"] as? String == "bad_signature")
        #expect(try served.deliver([(consenting, "wamid.Z2", "sem assinatura")], signature: "").status == 401)
        let malformed = Array(#"{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"messages":[{"from":"1","id":"x","type":"text"}]}}]}]}"#.utf8)
        let signedMalformed = try served.client.send(method: "POST", target: "/v1/whatsapp/webhook", headers: [
            ("X-Hub-Signature-256", "sha256=" + Hex.encode(HMACSHA256.authenticate(malformed, key: Array(served.appSecret.utf8))))], body: malformed)
        #expect(signedMalformed.status == 400 && String(decoding: signedMalformed.body, as: UTF8.self).contains("messages[0].timestamp"))
        let socket = try LoopbackSocket(port: served.server.port, source: "127.0.0.1")
        socket.send("POST /v1/whatsapp/webhook HTTP/1.1\r\nHost: a\r\nContent-Length: 4000000\r\nX-Hub-Signature-256: sha256=00\r\n\r\n")
        #expect(socket.readHead().hasPrefix("HTTP/1.1 413"))
        socket.close()
        #expect(try storedMessages(world, "loja").webhook == 9)

        // The forgotten customer is erased while the service runs; attendants label what they handled.
        #expect(try Binary.run("sigilo-tenant", ["forget", forgotten] + args).status == 0)
        for id in novel.indices.map({ "wamid.N\($0)" }) {
            let r = try served.call("POST", "/v1/feedback", #"{"message_id":"\#(id)","intent":"prazo_entrega"}"#)
            #expect(r.status == 200 && r.json["kept"] as? Bool == true, "\(r.json)")
        }
        #expect(try served.call("POST", "/v1/feedback", #"{"message_id":"wamid.H1","intent":"falar_com_humano"}"#).json["kept"] as? Bool == true)
        let corrected = try served.call("POST", "/v1/feedback", #"{"message_id":"wamid.H1","intent":"reclamacao"}"#)
        #expect(corrected.json["corrected_from"] as? String == "falar_com_humano")
        for id in ["wamid.X1", "wamid.F1"] {
            let r = try served.call("POST", "/v1/feedback", #"{"message_id":"\#(id)","intent":"prazo_entrega"}"#)
            #expect(r.status == 200 && r.json["kept"] as? Bool == false, "\(r.json)")
        }
        #expect(try served.call("POST", "/v1/feedback", #"{"message_id":"wamid.N0","intent":"no_such_intent"}"#).status == 400)
        #expect(try served.call("POST", "/v1/feedback", #"{"message_id":"wamid.N0","intent":"prazo_entrega"}"#, token: "sga_wrong").status == 401)
        let stored = try storedMessages(world, "loja")
        #expect(stored.webhook == 8 && stored.labelled == 7, "\(stored)")

        // A round and a personalisation later, the service (not restarted) answers the new phrasing with the attendants' intent.
        let egressBefore = world.proxy.bytes.count
        #expect(try TenantEndToEndTests().waitForOpenRound(args).status == 0)
        #expect(world.proxy.bytes.count > egressBefore)
        #expect(try Binary.run("sigilo-tenant", ["personalise"] + args).status == 0)
        try served.waitForModel("personalised")
        let answer = try served.call("POST", "/v1/classify", #"{"text":"o zorbix do flurpo chega quando"}"#)
        #expect(answer.status == 200 && answer.json["intent"] as? String == "prazo_entrega", "\(answer.json)")

        // What left the tenant carries none of the delivered texts, nor the customers' numbers.
        let egress = world.proxy.bytes
        for text in messages.map(\.text) + [consenting, silent, forgotten] {
            let bytes = Array(text.utf8)
            for i in stride(from: 0, through: bytes.count - 8, by: 4) { #expect(!contains(egress, Array(bytes[i..<(i + 8)])), "\(text)") }
        }

        // A withdrawn consent deletes the customer's messages here too, and the personalised model that learnt from them.
        let withdrawn = try served.call("POST", "/v1/consent", #"{"customer":"\#(consenting)","consent":false}"#)
        #expect(withdrawn.json["messages_deleted"] as? Int == 8 && withdrawn.json["personalised_model_deleted"] as? Bool == true, "\(withdrawn.json)")
        #expect(try storedMessages(world, "loja").webhook == 0)
        try served.waitForModel("global 2")
        let metrics = String(decoding: try served.client.send(method: "GET", target: "/metrics", headers: [("Authorization", "Bearer \(served.token)")]).body, as: UTF8.self)
        #expect(metrics.contains(#"sigilo_tenant_feedback_total{outcome="discarded"} 2"#) && metrics.contains(#"sigilo_tenant_webhook_refused_total{reason="bad_signature"} 1"#), "\(metrics)")
        #expect(served.server.stop() == 0)
    }

    @Test func agentsNeedALiveTokenAndRequestsAreCheckedField() throws {
        let world = try TenantWorld()
        defer { world.close() }
        let args = try world.tenant("loja")
        let served = try serve(world, args)
        defer { _ = served.server.stop() }
        // No model yet: said plainly; health still answers.
        #expect(try served.call("POST", "/v1/classify", #"{"text":"oi"}"#).json["error"] as? String == "no_model")
        #expect(try served.client.send(method: "GET", target: "/healthz").status == 200)
        #expect(try served.call("POST", "/v1/classify", #"{"text":"oi"}"#, token: "nope").status == 401)
        // Bad bodies name the field.
        for (body, message) in [(#"{"text":""}"#, "text: must be a string of 1 to 4096 bytes"), (#"{"text":"a","x":1}"#, "body: unknown field \"x\""),
                                (#"{"messages":[{"text":"a"},{"text":1}]}"#, "messages[1].text: must be"), ("nope", "body: not JSON"),
                                (#"{"messages":[]}"#, "messages: must be an array of 1 to 10000 objects")] {
            let r = try served.call("POST", "/v1/classify", body)
            #expect(r.status == 400 && (r.json["message"] as? String ?? "").hasPrefix(message), "\(r.json)")
        }
        let feedback = try served.call("POST", "/v1/feedback", #"{"message_id":"m","intent":"x","extra":1}"#)
        #expect(feedback.status == 400 && (feedback.json["message"] as? String ?? "").contains("unknown field \"extra\""))
        #expect(try served.call("POST", "/v1/consent", #"{"customer":"c","consent":1}"#).json["message"] as? String == "consent: must be true or false")
        // Revoked while serving: refused within the service's refresh period.
        #expect(try Binary.run("sigilo-tenant", ["agent-token", "revoke", "agent"] + args).status == 0)
        var status = 0
        for _ in 0..<20 where status != 401 { usleep(100_000); status = try served.call("POST", "/v1/consent", #"{"customer":"c","consent":true}"#).status }
        #expect(status == 401)
        #expect(try Binary.run("sigilo-tenant", ["agent-token", "revoke", "agent"] + args).status == 1)
        #expect(try Binary.run("sigilo-tenant", ["agent-token", "list"] + args).stdout.contains("revoked"))
        // The webhook handshake.
        #expect(String(decoding: try served.client.send(method: "GET", target: "/v1/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=42").body, as: UTF8.self) == "42")
        #expect(try served.client.send(method: "GET", target: "/v1/whatsapp/webhook?hub.mode=subscribe&hub.verify_token=no&hub.challenge=42").status == 403)
        // Secrets readable by others are refused, on the command line never.
        let open = world.dir.appendingPathComponent("open-secret")
        #expect(FileManager.default.createFile(atPath: open.path, contents: Data("s".utf8), attributes: [.posixPermissions: 0o644]))
        let refused = try Binary.run("sigilo-tenant", ["serve", "--whatsapp-app-secret-file", open.path, "--whatsapp-verify-token-file", open.path] + args)
        #expect(refused.status == 77 && refused.stderr.contains("chmod 600"))
        #expect(try Binary.run("sigilo-tenant", ["serve", "--listen", "0.0.0.0:0"] + args).status == 77)
    }

    /// GET `target` over a Unix-domain socket: the status line, or nil when nothing listens.
    func unixGet(_ path: String, _ target: String) -> String? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard connected == 0 else { return nil }
        let request = Array("GET \(target) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var buffer = [UInt8](repeating: 0, count: 4096), reply = [UInt8]()
        while true { let n = recv(fd, &buffer, buffer.count, 0); if n <= 0 { break }; reply += buffer[0..<n] }
        return String(decoding: reply, as: UTF8.self)
    }

    @Test func aUnixSocketForLocalAgentsOnlyThisUserCanOpen() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = ["--state", dir.appendingPathComponent("s").path, "--key-file", dir.appendingPathComponent("k").path]
        #expect(try Binary.run("sigilo-tenant", ["init"] + args).status == 0)
        let path = dir.appendingPathComponent("agent.sock").path
        func start() throws -> Process {
            let process = Process()
            process.executableURL = Binary.directory.appendingPathComponent("sigilo-tenant")
            process.arguments = ["serve", "--socket", path] + args
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            #expect(String(decoding: out.fileHandleForReading.availableData, as: UTF8.self) == "listening on unix:\(path)\n")
            return process
        }
        let first = try start()
        #expect(unixGet(path, "/healthz")?.hasPrefix("HTTP/1.1 200") == true)
        #expect(unixGet(path, "/metrics")?.hasPrefix("HTTP/1.1 401") == true)
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) == 0o600)
        // A second server on the same socket is refused; one killed leaves a socket file the next replaces.
        let second = try Binary.run("sigilo-tenant", ["serve", "--socket", path] + args)
        #expect(second.status == 1 && second.stderr.contains("another server is listening on \(path)"))
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: path) && unixGet(path, "/healthz") == nil)
        let again = try start()
        #expect(unixGet(path, "/healthz")?.hasPrefix("HTTP/1.1 200") == true)
        again.terminate()
        again.waitUntilExit()
        #expect(again.terminationStatus == 0 && !FileManager.default.fileExists(atPath: path))
        #expect(try Binary.run("sigilo-tenant", ["serve", "--socket", path, "--listen", "127.0.0.1:0"] + args).status == 64)
    }
}

/// The store's promises as a new user meets them through the CLI alone.
@Suite struct TenantStoreCommandTests {
    func store() throws -> (dir: URL, args: [String]) {
        let dir = try temporaryDirectory()
        let args = ["--state", dir.appendingPathComponent("s").path, "--key-file", dir.appendingPathComponent("k").path]
        #expect(try Binary.run("sigilo-tenant", ["init"] + args).status == 0)
        return (dir, args)
    }

    func messageCount(_ dir: URL) throws -> (labelled: Int, unlabelled: Int) {
        let db = try Database(path: dir.appendingPathComponent("s/tenant.sqlite").path)
        var counts = (labelled: 0, unlabelled: 0)
        try db.run("SELECT SUM(intent IS NOT NULL), SUM(intent IS NULL) FROM messages") { counts = (Int($0.integer(0)), Int($0.integer(1))) }
        return counts
    }

    @Test func aRevokedConsentDeletesTheMessagesAndACorrectedImportReplacesTheLabel() throws {
        let (dir, args) = try store()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("export.jsonl")
        let lines = (0..<7).map { #"{"customer":"ana","text":"mensagem \#($0)","intent":"status_pedido","consent":true,"id":"m\#($0)"}"# }
            + [#"{"customer":"bia","text":"oi","intent":"saudacao","consent":true}"#]
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        #expect(try Binary.run("sigilo-tenant", ["import", file.path] + args).stdout.hasPrefix("imported 8 messages"))
        // The same export with one intent corrected: the label is replaced, and the summary says so.
        try lines.enumerated().map { $0 == 3 ? $1.replacingOccurrences(of: "status_pedido", with: "cancelar") : $1 }.joined(separator: "\n")
            .write(to: file, atomically: true, encoding: .utf8)
        let again = try Binary.run("sigilo-tenant", ["import", file.path] + args)
        #expect(again.stdout.contains("7 duplicates skipped; 1 stored messages relabelled"), "\(again.stdout)")
        let db = try Database(path: dir.appendingPathComponent("s/tenant.sqlite").path)
        var intents = [String: Int]()
        try db.run("SELECT intent, COUNT(*) FROM messages GROUP BY intent") { intents[$0.text(0)] = Int($0.integer(1)) }
        #expect(intents == ["status_pedido": 6, "cancelar": 1, "saudacao": 1])
        // A withdrawn consent leaves none of the customer's messages in the store.
        let revoked = try Binary.run("sigilo-tenant", ["consent", "revoke", "ana"] + args)
        #expect(revoked.stdout.contains("deleted 7 of the customer's messages") && revoked.stderr.isEmpty, "\(revoked.stdout) \(revoked.stderr)")
        #expect(try messageCount(dir).labelled == 1)
        // A customer the store never saw: done, with a warning naming the id.
        let typo = try Binary.run("sigilo-tenant", ["consent", "grant", "anna"] + args)
        #expect(typo.status == 0 && typo.stderr.contains("never seen customer \"anna\""))
        let forgotten = try Binary.run("sigilo-tenant", ["forget", "bja"] + args)
        #expect(forgotten.status == 0 && forgotten.stderr.contains("never seen customer \"bja\""))
        #expect(try Binary.run("sigilo-tenant", ["forget", "bia"] + args).stderr.isEmpty)
    }

    @Test func whatsappChatExportsAreImportedUnlabelledWithLineErrors() throws {
        let (dir, args) = try store()
        defer { try? FileManager.default.removeItem(at: dir) }
        let android = dir.appendingPathComponent("android.txt"), ios = dir.appendingPathComponent("ios.txt")
        try """
        12/03/2024 14:05 - As mensagens e as chamadas são protegidas com a criptografia de ponta a ponta.
        12/03/2024 14:05 - Maria Silva: Oi, boa tarde
        12/03/2024 14:06 - Loja Exemplo: Olá Maria! Como posso ajudar?
        12/03/2024 14:07 - Maria Silva: Meu pedido não chegou
        ainda, meu CPF é 123.456.789-09
        13/03/2024 09:00 - Maria Silva: <Mídia oculta>
        31/02/2024 09:00 - Maria Silva: data impossível
        """.write(to: android, atomically: true, encoding: .utf8)
        try "\u{200E}[3/12/24, 2:05:40\u{202F}PM] Maria: Hi, where is my order?\n[3/12/24, 2:06:01\u{202F}PM] Maria: \u{200E}image omitted\n"
            .write(to: ios, atomically: true, encoding: .utf8)
        let export = ["import", "--format", "whatsapp-export"]
        // Consent must be stated; two authors need the customer named.
        #expect(try Binary.run("sigilo-tenant", export + [android.path, "--customer", "5511900000001"] + args).status == 64)
        let ambiguous = try Binary.run("sigilo-tenant", export + [android.path, "--customer", "5511900000001", "--consent", "granted"] + args)
        #expect(ambiguous.status == 64 && ambiguous.stderr.contains("\"Loja Exemplo\", \"Maria Silva\""), "\(ambiguous.stderr)")
        let wrong = try Binary.run("sigilo-tenant", export + [android.path, "--customer", "5511900000001", "--consent", "granted", "--author", "Mario"] + args)
        #expect(wrong.status == 65 && wrong.stderr.contains("no messages from \"Mario\""))
        let strict = try Binary.run("sigilo-tenant", export + [android.path, "--customer", "5511900000001", "--consent", "granted", "--author", "Maria Silva", "--strict"] + args)
        #expect(strict.status == 65 && strict.stderr.contains("\(android.path):7: day 31 does not exist in month 2 of 2024"))
        #expect(try messageCount(dir) == (0, 0))
        let imported = try Binary.run("sigilo-tenant", export + [android.path, "--customer", "5511900000001", "--consent", "granted", "--author", "Maria Silva"] + args)
        #expect(imported.status == 65 && imported.stdout.contains("imported (unlabelled) 2 messages"), "\(imported.stdout)")
        #expect(try Binary.run("sigilo-tenant", export + [ios.path, "--customer", "5511900000002", "--consent", "withheld"] + args).stdout.contains("1 skipped without consent"))
        #expect(try Binary.run("sigilo-tenant", export + [ios.path, "--customer", "5511900000002", "--consent", "granted"] + args).status == 0)
        #expect(try messageCount(dir) == (0, 3))
        // Stored redacted, like every other message.
        let db = try Database(path: dir.appendingPathComponent("s/tenant.sqlite").path)
        var sealed = [[UInt8]]()
        try db.run("SELECT sealed_text FROM messages") { sealed.append($0.blob(0)) }
        #expect(sealed.allSatisfy { !contains($0, Array("123.456".utf8)) && !contains($0, Array("pedido".utf8)) })
        let status = try Binary.run("sigilo-tenant", ["status"] + args).stdout
        #expect(status.contains("messages: 0 labelled (they train), 3 waiting for an attendant's label"), "\(status)")
        #expect(try Binary.run("sigilo-tenant", ["import", "--format", "csv", ios.path] + args).status == 64)
        #expect(try Binary.run("sigilo-tenant", ["import", "--customer", "x", ios.path] + args).status == 64)
    }
}
