import Testing
@testable import SigiloHTTP

@Suite struct RequestParserTests {
    func parse(_ text: String, limits: HTTPLimits = HTTPLimits(), chunk: Int = .max) -> [RequestParser.Result] {
        var parser = RequestParser(limits: limits)
        var results = [RequestParser.Result]()
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            parser.feed(bytes[offset..<end])
            offset = end
            while true {
                let r = parser.next()
                if r == .needMore { break }
                if case .head = r { continue } // announced; its body follows
                results.append(r)
                if case .failure = r { return results }
            }
        }
        return results
    }

    func status(_ text: String, limits: HTTPLimits = HTTPLimits()) -> Int? {
        for r in parse(text, limits: limits) { if case .failure(let e) = r { return e.status } }
        return nil
    }

    @Test func getAndPostWithBody() throws {
        let results = parse("GET /v1/plan HTTP/1.1\r\nHost: x\r\n\r\nPOST /v1/rounds/1/updates?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello")
        #expect(results.count == 2)
        guard case .request(let get) = results[0], case .request(let post) = results[1] else { Issue.record("expected requests"); return }
        #expect(get.method == "GET" && get.target == "/v1/plan" && get.body.isEmpty && get.keepAlive)
        #expect(post.method == "POST" && post.path == "/v1/rounds/1/updates" && post.body == Array("hello".utf8))
        #expect(post.header("x-a") == "b" && post.header("X-A") == "b")
    }

    @Test(arguments: [1, 2, 3, 7, 64])
    func sameResultWhateverTheChunking(_ chunk: Int) {
        let text = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        let results = parse(text, chunk: chunk)
        #expect(results == parse(text))
        #expect(results.count == 2)
        if case .request(let last) = results.last { #expect(!last.keepAlive) }
    }

    @Test func http10ClosesUnlessAskedToKeepAlive() {
        if case .request(let r) = parse("GET / HTTP/1.0\r\n\r\n").first { #expect(!r.keepAlive) }
        if case .request(let r) = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").first { #expect(r.keepAlive) }
    }

    @Test(arguments: [
        ("GET /\r\n\r\n", 400),                                     // two-part request line
        ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),                           // empty token
        ("G@T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),                            // bad method token
        ("GET x HTTP/1.1\r\nHost: x\r\n\r\n", 400),                            // not an absolute path
        ("GET / HTTP/2.0\r\n\r\n", 505),
        ("GET / FTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\n: empty\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\nHost: x\r\n\r\n", 400),                    // bare LF
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n", 413),
        ("GET / HTTP/1.1\r\n\r\n", 400),                               // HTTP/1.1 without Host
        ("POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n", 417),
    ])
    func malformedRequestsGetPreciseStatuses(_ text: String, _ expected: Int) {
        #expect(status(text) == expected, "\(text.debugDescription)")
    }

    @Test func headerLimits() {
        let limits = HTTPLimits(maximumHeaderBytes: 256, maximumHeaderCount: 4, maximumBodyBytes: 10)
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 300) + "\r\n\r\n", limits: limits) == 431)
        // Oversized heads are refused before their end arrives.
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 300), limits: limits) == 431)
        #expect(status("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", limits: limits) == 431)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", limits: limits) == 413)
        #expect(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789", limits: limits) == nil)
    }

    @Test func http10NeedsNoHost() {
        #expect(status("GET / HTTP/1.0\r\n\r\n") == nil)
    }

    /// A body is announced with its head, before any of it is taken, so the
    /// server can refuse the request without reading the body.
    @Test func aBodyIsAnnouncedBeforeItIsRead() {
        var parser = RequestParser()
        parser.feed(Array("POST /u HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nab".utf8))
        guard case .head(let head, let length) = parser.next() else { Issue.record("expected the head"); return }
        #expect(head.target == "/u" && head.body.isEmpty && length == 4 && head.expectsContinue)
        #expect(parser.receivedBodyBytes == 0)
        #expect(parser.next() == .needMore)
        #expect(parser.receivedBodyBytes == 2)
        parser.feed(Array("cd".utf8))
        guard case .request(let request) = parser.next() else { Issue.record("expected the request"); return }
        #expect(request.body == Array("abcd".utf8))
        #expect(parser.isIdle)
    }

    @Test func incompleteInputWaits() {
        var parser = RequestParser()
        parser.feed(Array("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab".utf8))
        if case .head = parser.next() {} else { Issue.record("expected the head") }
        #expect(parser.next() == .needMore)
        #expect(!parser.isIdle)
        parser.feed(Array("cd".utf8))
        if case .request(let r) = parser.next() { #expect(r.body == Array("abcd".utf8)) } else { Issue.record("expected a request") }
        #expect(parser.isIdle)
    }

    @Test func randomBytesNeverCrashAndNeverYieldAMalformedRequest() {
        // A deterministic fuzz pass: mutated valid requests and random bytes.
        var state: UInt64 = 0x1234_5678
        func random() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        let seed = Array("POST /v1/rounds/7/updates HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nSigilo-Key-Id: t\r\n\r\nabcd".utf8)
        for _ in 0..<20_000 {
            var bytes = seed
            for _ in 0..<(1 + Int(random() % 6)) {
                let i = Int(random() % UInt64(bytes.count))
                switch random() % 3 {
                case 0: bytes[i] = UInt8(truncatingIfNeeded: random())
                case 1: bytes.remove(at: i)
                default: bytes.insert(UInt8(truncatingIfNeeded: random()), at: i)
                }
                if bytes.isEmpty { break }
            }
            var parser = RequestParser(limits: HTTPLimits(maximumHeaderBytes: 512, maximumHeaderCount: 8, maximumBodyBytes: 64))
            parser.feed(bytes)
            var guardCount = 0
            while guardCount < 10 {
                guardCount += 1
                let r = parser.next()
                if case .head(let head, let length) = r {
                    #expect(head.target.hasPrefix("/") && length <= 64)
                    continue
                }
                if case .request(let request) = r {
                    #expect(request.target.hasPrefix("/"))
                    #expect(request.body.count <= 64)
                    continue
                }
                break
            }
        }
    }
}
