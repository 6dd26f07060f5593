import Foundation
import Testing
import SigiloFederation
import SigiloProtocol
import SigiloSQLite

/// A TCP proxy on loopback that records every byte the clients send, each
/// connection's bytes apart (tenants running side by side interleave).
final class RecordingProxy: @unchecked Sendable {
    let listener: Int32
    let port: UInt16
    let target: UInt16
    private let lock = NSLock()
    private var recorded = [[UInt8]]()
    private var dropping = false
    /// While set, a connection carrying an update is cut before the update reaches the coordinator.
    var dropsUpdates: Bool {
        get { lock.withLock { dropping } }
        set { lock.withLock { dropping = newValue } }
    }

    init(to target: UInt16) throws {
        self.target = target
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(fd, 16)
        var bound = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &bound) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        listener = fd
        port = UInt16(bigEndian: bound.sin_port)
        Thread { [self] in acceptLoop() }.start()
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var to = sockaddr_in()
            to.sin_family = sa_family_t(AF_INET)
            to.sin_port = target.bigEndian
            inet_pton(AF_INET, "127.0.0.1", &to.sin_addr)
            _ = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            // Both descriptors are closed once, after both directions are done: a pump that closed its
            // own while the other could still shut it down would, with descriptor reuse, cut a newer connection.
            let done = DispatchGroup()
            let connection: Int = lock.withLock { recorded.append([]); return recorded.count - 1 }
            for (from, to, record) in [(client, upstream, true), (upstream, client, false)] {
                done.enter()
                Thread { self.pump(from: from, to: to, record: record ? connection : nil); done.leave() }.start()
            }
            done.notify(queue: .global()) { close(client); close(upstream) }
        }
    }

    private func pump(from: Int32, to: Int32, record connection: Int?) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
            if n <= 0 { shutdown(to, Int32(SHUT_WR)); return }
            if let connection { lock.withLock { recorded[connection].append(contentsOf: buffer[0..<n]) } }
            if connection != nil, dropsUpdates, contains(Array(buffer[0..<n]), Array("POST /v1/rounds/".utf8)) {
                shutdown(from, Int32(SHUT_RDWR)); shutdown(to, Int32(SHUT_RDWR)); return
            }
            var offset = 0
            while offset < n {
                let m = buffer.withUnsafeBytes { send(to, $0.baseAddress! + offset, n - offset, Int32(MSG_NOSIGNAL)) }
                if m <= 0 { shutdown(from, Int32(SHUT_RDWR)); shutdown(to, Int32(SHUT_RDWR)); return }
                offset += m
            }
        }
    }

    /// Every connection's requests, one connection after another.
    var bytes: [UInt8] { lock.withLock { recorded.flatMap { $0 } } }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }
}

/// A coordinator with a plan over the synthetic intents, plus tenants made with the real CLI.
struct TenantWorld {
    let dir: URL
    let coordinator: RunningCoordinator
    let proxy: RecordingProxy
    let data: URL

    init(sampleRate: Double = 1.0, maximumEpsilon: Double = 100, placement: Plan.Placement = .tenant, minimumTenants: Int = 1, delta: Double = 1e-5,
         tenants: Int = 2, survivorFraction: Double? = nil, roundSeconds: Double = 30, serveArguments: [String] = [],
         features: (inout Plan) -> Void = { _ in }) throws {
        dir = try temporaryDirectory()
        data = dir.appendingPathComponent("data")
        _ = try Binary.run("sigilo-eval", ["synth", "--tenants", String(tenants), "--seed", "9", "--out", data.path, "--holdout", "50"])
        let state = dir.appendingPathComponent("coord")
        _ = try Binary.run("sigilo-coordinator", ["init", "--state", state.path])
        let labels = ["agendar_consulta", "agradecimento", "atualizar_cadastro", "cancelar", "disponibilidade_produto", "falar_com_humano",
                      "forma_pagamento", "horario_funcionamento", "prazo_entrega", "reclamacao", "remarcar_consulta", "resultado_exame",
                      "saudacao", "segunda_via", "status_pedido", "troca_devolucao"]
        var plan = Plan(labels: labels, bucketBits: 10, clipNorm: 1, noiseMultiplier: 1, sampleRate: sampleRate, delta: delta,
                        maximumEpsilon: maximumEpsilon, placement: placement, minimumTenants: minimumTenants, roundSeconds: roundSeconds)
        plan.minimumSurvivorFraction = survivorFraction
        features(&plan)
        try JSONEncoder().encode(plan).write(to: dir.appendingPathComponent("plan.json"))
        _ = try Binary.run("sigilo-coordinator", ["plan", "set", dir.appendingPathComponent("plan.json").path, "--state", state.path])
        coordinator = try RunningCoordinator(state: state, arguments: ["--listen", "127.0.0.1:0"] + serveArguments, log: dir.appendingPathComponent("coordinator.log"))
        proxy = try RecordingProxy(to: coordinator.port)
    }

