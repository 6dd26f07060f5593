import Foundation
import Testing
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloPrivacy
import SigiloProtocol

/// A coordinator process on loopback, stopped with SIGTERM at the end.
final class RunningCoordinator {
    let process = Process()
    let port: UInt16
    let output = Pipe()

    convenience init(state: URL, arguments: [String] = ["--listen", "127.0.0.1:0"], log: URL? = nil) throws {
        try self.init(program: "sigilo-coordinator", arguments: ["serve", "--state", state.path] + arguments, log: log)
    }

    /// Any of the programs' `serve` commands: started, and its port read from "listening on HOST:PORT".
    init(program: String, arguments: [String], log: URL? = nil) throws {
        process.executableURL = Binary.directory.appendingPathComponent(program)
        process.arguments = arguments
        process.standardOutput = output
        if let log {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.standardError = try FileHandle(forWritingTo: log)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        try process.run()
        var line = Data()
        while !line.contains(0x0a) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        // "listening on 127.0.0.1:PORT[ (TLS)]"
        let text = String(decoding: line, as: UTF8.self)
        let address = text.components(separatedBy: "listening on ").last?.split(separator: " ").first?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let portText = address?.split(separator: ":").last, let port = UInt16(portText) else {
            throw ClientError(status: nil, code: "no_port", message: "\(program) printed \(text)")
        }
        self.port = port
    }

    var url: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// SIGTERM, then the exit status.
    func stop() -> Int32 {
        process.terminate()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// A coordinator state in `dir` with a FedAvg (learning rate 1) plan at tenant
/// placement over labels a and b, and `tenants` enrolment tokens.
func coordinatorState(in dir: URL, tenants: Int, bucketBits: Int = 8) throws -> (state: URL, tokens: [String]) {
    let state = dir.appendingPathComponent("state")
    _ = try Binary.run("sigilo-coordinator", ["init", "--state", state.path])
    let plan = Plan(labels: ["a", "b"], bucketBits: bucketBits, sampleRate: 0.5, delta: 1e-5, maximumEpsilon: 50, placement: .tenant,
                    minimumTenants: tenants, roundSeconds: 600, serverOptimizer: .init(kind: .fedavg, learningRate: 1))
    try JSONEncoder().encode(plan).write(to: dir.appendingPathComponent("plan.json"))
    _ = try Binary.run("sigilo-coordinator", ["plan", "set", dir.appendingPathComponent("plan.json").path, "--state", state.path])
    let tokens = try (0..<tenants).map {
        try Binary.run("sigilo-coordinator", ["tenant", "invite", "t\($0)", "--state", state.path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    return (state, tokens)
}

/// The weights and biases of a model file (models/FORMAT.md: float32 values before the 32-byte checksum).
func parameters(ofModel file: [UInt8], dimension: Int) -> [Float] {
    let bytes = file[(file.count - 32 - 4 * dimension)..<(file.count - 32)]
    return (0..<dimension).map { i in
        Float(bitPattern: (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[bytes.startIndex + 4 * i + $1]) << (8 * $1) })
    }
}

@Suite(.serialized) struct CoordinatorEndToEndTests {
    static let labels = ["cancelar", "saudacao", "segunda_via"]

    func update(round: UInt64, model: UInt64, dimension: Int, seed: Int) -> UpdateEnvelope {
        let values = (0..<dimension).map { Float(sin(Double($0 * 7 + seed))) * 0.01 }
        return UpdateEnvelope(round: round, modelVersion: model, flags: .tenantNoised, weight: 5, values: values)
    }

    func waitForRound(_ client: CoordinatorClient, after previous: UInt64 = 0, timeout: Double = 10) throws -> CoordinatorClient.RoundInfo? {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if let round = try client.currentRound(), round.round > previous { return round }
            usleep(100_000)
        }
        return nil
    }

    @Test func threeTenantsRoundsBudgetRevocationAndBadInput() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("state")
        let secretsFile = dir.appendingPathComponent("admin.json")
        #expect(try Binary.run("sigilo-coordinator", ["init", "--state", state.path, "--secrets-to", secretsFile.path]).status == 0)

        // A budget that admits exactly three rounds of the charged (effective) noise.
        var plan = Plan(labels: Self.labels, bucketBits: 8, clipNorm: 1, noiseMultiplier: 1, sampleRate: 0.5, delta: 1e-5,
                        maximumEpsilon: 1, placement: .tenant, minimumTenants: 3, roundSeconds: 60, serverOptimizer: .init(kind: .fedavg))
        let charged = try GaussianNoise(clipNorm: 1, noiseMultiplier: 1, dimension: plan.dimension).effectiveNoiseMultiplier
        let round = try SubsampledGaussian(sampleRate: 0.5, noiseMultiplier: charged)
        let threeRounds = try PLDAccountant.epsilon(round, steps: 3, delta: 1e-5)
        let fourRounds = try PLDAccountant.epsilon(round, steps: 4, delta: 1e-5)
        plan.maximumEpsilon = (threeRounds + fourRounds) / 2
        let planFile = dir.appendingPathComponent("plan.json")
        try JSONEncoder().encode(plan).write(to: planFile)
        let set = try Binary.run("sigilo-coordinator", ["plan", "set", planFile.path, "--state", state.path])
        #expect(set.status == 0, "\(set.stderr)")
        let tokens = try (0..<3).map { i in
            try Binary.run("sigilo-coordinator", ["tenant", "invite", "loja-\(i)", "--state", state.path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(tokens.allSatisfy { $0.hasPrefix("sgt_") })

        let server = try RunningCoordinator(state: state)
        var stopped = false
        defer { if !stopped { _ = server.stop() } }
        let clients = try (0..<3).map { _ in CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate()) }
        for (client, token) in zip(clients, tokens) { try client.enroll(token: token) }
        #expect(Set(clients.map(\.keyId)) == ["tenant-1", "tenant-2", "tenant-3"])
        // A token works once.
        let late = CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate())
        #expect(throws: ClientError.self) { try late.enroll(token: tokens[0]) }
        #expect(try clients[0].plan() == plan)

        // Three rounds: the model version advances with each.
        var previous: UInt64 = 0
        for expectedRound in 1...3 {
            let info = try #require(try waitForRound(clients[0], after: previous))
            #expect(info.round == UInt64(expectedRound))
            #expect(info.modelVersion == UInt64(expectedRound))
            let model = try clients[0].model(version: info.modelVersion)
            #expect(model.starts(with: Array("SGLMODEL".utf8)))
            for (i, client) in clients.enumerated() {
                let u = update(round: info.round, model: info.modelVersion, dimension: info.dimension, seed: i)
                #expect(try client.submit(u) == false)
                if i == 0 { #expect(try client.submit(u) == true) } // a retry is acknowledged, not counted twice
            }
            previous = info.round
        }
        // The fourth round would exceed the budget: it never opens.
        #expect(try waitForRound(clients[0], after: 3, timeout: 1.5) == nil)
        let status = try Binary.run("sigilo-coordinator", ["status", "--state", state.path, "--json"])
        let json = try #require(jsonObject(Substring(status.stdout)))
        #expect(json["rounds_closed"] as? Int == 3)
        #expect(json["model_version"] as? Int == 4)
        let epsilon = try #require(json["epsilon"] as? Double)
        #expect(abs(epsilon - threeRounds) < 1e-9, "ledger says \(epsilon), accountant \(threeRounds)")

        // The CLI refuses to revoke under a running server (whose open round the revocation may end in the
        // CLI's process only); the admin API does it, and it takes effect on the next request.
        let refused = try Binary.run("sigilo-coordinator", ["tenant", "revoke", "tenant-3", "--state", state.path])
        #expect(refused.status == 77 && refused.stderr.contains("/v1/admin/tenants/tenant-3/revoke"), "\(refused.stderr)")
        let secrets = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: secretsFile)) as? [String: String])
        let totpText = try #require(secrets["totp_secret"]), credential = try #require(secrets["admin_credential"])
        let totp = TOTP(secret: try #require(Base32.decode(totpText)))
        let revoked = http("POST", server.url.appendingPathComponent("v1/admin/tenants/tenant-3/revoke"),
                           headers: [("Authorization", "Bearer \(credential)"), ("Sigilo-TOTP", totp.code(step: TOTP.step(at: Date().timeIntervalSince1970)))])
        #expect(revoked.status == 200)
        do { _ = try clients[2].plan(); Issue.record("a revoked tenant was served") } catch let e as ClientError {
            #expect(e.status == 403 && e.code == "revoked")
        }

        #expect(server.stop() == 0) // SIGTERM: graceful, exit 0
        stopped = true
    }

    @Test func badInputGetsPrecise4xxAndChangesNothing() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let state = dir.appendingPathComponent("state")
        _ = try Binary.run("sigilo-coordinator", ["init", "--state", state.path])
        let plan = Plan(labels: Self.labels, bucketBits: 8, sampleRate: 0.5, delta: 1e-5, maximumEpsilon: 50, minimumTenants: 2, roundSeconds: 60)
        try JSONEncoder().encode(plan).write(to: dir.appendingPathComponent("plan.json"))
        _ = try Binary.run("sigilo-coordinator", ["plan", "set", dir.appendingPathComponent("plan.json").path, "--state", state.path])
        let tokens = try (0..<2).map { try Binary.run("sigilo-coordinator", ["tenant", "invite", "t\($0)", "--state", state.path]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) }
        let server = try RunningCoordinator(state: state)
        defer { _ = server.stop() }
        let a = CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate())
        let b = CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate())
        try a.enroll(token: tokens[0]); try b.enroll(token: tokens[1])
        let info = try #require(try waitForRound(a))
        let good = update(round: info.round, model: info.modelVersion, dimension: info.dimension, seed: 1)

        func refusal(_ body: () throws -> Void) -> (Int?, String)? {
            do { try body(); return nil } catch let e as ClientError { return (e.status, e.code) } catch { return (nil, "\(error)") }
        }
        var wrongRound = good; wrongRound.round += 1
        #expect(refusal { _ = try a.submit(wrongRound) }.map { $0.1 } == "wrong_round")
        var wrongModel = good; wrongModel.modelVersion += 1
        #expect(refusal { _ = try a.submit(wrongModel) }.map { $0.1 } == "wrong_model_version")
        var wrongDimension = good; wrongDimension.values.removeLast()
        #expect(refusal { _ = try a.submit(wrongDimension) }.map { $0.1 } == "wrong_dimension")
        var huge = good; huge.values = huge.values.map { _ in 100 }
        #expect(refusal { _ = try a.submit(huge) }.map { $0.1 } == "norm_bound_exceeded")
        var nonFinite = good; nonFinite.values[3] = .nan
        #expect(refusal { _ = try a.submit(nonFinite) }.map { $0.1 } == "non_finite_value")
        var centralFlag = good; centralFlag.flags = []
        #expect(refusal { _ = try a.submit(centralFlag) }.map { $0.1 } == "wrong_placement")
        var truncated = good.encoded(); truncated.removeLast(3)
        #expect(refusal { _ = try a.send("POST", "/v1/rounds/\(info.round)/updates", body: truncated) }.map { $0.1 } == "malformed_update")

        // Signatures: a stale clock, a forged key, a replayed request.
        let stale = CoordinatorClient(baseURL: server.url, keyId: a.keyId, key: a.keyForTests, clock: { Int64(Date().timeIntervalSince1970) - 3600 })
        #expect(refusal { _ = try stale.plan() }.map { $0.1 } == "stale_timestamp")
        let forger = CoordinatorClient(baseURL: server.url, keyId: a.keyId, key: try Ed25519.KeyPair.generate())
        #expect(refusal { _ = try forger.plan() }.map { $0.1 } == "bad_signature")
        let headers = try RequestSigning.sign(method: "GET", path: "/v1/plan", body: [], keyId: a.keyId, key: a.keyForTests,
                                              timestamp: Int64(Date().timeIntervalSince1970), nonce: Array(repeating: 9, count: 16))
        #expect(http("GET", server.url.appendingPathComponent("v1/plan"), headers: headers).status == 200)
        #expect(http("GET", server.url.appendingPathComponent("v1/plan"), headers: headers).status == 401) // the same nonce again

        // None of that changed the round: both tenants can still submit and it closes once.
        #expect(try a.submit(good) == false)
        #expect(try b.submit(update(round: info.round, model: info.modelVersion, dimension: info.dimension, seed: 2)) == false)
        let next = try #require(try waitForRound(a, after: info.round))
        #expect(next.modelVersion == info.modelVersion + 1)
    }
}

