import Testing
@testable import SigiloHTTP

/// The connection's protocol logic without sockets: bytes and times in, actions out.
@Suite struct ConnectionMachineTests {
    let settings = ConnectionMachine.Settings(limits: HTTPLimits(maximumBodyBytes: 1 << 20), headTimeout: 10, idleTimeout: 30,
                                              minimumBodyRate: 10, bodyGrace: 2, largeBodyBytes: 100)

    func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    func request(in actions: [ConnectionMachine.Action]) -> HTTPRequest? {
        for case .handle(let request) in actions { return request }
        return nil
    }

    func written(_ actions: [ConnectionMachine.Action]) -> String {
        var out = [UInt8]()
        for case .write(let chunk) in actions { out += chunk }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func aBodylessRequestIsCheckedThenHandledThenAnswered() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        let actions = machine.received(bytes("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), now: 1)
        guard case .checkHead(let head, 0) = actions.first else { Issue.record("\(actions)"); return }
        #expect(head.target == "/a")
        #expect(!machine.wantsToRead) // nothing more is read while the request is in hand
        let handled = machine.headChecked(refusal: nil, now: 1)
        #expect(request(in: handled)?.target == "/a")
        let answered = machine.responded(HTTPResponse(status: 200, body: bytes("ok")), now: 2)
        #expect(written(answered).hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(written(answered).hasSuffix("keep-alive\r\n\r\nok"))
        #expect(machine.wantsToRead)
    }

    /// A refused head never has its body read: the refusal goes out and the connection closes.
    @Test func aRefusedHeadClosesWithoutReadingTheBody() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        let actions = machine.received(bytes("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nabc"), now: 0)
        #expect(actions == [.checkHead(HTTPRequest(method: "POST", target: "/u", headers: [("host", "x"), ("content-length", "50")],
                                                   body: [], keepAlive: true), bodyLength: 50)])
        let refused = machine.headChecked(refusal: .error(401, code: "unauthenticated", message: "no"), now: 0)
        #expect(written(refused).hasPrefix("HTTP/1.1 401"))
        #expect(refused.last == .close)
        #expect(machine.isClosed)
    }

    @Test func expectContinueIsAnsweredOnlyAfterTheHeadPasses() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        let head = machine.received(bytes("POST /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"), now: 0)
        #expect(written(head).isEmpty)
        let accepted = machine.headChecked(refusal: nil, now: 0)
        #expect(written(accepted) == "HTTP/1.1 100 Continue\r\n\r\n")
        #expect(request(in: machine.received(bytes("abcd"), now: 0))?.body == bytes("abcd"))
    }

    @Test func largeBodiesWaitForASlotAndGiveItBack() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        _ = machine.received(bytes("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"), now: 0)
        #expect(machine.headChecked(refusal: nil, now: 0) == [.awaitSlot])
        #expect(!machine.wantsToRead) // the body stays in the kernel until a slot is free
        #expect(machine.slotGranted(now: 1).isEmpty)
        let body = [UInt8](repeating: 7, count: 200)
        #expect(request(in: machine.received(body, now: 1))?.body == body)
        let answered = machine.responded(HTTPResponse(status: 202), now: 1)
        #expect(answered.first == .releaseSlot)
    }

    /// A slot granted after the connection closed goes straight back.
    @Test func aSlotGrantedToAClosedConnectionIsReturned() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        _ = machine.received(bytes("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"), now: 0)
        _ = machine.headChecked(refusal: nil, now: 0)
        #expect(machine.peerGone() == [.close])
        #expect(machine.slotGranted(now: 1) == [.releaseSlot])
    }

    @Test func aTricklingBodyIsCutWith408AndItsSlotReturned() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        _ = machine.received(bytes("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"), now: 0)
        _ = machine.headChecked(refusal: nil, now: 0)
        _ = machine.slotGranted(now: 0)
        _ = machine.received([UInt8](repeating: 1, count: 15), now: 1)
        #expect(machine.tick(now: 1.9).isEmpty) // within the grace period
        let cut = machine.tick(now: 2.5)        // 15 bytes in 2.5 s: below 10 bytes/s
        #expect(cut.first == .releaseSlot)
        #expect(written(cut).hasPrefix("HTTP/1.1 408"))
        #expect(written(cut).contains("body_too_slow"))
        #expect(cut.last == .close)
    }

    @Test func aBodyAboveTheMinimumRateIsNotCut() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        _ = machine.received(bytes("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 999\r\n\r\n"), now: 0)
        _ = machine.headChecked(refusal: nil, now: 0)
        for second in 1...8 {
            _ = machine.received([UInt8](repeating: 1, count: 20), now: Double(second))
            #expect(machine.tick(now: Double(second) + 0.5).isEmpty, "second \(second)")
        }
    }

    @Test func headAndIdleDeadlines() {
        var slowHead = ConnectionMachine(settings: settings, now: 0)
        _ = slowHead.received(bytes("GET / HTTP/1.1\r\nX: "), now: 1)
        #expect(slowHead.tick(now: 10.5).isEmpty)
        #expect(written(slowHead.tick(now: 11.5)).hasPrefix("HTTP/1.1 408"))

        var idle = ConnectionMachine(settings: settings, now: 0)
        #expect(idle.tick(now: 29).isEmpty)
        #expect(idle.tick(now: 31) == [.close])
    }

    /// Pipelined requests are taken one at a time, each after the previous answer.
    @Test func pipelinedRequestsWaitTheirTurn() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        let first = machine.received(bytes("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"), now: 0)
        #expect(first.count == 1)
        _ = machine.headChecked(refusal: nil, now: 0)
        let after = machine.responded(HTTPResponse(status: 200), now: 0)
        guard case .checkHead(let second, 0) = after.last else { Issue.record("\(after)"); return }
        #expect(second.target == "/2")
    }

    @Test func stoppingClosesIdleConnectionsAndAnswersBusyOnesWithClose() {
        var idle = ConnectionMachine(settings: settings, now: 0)
        #expect(idle.stop() == [.close])

        var busy = ConnectionMachine(settings: settings, now: 0)
        _ = busy.received(bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), now: 0)
        _ = busy.headChecked(refusal: nil, now: 0)
        #expect(busy.stop().isEmpty)
        let answered = busy.responded(HTTPResponse(status: 200), now: 0)
        #expect(written(answered).contains("Connection: close"))
        #expect(answered.last == .close)
    }

    @Test func malformedInputIsAnsweredAndClosed() {
        var machine = ConnectionMachine(settings: settings, now: 0)
        let actions = machine.received(bytes("GET / HTTP/1.1\r\n\r\n"), now: 0) // no Host
        #expect(written(actions).hasPrefix("HTTP/1.1 400"))
        #expect(actions.last == .close)
        #expect(machine.received(bytes("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), now: 0).isEmpty)
    }
}

