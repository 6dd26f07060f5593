import Foundation
import SigiloCLI
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloModel
import SigiloPrivacy
import SigiloProtocol
import SigiloText

extension TenantTool {
    /// `--encoder`, for the commands that run a model reading encoder features.
    static let encoderOption = OptionSpec.value("encoder", "PATH",
        "For a model that reads encoder features: the encoder file (default: the shipped one; its digest must be the model's).")

    static let storeOptions: [OptionSpec] = [
        .value("state", "DIR", "Tenant state directory (created by init)."),
        .value("key-file", "FILE", "File holding the store's 32-byte key as 64 hex digits (or set SIGILO_TENANT_KEY)."),
    ]

    /// The operator's store key, from --key-file or SIGILO_TENANT_KEY (never from the state directory).
    static func storeKey(_ args: ParsedArguments) throws -> [UInt8] {
        let text: String
        if let path = args.string("key-file") {
            guard let contents = try? String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8) else {
                throw CLIError(.noInput, "cannot read key file \(path)")
            }
            text = contents
        } else if let env = ProcessInfo.processInfo.environment["SIGILO_TENANT_KEY"] {
            text = env
        } else {
            throw CLIError.usage("\(args.command): give --key-file FILE or set SIGILO_TENANT_KEY (the store's encryption key)")
        }
        guard let key = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)), key.count == 32 else {
            throw CLIError(.usage, "the store key must be 64 hex digits (32 bytes)")
        }
        return key
    }

    static func openStore(_ args: ParsedArguments) throws -> TenantStore {
        let path = try args.required("state")
        return try TenantStore(directory: URL(fileURLWithPath: path), key: try storeKey(args))
    }

    static func cachedPlan(_ store: TenantStore) throws -> Plan? {
        guard let json = try store.setting("plan") else { return nil }
        return try? Plan.decode(Data(json.utf8))
    }

    static func client(_ store: TenantStore, key: Ed25519.KeyPair? = nil) throws -> CoordinatorClient {
        guard let url = try store.setting("coordinator").flatMap(URL.init(string:)), let id = try store.setting("tenant_id") else {
            throw CLIError(.usage, "not enrolled: run 'sigilo-tenant enroll --coordinator URL --token T' first")
        }
        let client = CoordinatorClient(baseURL: url, keyId: id, key: try key ?? store.identity(), caFile: try store.setting("coordinator_ca"))
        client.coordinatorKey = try store.setting("coordinator_key").flatMap(Hex.decode)
        return client
    }

    // MARK: key rotation

    static let rotateKeySpec = CommandSpec(
        name: "rotate-key", summary: "Replace this tenant's identity key at the coordinator, signed by the old key.",
        usage: "sigilo-tenant rotate-key --state DIR --key-file FILE",
        options: storeOptions,
        discussion: """
        The new key is written beside the old one first (identity.key.next), then offered to the coordinator in a request signed by the
        old key and carrying the new key's own signature; once accepted it replaces identity.key. If the answer is lost, running the
        command again finds out which key the coordinator holds and finishes. Exit codes: 0 rotated, 75 coordinator unreachable (run again),
        77 refused by the coordinator.
        """)

    static func runRotateKey(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let store = try openStore(args)
        let newKey: Ed25519.KeyPair
        if let staged = try store.pendingIdentity() {
            // An earlier attempt may have landed: if the coordinator already knows the staged key, finish.
            if (try? client(store, key: staged).plan()) != nil {
                try store.promotePendingIdentity()
                OutputStream.standardOutput.write("finished an interrupted rotation: the coordinator holds the new key\n")
                return
            }
            newKey = staged
        } else {
            newKey = try Ed25519.KeyPair.generate()
            try store.stagePendingIdentity(newKey)
        }
        do { try client(store).rotateKey(to: newKey) } catch let e as ClientError {
            throw CLIError(e.status == nil ? .tempFail : .refused, "rotate-key: \(e)")
        }
        try store.promotePendingIdentity()
        OutputStream.standardOutput.write("rotated the identity key: the coordinator now holds \(Hex.encode(SHA256.hash(newKey.publicKey)).prefix(16))\n")
    }

    // MARK: init

    static let initSpec = CommandSpec(
        name: "init", summary: "Create the tenant state directory: identity key pair, encrypted store, local ledger.",
        usage: "sigilo-tenant init --state DIR --key-file FILE [--max-epsilon E]",
        options: storeOptions + [.value("max-epsilon", "E", "This tenant's own privacy limit for its customers (default 8).")],
        discussion: "If the key file does not exist, a new random key is written to it (mode 0600). Keep it outside the state directory.")

    static func runInit(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let path = try args.required("state")
        let maxEpsilon = try args.double("max-epsilon", where: { $0 > 0 }, expectation: "a number > 0") ?? 8
        if let keyPath = args.string("key-file"), !FileManager.default.fileExists(atPath: keyPath) {
            let rng = SecureRandom()
            let key = (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            guard FileManager.default.createFile(atPath: keyPath, contents: Data(Hex.encode(key).utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CLIError(.ioError, "cannot write key file \(keyPath)")
            }
            printError("wrote a new store key to \(keyPath) (mode 0600): back it up; without it the store cannot be read")
        }
        try TenantStore.create(directory: URL(fileURLWithPath: path), key: try storeKey(args), maximumEpsilon: maxEpsilon)
        OutputStream.standardOutput.write("initialised tenant state in \(path)\n")
    }

    // MARK: consent and erasure

    static let consentSpec = CommandSpec(
        name: "consent", summary: "Record a customer's consent (grant) or its withdrawal (revoke, which deletes the customer's messages).",
        usage: "sigilo-tenant consent grant|revoke CUSTOMER --state DIR --key-file FILE", options: storeOptions,
        discussion: "A customer the store has never seen is recorded with a warning on standard error (a typo?).")

    static func runConsent(_ args: ParsedArguments) throws {
        guard args.positional.count == 2, ["grant", "revoke"].contains(args.positional[0]) else {
            throw CLIError.usage("consent: expected 'grant CUSTOMER' or 'revoke CUSTOMER'")
        }
        let store = try openStore(args)
        let granted = args.positional[0] == "grant"
        let change = try store.setConsent(customer: args.positional[1], granted: granted, now: Date().timeIntervalSince1970)
        if change.newCustomer {
            printError("warning: this store had never seen customer \"\(args.positional[1])\"; recorded anyway (check the id for a typo)")
        }
        OutputStream.standardOutput.write("consent \(granted ? "granted" : "revoked") for the customer\n"
                                          + (granted ? "" : "deleted \(change.messagesDeleted) of the customer's messages\n")
                                          + (change.personalModelDeleted ? PersonaliseCommand.deletedNote : ""))
    }

    static let forgetSpec = CommandSpec(
        name: "forget", summary: "Erase every message of a customer; later imports are refused until consent is granted again.",
        usage: "sigilo-tenant forget CUSTOMER --state DIR --key-file FILE", options: storeOptions,
        discussion: "A receipt (time, number of messages) is kept and shown by 'privacy'. Past rounds stay covered by the DP bound.")

    static func runForget(_ args: ParsedArguments) throws {
        guard args.positional.count == 1 else { throw CLIError.usage("forget: give exactly one CUSTOMER") }
        let erased = try openStore(args).forget(customer: args.positional[0], now: Date().timeIntervalSince1970)
        if !erased.knownCustomer {
            printError("warning: this store had never seen customer \"\(args.positional[0])\"; a tombstone is recorded so later imports are refused (check the id for a typo)")
        }
        OutputStream.standardOutput.write("erased \(erased.messages) messages; the customer is excluded from every later round\n"
                                          + (erased.personalModelDeleted ? PersonaliseCommand.deletedNote : ""))
    }

    // MARK: enrolment

    static let enrollSpec = CommandSpec(
        name: "enroll", summary: "Enrol this tenant's key with a coordinator using a one-time token.",
        usage: "sigilo-tenant enroll --coordinator URL (--token-file FILE | --token T) --state DIR --key-file FILE [--coordinator-ca PEM]",
        options: storeOptions + [.value("coordinator", "URL", "Coordinator base URL, e.g. http://127.0.0.1:8443."),
                                 .value("token-file", "FILE", "Read the one-time enrolment token from FILE ('-' for standard input)."),
                                 .value("token", "T", "The token on the command line: visible to other users in 'ps' until it is used; prefer --token-file."),
                                 .value("coordinator-ca", "PEM", "For https: trust only this CA (or self-signed certificate), not the system's CAs; remembered.")])

    /// The token from --token-file (a file, or '-' for standard input) or --token; exactly one of them.
    static func enrolmentToken(_ args: ParsedArguments) throws -> String {
        switch (args.string("token-file"), args.string("token")) {
        case (let path?, nil):
            let data: Data?
            if path == "-" { data = try? FileHandle.standardInput.readToEnd() } else { data = FileManager.default.contents(atPath: path) }
            guard let data else { throw CLIError(.noInput, "enroll: cannot read --token-file \(path)") }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty, !token.contains(where: \.isWhitespace) else {
                throw CLIError(.dataError, "enroll: \(path == "-" ? "standard input" : path) must hold one token, the line 'sigilo-coordinator tenant invite' printed")
            }
            return token
        case (nil, let token?):
            return token
        case (nil, nil):
            throw CLIError.usage("enroll: give the token with --token-file FILE (or - for standard input)")
        case (_?, _?):
            throw CLIError.usage("enroll: give --token-file or --token, not both")
        }
    }

    static func runEnroll(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let store = try openStore(args)
        guard let url = URL(string: try args.required("coordinator")), url.scheme == "http" || url.scheme == "https" else {
            throw CLIError.usage("enroll: --coordinator must be an http(s) URL")
        }
        var caFile: String?
        if let path = args.string("coordinator-ca") {
            guard url.scheme == "https" else { throw CLIError.usage("enroll: --coordinator-ca needs an https coordinator URL") }
            guard FileManager.default.isReadableFile(atPath: path) else { throw CLIError(.noInput, "enroll: cannot read --coordinator-ca \(path)") }
            caFile = URL(fileURLWithPath: path).standardizedFileURL.path
        }
        let client = CoordinatorClient(baseURL: url, keyId: "enroll", key: try store.identity(), caFile: caFile)
        let id: String
        do { id = try client.enroll(token: try enrolmentToken(args)) } catch let e as ClientError {
            throw CLIError(e.status == nil ? .failure : .refused, "enrolment failed: \(e)")
        }
        try store.setSetting("coordinator", url.absoluteString)
        if let caFile { try store.setSetting("coordinator_ca", caFile) }
        try store.setSetting("tenant_id", id)
        try store.setSetting("coordinator_key", Hex.encode(client.coordinatorKey!))
        OutputStream.standardOutput.write("enrolled as \(id) at \(url.absoluteString)\n")
    }

    // MARK: rounds

    static let roundSpec = CommandSpec(
        name: "round", summary: "Take part once in the coordinator's open round with a differentially private update.",
        usage: "sigilo-tenant round --state DIR --key-file FILE [--max-epsilon E]",
        options: storeOptions + [.value("max-epsilon", "E", "Refuse rounds that would take this tenant's customers past E (never above the init limit).")],
        discussion: """
        Refuses (77) a round that would take this tenant's customers past its epsilon limit, and a plan whose delta is
        not below 1/(consented customers).
        Exit codes: 0 submitted or nothing to do, 75 no round open, 77 refused by the local privacy policy, 1 coordinator unreachable or refusing.
        """)

    static func runRound(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let store = try openStore(args)
        let limit = try args.double("max-epsilon", where: { $0 > 0 }, expectation: "a number > 0")
        var outcome = try participate(store: store, requestedLimit: limit)
        OutputStream.standardOutput.write(outcome.message + "\n")
        // A secure round asks again at its later stages: stay until this tenant's part is done or the round is over.
        while outcome.continues, outcome.exitCode == .success, let round = outcome.round {
            let next = try participate(store: store, requestedLimit: limit, wait: 10, only: round)
            if next.message != outcome.message { OutputStream.standardOutput.write(next.message + "\n") }
            outcome = next
        }
        if outcome.exitCode != .success { throw CLIError(outcome.exitCode, outcome.message) }
    }

    /// What one attempt at a round came to; `run` paces itself by the kind, `round` exits with its code.
    struct Outcome {
        enum Kind {
            /// This attempt sent an update (first sent now, or resent as first sent after a lost answer).
            case sent
            /// Our update is in; the round waits for others.
            case waiting
            case noRound
            /// The tenant's own privacy policy said no: the budget or the plan's delta.
            case refused
            case failed
        }

        var kind: Kind
        var message: String
        /// The open round will ask this tenant for more (a secure round's later stage).
        var continues = false
        /// The round it was about, when there was one.
        var round: UInt64?

        var exitCode: ExitCode {
            switch kind {
            case .sent, .waiting: .success
            case .noRound: .tempFail
            case .refused: .refused
            case .failed: .failure
            }
        }
    }

    /// The tenant's own limit: the smaller of the plan's budget and its configured one.
    static func limit(store: TenantStore, plan: Plan?, requested: Double?) throws -> Double {
        let configured = Double(try store.setting("max_epsilon") ?? "8") ?? 8
        return [configured, requested ?? .infinity, plan?.maximumEpsilon ?? .infinity].min()!
    }

    /// Delta is the chance the guarantee fails outright; at 1/n or more, with n customers, one of
    /// them can be expected to be exposed. The coordinator cannot know n, so each tenant checks.
    static func deltaRefusal(_ plan: Plan, customers: Int) -> String? {
        guard customers > 0, plan.delta * Double(customers) >= 1 else { return nil }
        return "refused: the plan's delta \(plan.delta) is not below 1/\(customers), one over this tenant's consented customers: "
            + "ask the operator for a delta well below \(1 / Double(customers))"
    }

    static func chargedMechanism(_ plan: Plan) throws -> SubsampledGaussian {
        let z = try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension).effectiveNoiseMultiplier
        return try SubsampledGaussian(sampleRate: plan.sampleRate, noiseMultiplier: z)
    }

    /// `wait`: seconds the coordinator may hold the poll until a round (or a secure round's next stage) awaits this tenant.
    /// `only`: a round this attempt is about; another one is left alone.
    static func participate(store: TenantStore, requestedLimit: Double?, epsilons: EpsilonMemo = EpsilonMemo(), wait: Double = 0,
                            only: UInt64? = nil) throws -> Outcome {
        let client = try client(store)
        // Before fetching anything: would the cached plan's next round exceed our limit?
        // `projected` is ε once this round is charged, under the plan it was computed for.
        let cached = try cachedPlan(store)
        var projected: Double?
        if let cached {
            let limit = try limit(store: store, plan: cached, requested: requestedLimit)
            let epsilon = try epsilons.epsilon(try store.ledger(delta: cached.delta), adding: try chargedMechanism(cached))
            if epsilon > limit {
                return Outcome(kind: .refused, message: "refused: another round would take this tenant's customers past epsilon \(formatEpsilon(limit))")
            }
            projected = epsilon
        }
        do {
            let current = try client.currentRound(wait: wait)
            try SecureParticipation.settleCharges(client: client, store: store, openRound: current?.round)
            guard let info = current else {
                return Outcome(kind: .noRound, message: "no round is open" + (client.noRoundReason.map { ": \($0)" } ?? ""))
            }
            if let only, info.round != only { return Outcome(kind: .waiting, message: "round \(only) is over", round: info.round) }
            let roundKey = "\(client.baseURL.absoluteString)#\(info.round)"
            if let secure = info.secure, secure.stage != .mask || !info.awaited {
                return try SecureParticipation.step(info, view: secure, roundKey: roundKey, client: client, store: store)
            }
            if !info.awaited { return Outcome(kind: .waiting, message: "already submitted to round \(info.round)", round: info.round) }
            // A retry (after a crash or a lost answer) resends exactly what was charged and sent:
            // a second, fresh release of the same round would spend privacy the ledger never charged.
            if let bytes = try store.sentUpdate(round: roundKey) {
                let duplicate = try client.submit(encoded: bytes, round: info.round)
                try store.updateAcknowledged()
                return Outcome(kind: .sent, message: "resent round \(info.round)'s update as first sent\(duplicate ? " (already counted)" : "")",
                               continues: info.secure != nil, round: info.round)
            }
            let plan = try client.plan()
            try store.setSetting("plan", String(decoding: try JSONEncoder().encode(plan), as: UTF8.self))
            let consented = try store.consentedCustomers()
            if let refusal = deltaRefusal(plan, customers: consented.count) { return Outcome(kind: .refused, message: refusal) }
            let limit = try limit(store: store, plan: plan, requested: requestedLimit)
            let mechanism = try chargedMechanism(plan)
            // A changed (or first) plan is checked again; an unchanged one was checked above.
            if plan != cached || projected == nil {
                projected = try epsilons.epsilon(try store.ledger(delta: plan.delta), adding: mechanism)
            }
            if projected! > limit {
                return Outcome(kind: .refused, message: "refused: round \(info.round) would take this tenant's customers past epsilon \(formatEpsilon(limit))")
            }
            let (model, note): (SoftmaxModel, String?)
            do {
                (model, note) = try acceptModel(try client.model(version: info.modelVersion), version: info.modelVersion, plan: plan, store: store)
            } catch let e as CLIError { return Outcome(kind: .failed, message: e.description) }

            // Encoder features: the plan's encoder (by digest) must be here before anything is sampled or charged.
            let extractor: FeatureExtractor
            do { extractor = try FeatureExtractor.loading(model.features) } catch { // the plan's features: acceptModel checked them
                return Outcome(kind: .failed, message: "the plan's model reads \(plan.featureKind.rawValue) features: \(error)")
            }
            let rng = SecureRandom()
            var generator = rng
            let sampled = LocalRound.poissonSample(consented, rate: plan.sampleRate, using: &generator)
            let round = LocalRound(model: model, plan: plan)
            var sum = [Float](repeating: 0, count: plan.dimension)
            let labelIndex = plan.labelIndex // the model's labels (acceptModel checked), and the names they had before
            // Customers in groups of about 2,000 messages: the encoder's throughput is in its batches,
            // and memory stays bounded however many customers are sampled.
            let stored = StoredFeatures(extractor: extractor, store: store)
            var group = [[TenantStore.StoredMessage]](), groupMessages = 0
            func addGroup() throws {
                var vectors = try stored.features(group.flatMap { $0 })[...]
                for customer in group {
                    let examples = zip(vectors.prefix(customer.count), customer).map { ($0, labelIndex[$1.intent]!) }
                    vectors = vectors.dropFirst(customer.count)
                    round.addCustomerUpdate(examples: examples, into: &sum)
                }
                (group, groupMessages) = ([], 0)
            }
            for customer in sampled {
                group.append(try store.messages(of: customer).filter { labelIndex[$0.intent] != nil })
                groupMessages += group.last!.count
                if groupMessages >= 2000 { try addGroup() }
            }
            try addGroup()
            // The weight is public, tenant-level: q times the consented population rounded up to two significant digits.
            let population = Double(consented.count)
            let magnitude = population < 100 ? 1.0 : pow(10, (log10(population)).rounded(.down) - 1)
            let weight = plan.sampleRate * (population / magnitude).rounded(.up) * magnitude
            let envelope: UpdateEnvelope
            switch plan.placement {
            case .central:
                envelope = UpdateEnvelope(round: info.round, modelVersion: info.modelVersion, flags: [], weight: weight, values: sum)
            case .tenant:
                try GaussianNoise(clipNorm: plan.clipNorm, noiseMultiplier: plan.noiseMultiplier, dimension: plan.dimension).privatize(&sum, using: rng)
                envelope = UpdateEnvelope(round: info.round, modelVersion: info.modelVersion, flags: .tenantNoised, weight: weight, values: sum)
            case .secure:
                // This tenant's share of the noise, hidden under its self mask and the masks it agreed with its neighbours.
                guard let view = info.secure else { return Outcome(kind: .failed, message: "coordinator: round \(info.round) is secure but came without its secure part") }
                do {
                    guard let secrets = try store.roundSecrets(round: roundKey, create: false) else { return SecureParticipation.lostSecrets(info.round) }
                    let release = try SecureAggregation.noiseShare(plan, threshold: view.parameters.threshold).gridRelease(sum, using: rng)
                    let masked = try SecureAggregation.maskedInput(release, tenant: client.keyId, secrets: secrets, parameters: view.parameters,
                                                                   sharedNeighbours: view.maskedWith)
                    envelope = UpdateEnvelope(round: info.round, modelVersion: info.modelVersion, weight: weight, masked: masked)
                } catch let e as SecureAggregationError {
                    return Outcome(kind: .failed, message: "refused round \(info.round): \(e)")
                }
            }
            // Charged before sending: once bytes leave, the round counts against our customers.
            let bytes = envelope.encoded()
            try store.charge(round: roundKey, mechanism, delta: plan.delta, now: Date().timeIntervalSince1970, sending: bytes, secure: plan.placement == .secure)
            try store.setSetting("last_round", String(info.round))
            let duplicate = try client.submit(encoded: bytes, round: info.round)
            try store.updateAcknowledged()
            let cohort = info.secure.map { " masked, in a secure cohort of \($0.parameters.cohort.count) tenants (threshold \($0.parameters.threshold))" } ?? ""
            return Outcome(kind: .sent, message: "submitted round \(info.round)\(duplicate ? " (already counted)" : "")\(cohort): \(sampled.count) customers sampled; epsilon spent \(formatEpsilon(projected!)) of \(formatEpsilon(limit)) at delta \(plan.delta)\(note.map { "; " + $0 } ?? "")",
                           continues: info.secure != nil, round: info.round)
        } catch let e as ClientError {
            return Outcome(kind: .failed, message: "coordinator: \(e)")
        }
    }

    /// What `acceptModel` says when the plan's intents changed under a personalised model.
    static let personalModelRemoved = "the plan's intents changed, so the personalised model (which knew the old ones) was removed: run 'sigilo-tenant personalise' again"

    /// A downloaded (and verified) global model the tenant will use: it decodes and fits the plan. Cached before
    /// it is returned, with a note for the user when the model's intents changed under a personalised one.
    static func acceptModel(_ file: [UInt8], version: UInt64, plan: Plan, store: TenantStore) throws -> (model: SoftmaxModel, note: String?) {
        let model: SoftmaxModel
        do { model = try ModelFile.decode(file) } catch { throw CLIError(.failure, "coordinator sent an invalid model \(version): \(error)") }
        guard model.labels == plan.labels, model.features.dimension == plan.featureConfiguration.dimension,
              model.features.kind == plan.featureKind, model.features.encoderDigest == plan.featureConfiguration.encoderDigest else {
            throw CLIError(.failure, "coordinator's model \(version) does not match its plan")
        }
        // A personalised model knows the old intents only: served beside a relabelled global one it would
        // answer with names the plan no longer has. It goes, and 'personalise' makes it again.
        var note: String?
        if try store.personalModelOrigin() != nil, let previous = try store.latestModel(),
           (try? ModelFile.decode(previous.file))?.labels != model.labels {
            _ = try store.deletePersonalModel()
            note = personalModelRemoved
        }
        try store.cacheModel(version: version, file: file)
        return (model, note)
    }

    static let runSpec = CommandSpec(
        name: "run", summary: "Keep taking part as rounds open, with backoff, until SIGINT or SIGTERM.",
        usage: "sigilo-tenant run --state DIR --key-file FILE [--max-epsilon E] [--poll SECONDS] [--log-format human|json]",
        options: storeOptions + [.value("max-epsilon", "E", "As for 'round'."), .value("poll", "SECONDS", "Wait between polls (default 1; doubles up to 30 while no round is open).")]
            + Log.options,
        discussion: """
        Logs on standard error, one timestamped line per event: updates sent, why no round is open (when that changes),
        refusals and failures (warnings), the model pulled. Once this tenant's own policy refuses a round (its budget is
        spent, say), run waits for the last round it joined to close, pulls the model that round published (as 'pull'
        does) and exits 0.
        """)

    static func runRun(_ args: ParsedArguments) throws {
        TerminationSignals.block() // before any other thread exists
        try args.rejectPositional()
        let log = try Log(args)
        let store = try openStore(args)
        let limit = try args.double("max-epsilon", where: { $0 > 0 }, expectation: "a number > 0")
        let initial = try args.double("poll", where: { $0 > 0 && $0 <= 3600 }, expectation: "seconds in (0, 3600]") ?? 1
        var wait = initial
        let epsilons = EpsilonMemo() // the projection is asked before every poll and changes only with the ledger
        var continuing = false
        var lastIdle: String? // why no round was open, logged when it changes rather than at every poll
        var joined: UInt64? // the last round this tenant sent to, until its outcome is known
        while true {
            // In a secure round with more to come, the coordinator holds the poll until the next stage (a few seconds at most, so a stop is not kept waiting).
            let outcome = try participate(store: store, requestedLimit: limit, epsilons: epsilons, wait: continuing ? 5 : 0)
            continuing = outcome.continues && outcome.exitCode == .success
            if outcome.kind != .noRound { lastIdle = nil }
            if let round = joined, outcome.round != round, outcome.kind != .failed {
                joined = nil
                reportOutcome(of: round, store: store, log: log)
            }
            if outcome.kind == .sent || outcome.kind == .waiting { joined = outcome.round }
            switch outcome.kind {
            case .sent:
                log.info("round.sent", outcome.message)
                wait = initial
            case .waiting:
                // Our update is in and the round waits for others (a secure round for
                // every member): the next round opens the moment it closes, so keep
                // the initial pace instead of backing off into a 30 s sleep.
                log.debug("round.waiting", outcome.message)
                wait = initial
            case .refused:
                log.warning("round.refused", outcome.message)
                // Our own policy will not change its mind (a spent budget does not come back): leave, with
                // the newest model. The last round we joined may still wait for others; the model it
                // publishes is the one worth having, so wait for it to close first.
                if let coordinator = try? client(store) {
                    while let open = try? coordinator.currentRound(), open.submitted {
                        if TerminationSignals.wait(timeout: initial) != nil { log.info("run.stop", "stopping"); return }
                    }
                }
                do { log.info("model.pull", try PullCommand.pull(store).message) } catch { log.error("model.pull", "\(error)") }
                return
            case .failed:
                log.warning("round.failed", outcome.message)
                wait = min(30, wait * 2)
            case .noRound:
                log(outcome.message == lastIdle ? .debug : .info, "round.none", outcome.message)
                lastIdle = outcome.message
                wait = min(30, wait * 2)
            }
            if TerminationSignals.wait(timeout: continuing ? 0.01 : wait) != nil { log.info("run.stop", "stopping"); return }
        }
    }

    /// Once a round this tenant sent to is over: an abandoned round is a warning
    /// saying its update was not used and what its ledger did about the charge.
    static func reportOutcome(of round: UInt64, store: TenantStore, log: Log) {
        do {
            let coordinator = try client(store)
            let outcome = try coordinator.roundOutcome(round)
            guard outcome.state == "abandoned" else { return log.debug("round.\(outcome.state)", "round \(round) is \(outcome.state)") }
            let ledger = try store.chargeState(round: "\(coordinator.baseURL.absoluteString)#\(round)")
            log.warning("round.abandoned", "round \(round) was abandoned\(outcome.stage.map { " at its \($0) stage" } ?? ""): "
                        + "this tenant's update was not used; its ledger \(ledger)")
        } catch {
            log.debug("round.outcome", "the outcome of round \(round) is not known yet: \(error)")
        }
    }

    // MARK: reports

    static let privacySpec = CommandSpec(
        name: "privacy", summary: "Privacy spent on this tenant's customers, consent and erasure records.",
        usage: "sigilo-tenant privacy --state DIR --key-file FILE [--json]", options: storeOptions + [.flag("json", "Print JSON.")])

    static func runPrivacy(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let store = try openStore(args)
        let plan = try cachedPlan(store)
        let delta = plan?.delta ?? 1e-6
        let ledger = try store.ledger(delta: delta)
        let epsilon = try ledger.epsilon()
        let limit = try limit(store: store, plan: plan, requested: nil)
        let counts = try store.counts()
        let receipts = try store.receipts()
        let personal = try store.personalModelOrigin()
        let withdrawn = try store.withdrawnCharges()
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.object([
                ("epsilon", .number(epsilon)), ("delta", .number(delta)), ("limit", .number(limit)), ("rounds_joined", .integer(ledger.entries.count)),
                ("messages", .integer(counts.messages)), ("customers_consented", .integer(counts.customersConsented)),
                ("customers_without_consent", .integer(counts.customersWithoutConsent)), ("customers_erased", .integer(counts.customersErased)),
                ("erasures", .array(receipts.map { JSON.object([("erased_at", .number($0.erasedAt)), ("messages", .integer($0.messages))]) })),
                ("withdrawn_charges", .array(withdrawn.map { JSON.object([("round", .string($0.round)), ("withdrawn_at", .number($0.at)), ("why", .string($0.why))]) })),
                ("personalised_model", personal.map { JSON.object([("global_version", .integer(Int($0.globalVersion))), ("created_at", .number($0.createdAt))]) } ?? .null),
            ]).rendered() + "\n")
            return
        }
        var text = "privacy spent on this tenant's customers: epsilon \(String(format: "%.4f", epsilon)) of \(limit) at delta \(delta) (PLD accountant, \(ledger.entries.count) rounds joined)\n"
        text += "store: \(counts.messages) messages; customers: \(counts.customersConsented) consented, \(counts.customersWithoutConsent) without consent, \(counts.customersErased) erased\n"
        for w in withdrawn {
            text += "charge withdrawn at \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: w.at))): \(w.why)\n"
        }
        for r in receipts {
            text += "erased \(r.messages) messages of customer \(r.customer) at \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: r.erasedAt)))\n"
        }
        if let personal {
            text += "personalised model made \(ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: personal.createdAt))) from consented customers' "
                + "messages without noise: it never leaves this store and goes with the next erasure or withdrawn consent\n"
        }
        OutputStream.standardOutput.write(text)
    }

    static let statusSpec = CommandSpec(
        name: "status", summary: "Enrolment, last round, cached global model, personalised model and messages kept.",
        usage: "sigilo-tenant status --state DIR --key-file FILE [--json]", options: storeOptions + [.flag("json", "Print one JSON object.")])

    static func runStatus(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let store = try openStore(args)
        let tenant = try store.setting("tenant_id"), coordinator = try store.setting("coordinator")
        let lastRound = try store.setting("last_round"), cached = try store.latestModelVersion()
        let origin = try store.personalModelOrigin()
        let counts = try store.counts()
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.object([
                ("tenant_id", tenant.map { .string($0) } ?? .null), ("coordinator", coordinator.map { .string($0) } ?? .null),
                ("last_round", lastRound.flatMap { Int($0) }.map { .integer($0) } ?? .null),
                ("model_version", cached.map { .integer(Int($0)) } ?? .null),
                ("personalised_from_version", origin.map { .integer(Int($0.globalVersion)) } ?? .null),
                ("labelled_messages", .integer(counts.messages)), ("unlabelled_messages", .integer(counts.unlabelledMessages)),
            ]).rendered() + "\n")
            return
        }
        let enrolled = tenant.map { "enrolled as \($0) at \(coordinator ?? "?")" } ?? "not enrolled"
        let model = cached.map { "cached global model version \($0)" } ?? "no cached model"
        let personal = try PersonaliseCommand.describe(store)
        let messages = "messages: \(counts.messages) labelled (they train), \(counts.unlabelledMessages) waiting for an attendant's label"
        OutputStream.standardOutput.write("\(enrolled)\nlast round joined: \(lastRound ?? "none")\n\(model)\n\(personal)\n\(messages)\n")
    }
}