@Suite(.serialized) struct CoordinatorCrashTests {
    @Test func sigkillLosesNoAcknowledgedUpdateAndRetriesAreNotCountedTwice() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, tokens) = try coordinatorState(in: dir, tenants: 3)

        var server = try RunningCoordinator(state: state)
        let keys = try (0..<3).map { _ in try Ed25519.KeyPair.generate() }
        var clients = zip(keys, tokens).map { CoordinatorClient(baseURL: server.url, keyId: "enroll", key: $0.0) }
        for (client, token) in zip(clients, tokens) { try client.enroll(token: token) }
        var info: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where info == nil { info = try clients[0].currentRound(); usleep(100_000) }
        let round = try #require(info)
        func values(_ seed: Int) -> [Float] {
            (0..<round.dimension).map { (j: Int) -> Float in Float((j * 31 + seed * 17) % 13 - 6) * 0.001 }
        }
        let updates = (0..<3).map { (i: Int) -> UpdateEnvelope in
            UpdateEnvelope(round: round.round, modelVersion: round.modelVersion, flags: .tenantNoised, weight: 5, values: values(i))
        }
        // Two acknowledged updates, then the process is killed without warning.
        #expect(try clients[0].submit(updates[0]) == false)
        #expect(try clients[1].submit(updates[1]) == false)
        kill(server.process.processIdentifier, SIGKILL)
        server.process.waitUntilExit()

        // Restart on the same state: the round is still open with exactly those two.
        server = try RunningCoordinator(state: state)
        defer { _ = server.stop() }
        let ids = clients.map(\.keyId), pinned = clients[0].coordinatorKey
        clients = zip(keys, ids).map { CoordinatorClient(baseURL: server.url, keyId: $0.1, key: $0.0) }
        for client in clients { client.coordinatorKey = pinned }
        let restored = try #require(try clients[1].currentRound())
        #expect(restored.round == round.round && restored.submitted)
        #expect(try clients[1].submit(updates[1]) == true) // a retry after the crash: acknowledged, not counted
        #expect(try clients[2].submit(updates[2]) == false)

        // The published model is exactly model + (sum of the three) / expected customers (15).
        var next: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where next == nil { next = try clients[0].currentRound(); usleep(100_000) }
        let published = parameters(ofModel: try clients[0].model(version: round.modelVersion + 1), dimension: round.dimension)
        for i in stride(from: 0, to: round.dimension, by: 97) {
            let got = published[i]
            let expected = (updates[0].values[i] + updates[1].values[i] + updates[2].values[i]) / 15
            #expect(abs(got - expected) < 1e-7, "parameter \(i): \(got) vs \(expected)")
        }
    }

    /// Group commit under fire: 24 of 25 tenants submit at once (the 25th
    /// holds the round open until after the restart) and the coordinator
    /// is killed once 8 have been acknowledged, with the rest in flight (folded,
    /// queued for a batch, or still uploading). After a restart every
    /// acknowledged update is in the sum exactly once (its resend is a
    /// duplicate), each unacknowledged one is either in (committed, its answer
    /// lost: the resend is a duplicate) or not (the resend counts), and the
    /// published model is exactly the sum of the 24.
    @Test func sigkillDuringBatchedCommitsKeepsExactlyTheCommittedUpdates() throws {
        let count = 25, racing = 24
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (state, tokens) = try coordinatorState(in: dir, tenants: count, bucketBits: 12)

        var server = try RunningCoordinator(state: state)
        let keys = try (0..<count).map { _ in try Ed25519.KeyPair.generate() }
        var clients = zip(keys, tokens).map { CoordinatorClient(baseURL: server.url, keyId: "enroll", key: $0.0, timeout: 10) }
        for (client, token) in zip(clients, tokens) { try client.enroll(token: token) }
        var info: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where info == nil { info = try clients[0].currentRound(); usleep(100_000) }
        let round = try #require(info)
        let updates = (0..<count).map { (i: Int) -> UpdateEnvelope in
            let values = (0..<round.dimension).map { (j: Int) -> Float in Float((j * 31 + i * 17) % 13 - 6) * 0.001 }
            return UpdateEnvelope(round: round.round, modelVersion: round.modelVersion, flags: .tenantNoised, weight: 5, values: values)
        }

        final class Outcomes: @unchecked Sendable {
            let lock = NSLock()
            var acknowledged = Set<Int>()
            var finished = 0
        }
        let outcomes = Outcomes()
        let pid = server.process.processIdentifier
        for i in 0..<racing {
            let client = clients[i], update = updates[i]
            Thread {
                let acked = (try? client.submit(update)) != nil
                let kill: Bool = outcomes.lock.withLock {
                    if acked { outcomes.acknowledged.insert(i) }
                    outcomes.finished += 1
                    return acked && outcomes.acknowledged.count == 8
                }
                if kill { _ = Foundation.kill(pid, SIGKILL) }
            }.start()
        }
        let deadline = Date().addingTimeInterval(60)
        while outcomes.lock.withLock({ outcomes.finished }) < racing, Date() < deadline { usleep(10_000) }
        server.process.waitUntilExit()
        let acknowledged = outcomes.lock.withLock { outcomes.acknowledged }
        #expect(acknowledged.count >= 8, "killed with \(acknowledged.count) acknowledged")

        server = try RunningCoordinator(state: state)
        defer { _ = server.stop() }
        let ids = clients.map(\.keyId), pinned = clients[0].coordinatorKey
        clients = zip(keys, ids).map { CoordinatorClient(baseURL: server.url, keyId: $0.1, key: $0.0) }
        for client in clients { client.coordinatorKey = pinned }
        for i in 0..<count {
            let duplicate = try clients[i].submit(updates[i])
            if acknowledged.contains(i) { #expect(duplicate, "acknowledged update \(i) was lost") }
        }
        var next: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where next == nil { next = try clients[0].currentRound(); usleep(100_000) }
        let published = parameters(ofModel: try clients[0].model(version: round.modelVersion + 1), dimension: round.dimension)
        for j in stride(from: 0, to: round.dimension, by: 61) {
            let expected = updates.reduce(Float(0)) { $0 + $1.values[j] } / Float(5 * count)
            #expect(abs(published[j] - expected) < 1e-6, "parameter \(j)")
        }
    }
}