@Suite struct SourceLimitsTests {
    @Test func tokenBucketRefillsAtItsRate() {
        var bucket = TokenBucket(rate: 10, burst: 2, now: 0)
        let taken = (0..<3).map { _ in bucket.take(now: 0) }
        #expect(taken[0] == nil && taken[1] == nil)
        #expect(taken[2] != nil && abs(taken[2]! - 0.1) < 1e-9)
        let later = bucket.take(now: 0.1)
        #expect(later == nil)
    }

    @Test func connectionsAreCappedPerAddressOnly() {
        var limits = SourceLimits(policy: .init(connectionsPerAddress: 2, requestsPerSecond: 1, requestBurst: 1))
        let opened = (0..<3).map { _ in limits.openConnection(from: "10.0.0.1") }
        #expect(opened == [true, true, false])
        let other = limits.openConnection(from: "10.0.0.2")
        #expect(other)
        limits.closeConnection(from: "10.0.0.1")
        let reopened = limits.openConnection(from: "10.0.0.1")
        #expect(reopened)
        let waits = (0..<2).map { _ in limits.admitRequest(from: "10.0.0.1", now: 0) }
        #expect(waits[0] == nil && waits[1] != nil)
        let otherWait = limits.admitRequest(from: "10.0.0.2", now: 0)
        #expect(otherWait == nil)
    }

    @Test(arguments: [("127.0.0.1:80", "127.0.0.1:80"), ("[::1]:8443", "[::1]:8443"), ("[::]:0", "[::]:0")])
    func addressesParse(_ text: String, _ shown: String) throws {
        #expect(try SocketAddress(parsing: text).description == shown)
    }

    @Test(arguments: ["localhost:80", "::1:80", "1.2.3.4", "1.2.3.4:99999", "[::1]80"])
    func badAddressesAreRefused(_ text: String) {
        #expect(throws: HTTPServerError.self) { try SocketAddress(parsing: text) }
    }
}