    func tenant(_ name: String, token: String? = nil) throws -> [String] {
        let args = ["--state", dir.appendingPathComponent(name).path, "--key-file", dir.appendingPathComponent("\(name).key").path]
        let initialised = try Binary.run("sigilo-tenant", ["init", "--max-epsilon", "50"] + args)
        #expect(initialised.status == 0, "\(initialised.stderr)")
        return args
    }

    func invite() throws -> String {
        try Binary.run("sigilo-coordinator", ["tenant", "invite", "t", "--state", dir.appendingPathComponent("coord").path]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    var url: String { "http://127.0.0.1:\(proxy.port)" }

    /// Each synthetic tenant's store, its messages imported and enrolled (`--state` and `--key-file` arguments).
    func enrolledShops() throws -> [[String]] {
        let files = try FileManager.default.contentsOfDirectory(atPath: data.path).filter { $0.hasPrefix("tenant-") }.sorted()
        return try files.enumerated().map { i, file in
            let args = try tenant("shop\(i)")
            #expect(try Binary.run("sigilo-tenant", ["import", data.appendingPathComponent(file).path] + args).status == 0)
            #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", url, "--token", try invite()] + args).status == 0)
            return args
        }
    }

    func close() {
        _ = coordinator.stop()
        proxy.stop()
        try? FileManager.default.removeItem(at: dir)
    }
}

@Suite(.serialized) struct TenantEndToEndTests {
    /// `run(0)` ... `run(count - 1)` at once, each on a thread of its own (a pool the size of this
    /// machine's cores could leave one waiting for the others); their results by index.
    func sideBySide(_ count: Int, _ run: @escaping @Sendable (Int) -> Binary.Result?) -> [Int: Binary.Result] {
        final class Results: @unchecked Sendable { var byIndex = [Int: Binary.Result](); let lock = NSLock() }
        let results = Results()
        let group = DispatchGroup()
        for i in 0..<count {
            group.enter()
            Thread {
                let result = run(i)
                results.lock.withLock { results.byIndex[i] = result }
                group.leave()
            }.start()
        }
        group.wait()
        return results.byIndex
    }

    func waitForOpenRound(_ args: [String], attempts: Int = 50) throws -> Binary.Result {
        var last = try Binary.run("sigilo-tenant", ["round"] + args)
        var n = 0
        while last.status == 75, n < attempts { usleep(200_000); last = try Binary.run("sigilo-tenant", ["round"] + args); n += 1 }
        return last
    }

    @Test func egressCarriesNoTextNoIdentifierAndOnlyProtocolRequests() throws {
        let world = try TenantWorld()
        defer { world.close() }
        let args = try world.tenant("loja")
        let file = world.data.appendingPathComponent("tenant-01-loja.jsonl").path
        #expect(try Binary.run("sigilo-tenant", ["import", file] + args).status == 0)
        let missing = try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token-file", "/nonexistent/token"] + args)
        #expect(missing.status == 66 && missing.stderr.contains("/nonexistent/token"))
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token-file", "-", "--token", "x"] + args).status == 64)
        // The token on standard input, not the command line ('ps' shows arguments to every user).
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token-file", "-"] + args, input: try world.invite() + "\n").status == 0)
        for _ in 0..<3 {
            let r = try waitForOpenRound(args)
            #expect(r.status == 0 && r.stdout.hasPrefix("submitted"), "\(r.stdout) \(r.stderr)")
        }
        let egress = world.proxy.bytes
        #expect(egress.count > 3 * 4 * 16_000) // three updates went through the proxy

        // No 6-character piece of any imported text (raw or redacted) and no customer id appears.
        let records = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n").compactMap(jsonObject)
        var needles = Set<[UInt8]>()
        for r in records {
            needles.insert(Array((r["customer"] as! String).utf8))
            for text in [r["text"] as! String, (r["text"] as! String).lowercased()] {
                let bytes = Array(text.utf8)
                if bytes.count >= 6 { for i in 0...(bytes.count - 6) { needles.insert(Array(bytes[i..<(i + 6)])) } }
            }
        }
        var windows = Set<[UInt8]>()
        if egress.count >= 6 { for i in 0...(egress.count - 6) { windows.insert(Array(egress[i..<(i + 6)])) } }
        let leaked = needles.filter { $0.count == 6 ? windows.contains($0) : contains(egress, $0) }
        #expect(leaked.isEmpty, "leaked: \(leaked.prefix(5).map { String(decoding: $0, as: UTF8.self) })")

        // Every request is one the protocol defines, signed, with a valid body.
        var offset = 0
        var requests = 0
        while offset < egress.count {
            guard let headEnd = find(egress, Array("\r\n\r\n".utf8), from: offset) else { Issue.record("truncated request"); break }
            let head = String(decoding: egress[offset..<headEnd], as: UTF8.self)
            let lines = head.components(separatedBy: "\r\n")
            let requestLine = lines[0].split(separator: " ")
            let headers = Dictionary(lines.dropFirst().compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (line[..<colon].lowercased(), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
            }, uniquingKeysWith: { a, _ in a })
            let length = Int(headers["content-length"] ?? "0") ?? 0
            let body = Array(egress[(headEnd + 4)..<min(egress.count, headEnd + 4 + length)])
            let method = String(requestLine[0]), path = String(requestLine[1])
            let allowed = (method == "POST" && path == "/v1/enroll") || (method == "GET" && ["/v1/plan", "/v1/rounds/current"].contains(path))
                || (method == "GET" && path.hasPrefix("/v1/models/")) || (method == "POST" && path.hasPrefix("/v1/rounds/") && path.hasSuffix("/updates"))
            #expect(allowed, "\(method) \(path)")
            for h in ["sigilo-key-id", "sigilo-timestamp", "sigilo-nonce", "sigilo-content-sha256", "sigilo-signature"] {
                #expect(headers[h] != nil, "\(path) lacks \(h)")
            }
            if path == "/v1/enroll" {
                let object = try #require(jsonObject(Substring(String(decoding: body, as: UTF8.self))))
                #expect(Set(object.keys) == ["token", "public_key"]) // one public key
            } else if method == "POST" {
                let update = try UpdateEnvelope.decode(body, maximumDimension: 1 << 20)
                #expect(update.flags.contains(.tenantNoised))
            } else {
                #expect(body.isEmpty)
            }
            offset = headEnd + 4 + length
            requests += 1
        }
        #expect(requests >= 7)
    }

    @Test func aSecureRoundCompletesWithoutTheTenantThatVanished() throws {
        // Four tenants, t = 3 (a survivor's seed needs two of its three neighbours' shares): one may vanish.
        let world = try TenantWorld(placement: .secure, minimumTenants: 4, tenants: 4, survivorFraction: 0.6)
        defer { world.close() }
        let shops = try world.enrolledShops()
        #expect(shops.count == 4)
        // The fourth never answers; the other three take part side by side, each through every stage.
        for round in 1...2 {
            let results = sideBySide(3) { try? waitForOpenRound(shops[$0]) }
            for result in (0..<3).map({ results[$0] }) {
                let out = result?.stdout ?? ""
                #expect(result?.status == 0, "\(out) \(result?.stderr ?? "")")
                for step in ["round \(round): advertised this round's keys (secure cohort of 4, threshold 3)", "round \(round): sent its secrets' shares, encrypted, to",
                             "submitted round \(round) masked, in a secure cohort of 4 tenants (threshold 3)", "round \(round): revealed 2 shares to unmask the sum of 3 tenants' inputs"] {
                    #expect(out.contains(step), "\(out)")
                }
            }
        }
        // Both rounds closed without it, each on three masked inputs.
        let log = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", world.dir.appendingPathComponent("coord").path])
        #expect(log.stdout.components(separatedBy: "3 of 4 masked inputs").count == 3, "\(log.stdout.suffix(2000)) \(log.stderr)")
        #expect(log.stdout.contains("3 of 4 masked inputs"), "\(log.stdout.suffix(2000)) \(log.stderr)")

        // What left the tenants: masked integers only, never floats, flags or text.
        var masked = 0
        var offset = 0
        let egress = world.proxy.bytes
        while let headEnd = find(egress, Array("\r\n\r\n".utf8), from: offset) {
            let head = String(decoding: egress[offset..<headEnd], as: UTF8.self)
            let length = head.components(separatedBy: "\r\n").compactMap { line -> Int? in
                line.lowercased().hasPrefix("content-length:") ? Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) : nil
            }.first ?? 0
            let body = Array(egress[(headEnd + 4)..<(headEnd + 4 + length)])
            if head.hasPrefix("POST /v1/rounds/"), head.contains("/updates ") {
                let update = try UpdateEnvelope.decode(body, maximumDimension: 1 << 20)
                #expect(update.encoding == .maskedUInt64 && update.flags.isEmpty && update.values.isEmpty)
                masked += 1
            } else if head.hasPrefix("POST /v1/rounds/") {
                // Keys, encrypted shares, revealed shares: hex and tenant ids, nothing else.
                let object = try #require(jsonObject(Substring(String(decoding: body, as: UTF8.self))))
                let fields: Set<String> = head.contains("/keys ") ? ["encryption_key", "mask_key", "seed_commitment", "signature"] : ["shares"]
                #expect(Set(object.keys) == fields, "\(head)")
            }
            offset = headEnd + 4 + length
        }
        #expect(masked == 6)
    }

    @Test func aSecureRoundAbandonedBeforeUnmaskingLeavesNoCharge() throws {
        // Three tenants, t = 3: the third advertises and shares, then its own limit refuses to send its input,
        // so the mask stage ends below the threshold and the round is abandoned before any unmasking.
        let world = try TenantWorld(placement: .secure, minimumTenants: 3, tenants: 3, survivorFraction: 0.8)
        defer { world.close() }
        let shops = try world.enrolledShops()
        let results = sideBySide(3) { try? waitForOpenRound(shops[$0] + ($0 == 2 ? ["--max-epsilon", "0.001"] : [])) }
        #expect(results[2]?.status == 77, "\(results[2]?.stdout ?? "") \(results[2]?.stderr ?? "")")
        for i in 0..<2 {
            let out = results[i]?.stdout ?? ""
            #expect(results[i]?.status == 0 && out.contains("submitted round 1 masked"), "\(out) \(results[i]?.stderr ?? "")")
            // Its input left, charged; the round's signed outcome (abandoned at the mask stage) withdraws the charge.
            let privacy = try Binary.run("sigilo-tenant", ["privacy", "--json"] + shops[i])
            let object = try #require(jsonObject(Substring(privacy.stdout)))
            let withdrawn = try #require(object["withdrawn_charges"] as? [[String: Any]])
            #expect(withdrawn.count == 1 && (withdrawn.first?["why"] as? String)?.contains("round 1 was abandoned at its mask stage") == true, "\(privacy.stdout)")
            #expect(object["rounds_joined"] as? Int == 0 && object["epsilon"] as? Double == 0, "\(privacy.stdout)")
        }
        let log = try Binary.run("sigilo-coordinator", ["audit", "export", "--state", world.dir.appendingPathComponent("coord").path])
        #expect(log.stdout.contains("mask stage ended with 2 of the 3 tenants asked, below the threshold of 3"), "\(log.stdout.suffix(2000))")
    }

    @Test func aRetryResendsTheChargedUpdateInsteadOfASecondRelease() throws {
        let world = try TenantWorld()
        defer { world.close() }
        let args = try world.tenant("loja")
        #expect(try Binary.run("sigilo-tenant", ["import", world.data.appendingPathComponent("tenant-01-loja.jsonl").path] + args).status == 0)
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
        world.proxy.dropsUpdates = true
        let lost = try waitForOpenRound(args)
        #expect(lost.status == 1, "\(lost.stdout) \(lost.stderr)") // charged, then the update was cut off on its way
        world.proxy.dropsUpdates = false
        let retry = try Binary.run("sigilo-tenant", ["round"] + args)
        #expect(retry.status == 0 && retry.stdout.hasPrefix("resent round 1's update as first sent"), "\(retry.stdout) \(retry.stderr)")
        let privacy = try Binary.run("sigilo-tenant", ["privacy", "--json"] + args)
        #expect(privacy.stdout.contains("\"rounds_joined\":1"), "\(privacy.stdout)") // charged once, sent once
        let next = try waitForOpenRound(args)
        #expect(next.stdout.hasPrefix("submitted round 2"), "\(next.stdout)")
    }

    @Test func erasureConsentAndLocalBudget() throws {
        let world = try TenantWorld(sampleRate: 1.0)
        defer { world.close() }
        let args = try world.tenant("clinica")
        let file = world.data.appendingPathComponent("tenant-02-clinica.jsonl")
        #expect(try Binary.run("sigilo-tenant", ["import", file.path] + args).status == 0)
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
        let records = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").compactMap(jsonObject)
        let consented = Set(records.filter { $0["consent"] as? Bool == true }.map { $0["customer"] as! String })
        let victim = consented.sorted()[0], paused = consented.sorted()[1]

        // Erase one customer, pause another's consent: with q = 1 the round samples everyone else.
        let forget = try Binary.run("sigilo-tenant", ["forget", victim] + args)
        #expect(forget.status == 0 && forget.stdout.contains("erased"))
        #expect(try Binary.run("sigilo-tenant", ["consent", "revoke", paused] + args).status == 0)
        let round = try waitForOpenRound(args)
        #expect(round.stdout.contains("\(consented.count - 2) customers sampled"), "\(round.stdout)")

        // Re-importing the erased customer is refused until consent is granted again.
        let again = try Binary.run("sigilo-tenant", ["import", file.path] + args)
        #expect(again.stdout.contains("refused (customer erased)") && !again.stdout.contains(" 0 refused"))
        #expect(try Binary.run("sigilo-tenant", ["consent", "grant", victim] + args).status == 0)
        let third = try Binary.run("sigilo-tenant", ["import", file.path] + args)
        #expect(third.stdout.contains(" 0 refused"))
        let privacy = try Binary.run("sigilo-tenant", ["privacy", "--json"] + args)
        let report = try #require(jsonObject(Substring(privacy.stdout)))
        #expect(report["rounds_joined"] as? Int == 1)
        #expect((report["erasures"] as? [[String: Any]])?.count == 1)

        // Once the plan is known, an intent outside its labels is an invalid line.
        let unknown = world.dir.appendingPathComponent("unknown.jsonl")
        try #"{"customer": "c9", "text": "quero um bolo", "intent": "encomendar_bolo", "consent": true}"#.write(to: unknown, atomically: true, encoding: .utf8)
        let refusedLine = try Binary.run("sigilo-tenant", ["import", unknown.path] + args)
        #expect(refusedLine.status == 65)
        #expect(refusedLine.stderr.contains(unknown.path + ":1: unknown intent \"encomendar_bolo\""))

        // A limit below what one more round costs: refused before anything is fetched.
        let before = world.proxy.bytes.count
        let refused = try Binary.run("sigilo-tenant", ["round", "--max-epsilon", "0.5"] + args)
        #expect(refused.status == 77, "\(refused.stdout) \(refused.stderr)")
        #expect(world.proxy.bytes.count == before)
    }

    @Test func aPersonalisedModelStaysSealedAtTheTenantAndGoesWithAnErasure() throws {
        let world = try TenantWorld()
        defer { world.close() }
        let args = try world.tenant("loja")
        let file = world.data.appendingPathComponent("tenant-01-loja.jsonl")
        #expect(try Binary.run("sigilo-tenant", ["import", file.path] + args).status == 0)
        let early = try Binary.run("sigilo-tenant", ["personalise"] + args)
        #expect(early.status == 66 && early.stderr.contains("no global model cached yet"), "\(early.stderr)")
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
        for _ in 0..<2 { #expect(try waitForOpenRound(args).status == 0) }
        let egress = world.proxy.bytes.count

        let personalised = try Binary.run("sigilo-tenant", ["personalise", "--json"] + args)
        #expect(personalised.status == 0, "\(personalised.stderr)")
        let report = try #require(jsonObject(Substring(personalised.stdout)))
        let messages = try #require(report["messages"] as? Int)
        #expect(messages > 100 && report["held_out"] as? Int == messages / 5 && report["folds"] as? Int == 5)
        #expect(try Binary.run("sigilo-tenant", ["personalise", "--folds", "6"] + args).status == 64)
        #expect([0, 0.1, 0.2, 0.25, 0.3, 0.5, 1].contains(try #require(report["shared_model_share"] as? Double))) // as written, not 0.2000000029
        #expect(try #require(report["held_out_accuracy"] as? Double) >= 0.9) // the shop's own synthetic intents
        #expect(world.proxy.bytes.count == egress) // nothing was fetched or sent to personalise
        // Kept sealed: what the store holds is no model file (it would start with the format's magic).
        let db = try Database(path: world.dir.appendingPathComponent("loja/tenant.sqlite").path)
        var sealed = [UInt8]()
        try db.run("SELECT sealed FROM personal_model") { sealed = $0.blob(0) }
        #expect(sealed.count > 16 * 1024 * 4 && !contains(sealed, Array("SGLMODEL".utf8)))

        let input = "cadê meu pedido? já faz 5 dias\nquero falar com um atendente\n"
        let mine = try Binary.run("sigilo-tenant", ["classify"] + args, input: input)
        #expect(mine.status == 0 && mine.stderr.contains("personalised model") && mine.stdout.split(separator: "\n").count == 2)
        let shared = try Binary.run("sigilo-tenant", ["classify", "--global"] + args, input: input)
        #expect(shared.status == 0 && shared.stderr.contains("global model version"))
        #expect(try Binary.run("sigilo-tenant", ["classify", "--global", "--model", "x.sgl"] + args).status == 64)
        // A newer global model arrives: it is named, the personalised model is kept until the tenant personalises again.
        #expect(try waitForOpenRound(args).status == 0)
        let status = try Binary.run("sigilo-tenant", ["status"] + args).stdout
        #expect(status.contains("personalised model from global version 2 (global version 3 is newer"), "\(status)")
        let privacy = try #require(jsonObject(Substring(try Binary.run("sigilo-tenant", ["privacy", "--json"] + args).stdout)))
        #expect((privacy["personalised_model"] as? [String: Any])?["global_version"] as? Int == 2)

        // Erasing a customer whose messages it learnt from deletes it; classify falls back to the global model.
        let consented = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").compactMap(jsonObject)
            .filter { $0["consent"] as? Bool == true }.map { $0["customer"] as! String }
        let erased = try Binary.run("sigilo-tenant", ["forget", consented[0]] + args)
        #expect(erased.stdout.contains("the personalised model learnt from this customer's messages and was deleted"), "\(erased.stdout)")
        #expect(try Binary.run("sigilo-tenant", ["classify"] + args, input: input).stderr.contains("global model version"))
        #expect(try Binary.run("sigilo-tenant", ["privacy", "--json"] + args).stdout.contains("\"personalised_model\":null"))
        // A withdrawn consent does the same.
        #expect(try Binary.run("sigilo-tenant", ["personalise"] + args).status == 0)
        let paused = try Binary.run("sigilo-tenant", ["consent", "revoke", try #require(consented.first { $0 != consented[0] })] + args)
        #expect(paused.stdout.contains("was deleted"), "\(paused.stdout)")
        #expect(try Binary.run("sigilo-tenant", ["status"] + args).stdout.contains("no personalised model"))
    }

    @Test func aTenantWhoseBudgetIsSpentStillGetsTheNewestModel() throws {
        let world = try TenantWorld(minimumTenants: 2)
        defer { world.close() }
        let shop = try world.tenant("loja"), clinic = try world.tenant("clinica")
        for (args, file) in [(shop, "tenant-01-loja.jsonl"), (clinic, "tenant-02-clinica.jsonl")] {
            #expect(try Binary.run("sigilo-tenant", ["import", world.data.appendingPathComponent(file).path] + args).status == 0)
            if args == shop { #expect(try Binary.run("sigilo-tenant", ["pull"] + args).status == 64) } // not enrolled
            #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
        }
        // The shop joins round 1 (on version 1), which then waits for the clinic.
        #expect(try waitForOpenRound(shop).status == 0)
        #expect(try Binary.run("sigilo-tenant", ["status"] + shop).stdout.contains("global model version 1"))

        // Its limit reached, run refuses at once, waits for the round it joined to close, pulls what it published and leaves.
        final class Box: @unchecked Sendable { var result: Binary.Result? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        Thread {
            box.result = try? Binary.run("sigilo-tenant", ["run", "--max-epsilon", "0.01", "--poll", "0.1"] + shop)
            done.signal()
        }.start()
        #expect(done.wait(timeout: .now() + 1) == .timedOut) // still waiting for the clinic
        #expect(try waitForOpenRound(clinic).status == 0)
        #expect(done.wait(timeout: .now() + 30) == .success)
        let run = try #require(box.result)
        #expect(run.status == 0, "\(run.stderr)")
        // Its log: timestamped lines, the refusal a warning.
        #expect(run.stderr.contains(" warning round.refused ") && run.stderr.contains(" info model.pull cached global model version 2 (had 1)"), "\(run.stdout) \(run.stderr)")

        let again = try Binary.run("sigilo-tenant", ["pull", "--json"] + shop)
        let report = try #require(jsonObject(Substring(again.stdout)))
        #expect(again.status == 0 && report["version"] as? Int == 2 && report["previous_version"] as? Int == 2, "\(again.stdout)")
        #expect(try Binary.run("sigilo-tenant", ["pull"] + shop).stdout.contains("global model version 2 is already the newest"))
        // Personalising starts from it.
        #expect(try Binary.run("sigilo-tenant", ["personalise", "--json"] + shop).stdout.contains("\"global_version\":2"))
    }

    @Test func aPlanWhoseDeltaIsTooLargeForTheTenantsCustomersIsRefused() throws {
        let world = try TenantWorld(delta: 0.05)
        defer { world.close() }
        let args = try world.tenant("loja")
        let file = world.data.appendingPathComponent("tenant-01-loja.jsonl")
        #expect(try Binary.run("sigilo-tenant", ["import", file.path] + args).status == 0)
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", world.url, "--token", try world.invite()] + args).status == 0)
        let consented = Set(try String(contentsOf: file, encoding: .utf8).split(separator: "\n").compactMap(jsonObject)
            .filter { $0["consent"] as? Bool == true }.map { $0["customer"] as! String })
        #expect(Double(consented.count) * 0.05 >= 1) // the synthetic shop has enough customers for 0.05 to be too much
        let refused = try waitForOpenRound(args)
        #expect(refused.status == 77 && refused.stderr.contains("delta 0.05 is not below 1/\(consented.count)"), "\(refused.stderr)")
        let privacy = try #require(jsonObject(Substring(try Binary.run("sigilo-tenant", ["privacy", "--json"] + args).stdout)))
        #expect(privacy["rounds_joined"] as? Int == 0)
    }

    @Test func badInputIsReportedPreciselyAndNothingIsHalfWritten() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = ["--state", dir.appendingPathComponent("t").path, "--key-file", dir.appendingPathComponent("t.key").path]
        _ = try Binary.run("sigilo-tenant", ["init"] + args)
        let file = dir.appendingPathComponent("export.jsonl")
        let long = String(repeating: "a", count: 70_000)
        try """
        {"customer": "c1", "text": "oi tudo bem", "intent": "saudacao", "consent": true, "id": "m1"}
        not json
        {"customer": 7, "text": "x", "intent": "saudacao", "consent": true}
        {"customer": "c2", "text": "  ", "intent": "saudacao", "consent": true}
        {"customer": "c2", "text": "ok", "intent": "saudacao", "consent": 1}
        {"customer": "c2", "text": "\(long)", "intent": "saudacao", "consent": true}
        {"customer": "c3", "text": "quero cancelar", "intent": "cancelar", "consent": false}
        {"customer": "c1", "text": "oi tudo bem", "intent": "saudacao", "consent": true, "id": "m1"}
        """.write(to: file, atomically: true, encoding: .utf8)
        let strict = try Binary.run("sigilo-tenant", ["import", file.path, "--strict"] + args)
        #expect(strict.status == 65)
        for expected in [":2: not valid JSON", ":3: \"customer\" must be a string", ":4: \"text\" is empty", ":5: \"consent\" must be true or false", ":6: line is"] {
            #expect(strict.stderr.contains(file.path + expected), "missing \(expected) in \(strict.stderr)")
        }
        let status = try Binary.run("sigilo-tenant", ["privacy", "--json"] + args)
        #expect(jsonObject(Substring(status.stdout))?["messages"] as? Int == 0) // --strict: nothing imported
        let lenient = try Binary.run("sigilo-tenant", ["import", file.path] + args)
        #expect(lenient.status == 65)
        #expect(lenient.stdout.contains("imported 1 messages from 1 customers; 1 duplicates skipped; 1 skipped without consent"))

        // Keys, permissions, corruption and an unreachable coordinator.
        try "00".write(to: dir.appendingPathComponent("bad.key"), atomically: true, encoding: .utf8)
        let wrongLength = try Binary.run("sigilo-tenant", ["status", "--state", args[1], "--key-file", dir.appendingPathComponent("bad.key").path])
        #expect(wrongLength.status == 64)
        try String(repeating: "ab", count: 32).write(to: dir.appendingPathComponent("other.key"), atomically: true, encoding: .utf8)
        let wrongKey = try Binary.run("sigilo-tenant", ["status", "--state", args[1], "--key-file", dir.appendingPathComponent("other.key").path])
        #expect(wrongKey.status == 77 && wrongKey.stderr.contains("wrong encryption key"))
        #expect(try Binary.run("sigilo-tenant", ["status", "--state", args[1]]).status == 64) // no key given
        let unreachable = try Binary.run("sigilo-tenant", ["enroll", "--coordinator", "http://127.0.0.1:9", "--token", "x"] + args)
        #expect(unreachable.status != 0 && unreachable.stderr.contains("127.0.0.1:9"))
        chmod(args[1], 0o755)
        let unsafe = try Binary.run("sigilo-tenant", ["status"] + args)
        #expect(unsafe.status == 77 && unsafe.stderr.contains("chmod 700"))
        chmod(args[1], 0o700)
        let database = URL(fileURLWithPath: args[1]).appendingPathComponent("tenant.sqlite")
        try Data(repeating: 0x41, count: 4096).write(to: database)
        let corrupted = try Binary.run("sigilo-tenant", ["status"] + args)
        #expect(corrupted.status == 65, "\(corrupted.stderr)")
    }
}

func find(_ haystack: [UInt8], _ needle: [UInt8], from start: Int) -> Int? {
    guard haystack.count >= needle.count else { return nil }
    var i = start
    while i <= haystack.count - needle.count {
        if haystack[i] == needle[0], Array(haystack[i..<(i + needle.count)]) == needle { return i }
        i += 1
    }
    return nil
}

func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool { find(haystack, needle, from: 0) != nil }

import SigiloCrypto
import SigiloHTTP

@Suite(.serialized) struct MisbehavingCoordinatorTests {
    /// A fake coordinator: enrols anyone, then answers rounds with a broken plan or a model that fails its digest.
    final class Fake: @unchecked Sendable {
        var mode = "bad-plan"
        let key = try! Ed25519.KeyPair.generate()
        let model = Array("SGLMODEL not really a model".utf8)
        func handle(_ request: HTTPRequest) -> HTTPResponse {
            switch request.path {
            case "/v1/enroll": return .json(201, "{\"tenant_id\":\"tenant-1\",\"coordinator_public_key\":\"\(Hex.encode(key.publicKey))\"}")
            case "/v1/rounds/current": return .json(200, #"{"round":1,"model_version":1,"dimension":10,"submitted":false}"#)
            case "/v1/plan" where mode == "bad-plan": return .json(200, #"{"labels": "not a list"}"#)
            case "/v1/plan":
                return .json(200, #"{"labels":["a","b"],"bucketBits":8,"clipNorm":1,"noiseMultiplier":1,"sampleRate":0.5,"delta":1e-5,"maximumEpsilon":50,"placement":"tenant","minimumTenants":1,"roundSeconds":60,"serverOptimizer":{"kind":"fedavg","learningRate":1,"momentum":0.9,"beta2":0.99,"epsilon":0.001}}"#)
            default:
                let digest = Hex.encode(SHA256.hash(model))
                if mode == "bad-digest" { return HTTPResponse(status: 200, headers: [("Sigilo-Model-SHA256", String(repeating: "0", count: 64))], body: model) }
                // A correct digest, signed by a key the tenant did not pin.
                let forged = try! Ed25519.KeyPair.generate().sign(ModelProvenance.message(version: 1, sha256: digest))
                return HTTPResponse(status: 200, headers: [("Sigilo-Model-SHA256", digest), ("Sigilo-Model-Signature", Hex.encode(forged))], body: model)
            }
        }
    }

    @Test func preciseErrorsAndNothingCharged() throws {
        let fake = Fake()
        let server = HTTPServer(configuration: .init()) { request, _ in fake.handle(request) }
        let port = try server.start()
        defer { server.shutdown() }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let args = ["--state", dir.appendingPathComponent("t").path, "--key-file", dir.appendingPathComponent("t.key").path]
        _ = try Binary.run("sigilo-tenant", ["init", "--max-epsilon", "50"] + args)
        #expect(try Binary.run("sigilo-tenant", ["enroll", "--coordinator", "http://127.0.0.1:\(port)", "--token", "x"] + args).status == 0)
        let badPlan = try Binary.run("sigilo-tenant", ["round"] + args)
        #expect(badPlan.status == 1 && badPlan.stderr.contains("bad_plan") && badPlan.stderr.contains("labels"), "\(badPlan.stderr)")
        fake.mode = "bad-digest"
        let badModel = try Binary.run("sigilo-tenant", ["round"] + args)
        #expect(badModel.status == 1 && badModel.stderr.contains("model_digest_mismatch"), "\(badModel.stderr)")
        fake.mode = "forged"
        let forged = try Binary.run("sigilo-tenant", ["round"] + args)
        #expect(forged.status == 1 && forged.stderr.contains("model_signature_invalid"), "\(forged.stderr)")
        let privacy = try Binary.run("sigilo-tenant", ["privacy", "--json"] + args)
        #expect(jsonObject(Substring(privacy.stdout))?["rounds_joined"] as? Int == 0) // nothing was sent, nothing charged
    }
}
