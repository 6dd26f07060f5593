import Foundation
import Testing
@testable import SigiloHTTP

/// A raw TCP client, so tests control every byte and every pause.
struct RawClient {
    let fd: Int32

    /// Connects to `host` (IPv4 or IPv6 loopback) from `source` (any address of 127.0.0.0/8, so
    /// tests can play several clients on one machine).
    init(port: UInt16, host: String = "127.0.0.1", source: String? = nil) throws {
        let ok: Int32
        if host.contains(":") {
            fd = socket(AF_INET6, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = port.bigEndian
            inet_pton(AF_INET6, host, &address.sin6_addr)
            ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) } }
        } else {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if let source {
                var local = sockaddr_in()
                local.sin_family = sa_family_t(AF_INET)
                inet_pton(AF_INET, source, &local.sin_addr)
                _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            inet_pton(AF_INET, host, &address.sin_addr)
            ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        }
        guard ok == 0 else { Glibc.close(fd); throw HTTPServerError("connect failed") }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) { _ = HTTPServer.send(fd, Array(text.utf8)) }

    /// Reads until the peer closes or `responses` complete responses arrived.
    func read(responses: Int = 1) -> String {
        var data = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let text = String(decoding: data, as: UTF8.self)
            if text.components(separatedBy: "HTTP/1.1 ").count - 1 >= responses, Self.complete(text, responses) { return text }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return text }
            data.append(contentsOf: buffer[0..<n])
        }
    }

    static func complete(_ text: String, _ responses: Int) -> Bool {
        // Each response's body length is in its Content-Length header.
        var rest = Substring(text)
        for _ in 0..<responses {
            guard let headEnd = rest.range(of: "\r\n\r\n") else { return false }
            let head = rest[..<headEnd.lowerBound]
            let length = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
            let bodyStart = headEnd.upperBound
            guard rest.distance(from: bodyStart, to: rest.endIndex) >= length else { return false }
            rest = rest[rest.index(bodyStart, offsetBy: length)...]
        }
        return true
    }

    /// Whether the server closed the connection (a read returns 0).
    func isClosed() -> Bool {
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    func close() { _ = Glibc.close(fd) }
}

@Suite(.serialized) struct HTTPServerTests {
    static func echo(_ request: HTTPRequest, _ peer: String) -> HTTPResponse {
        if request.path == "/slow" { usleep(300_000) }
        return HTTPResponse(status: 200, body: Array("\(request.method) \(request.target) \(request.body.count)".utf8))
    }

    func withServer(_ configuration: HTTPServer.Configuration = .init(), _ body: (UInt16, HTTPServer) throws -> Void) throws {
        let server = HTTPServer(configuration: configuration, handler: Self.echo)
        let port = try server.start()
        defer { server.shutdown() }
        try body(port, server)
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        try withServer { port, _ in
            let c = try RawClient(port: port)
            defer { c.close() }
            c.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz")
            let text = c.read(responses: 2)
            #expect(text.contains("GET /a 0"))
            #expect(text.contains("POST /b 3"))
            #expect(text.contains("Connection: keep-alive"))
            c.send("GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(c.read().contains("GET /c 0"))
            #expect(c.isClosed())
        }
    }

    @Test func malformedAndOversizedRequestsAreAnsweredAndClosed() throws {
        var configuration = HTTPServer.Configuration()
        configuration.limits = HTTPLimits(maximumHeaderBytes: 1024, maximumHeaderCount: 16, maximumBodyBytes: 100)
        try withServer(configuration) { port, _ in
            for (request, status) in [("BROKEN\r\n\r\n", "400"), ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", "413"),
                                      ("GET / HTTP/1.1\r\nHost: x\r\nX: " + String(repeating: "a", count: 2000) + "\r\n\r\n", "431"),
                                      ("GET / HTTP/3\r\n\r\n", "505")] {
                let c = try RawClient(port: port)
                c.send(request)
                let text = c.read()
                #expect(text.hasPrefix("HTTP/1.1 \(status)"), "\(request.prefix(30)): \(text.prefix(40))")
                #expect(text.contains("\"error\""))
                #expect(c.isClosed())
                c.close()
            }
        }
    }

    @Test func slowClientsTimeOut() throws {
        var configuration = HTTPServer.Configuration()
        configuration.requestTimeout = 1
        configuration.idleTimeout = 1
        try withServer(configuration) { port, _ in
            let slow = try RawClient(port: port)
            slow.send("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ") // never finishes the head
            let text = slow.read()
            #expect(text.hasPrefix("HTTP/1.1 408"))
            slow.close()
            let idle = try RawClient(port: port) // says nothing at all
            #expect(idle.isClosed())
            idle.close()
        }
    }

    @Test func connectionCapAnswers503() throws {
        var configuration = HTTPServer.Configuration()
        configuration.maximumConnections = 2
        try withServer(configuration) { port, server in
            let a = try RawClient(port: port), b = try RawClient(port: port)
            defer { a.close(); b.close() }
            a.send("GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"); _ = a.read()
            b.send("GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"); _ = b.read()
            #expect(server.openConnections == 2)
            let c = try RawClient(port: port)
            #expect(c.read().hasPrefix("HTTP/1.1 503"))
            c.close()
        }
    }

    @Test func shutdownFinishesInFlightRequests() throws {
        let server = HTTPServer(configuration: .init(), handler: Self.echo)
        let port = try server.start()
        let c = try RawClient(port: port)
        c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        usleep(50_000) // the handler is now sleeping
        let done = DispatchSemaphore(value: 0)
        Thread { server.shutdown(); done.signal() }.start()
        let text = c.read()
        #expect(text.contains("GET /slow 0"))
        #expect(text.contains("Connection: close"))
        done.wait()
        #expect(server.openConnections == 0)
        #expect(throws: HTTPServerError.self) { try RawClient(port: port) }
        c.close()
    }

    /// Large bodies are received and handled a bounded number at a time, so
    /// memory does not grow with the number of clients uploading at once.
    @Test func largeBodiesAreTakenABoundedNumberAtATime() throws {
        final class Gauge: @unchecked Sendable {
            let lock = NSLock()
            var current = 0, peak = 0, served = 0
            func enter() { lock.withLock { current += 1; peak = max(peak, current) } }
            func leave() { lock.withLock { current -= 1; served += 1 } }
        }
        let gauge = Gauge()
        var configuration = HTTPServer.Configuration()
        configuration.largeBodyBytes = 1000
        configuration.maximumLargeBodies = 2
        let server = HTTPServer(configuration: configuration) { request, _ in
            if request.body.count >= 1000 { gauge.enter(); usleep(150_000); gauge.leave() }
            return HTTPResponse(status: 200, body: Array("\(request.body.count)".utf8))
        }
        let port = try server.start()
        defer { server.shutdown() }
        let body = String(repeating: "x", count: 5000)
        let clients = try (0..<6).map { _ in try RawClient(port: port) }
        for client in clients { client.send("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n" + body) }
        // A small request is not held up by the queue of large ones.
        let small = try RawClient(port: port)
        let start = Date()
        small.send("POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        #expect(small.read().hasSuffix("\r\n\r\n2"))
        #expect(Date().timeIntervalSince(start) < 0.3)
        for client in clients {
            #expect(client.read().hasSuffix("\r\n\r\n5000"))
            client.close()
        }
        small.close()
        #expect(gauge.served == 6)
        #expect(gauge.peak == 2)
    }

    /// One source address cannot take another's turn: past its own cap it is
    /// refused (429) while a second address is served as usual.
    @Test func connectionsAreCappedPerSourceAddress() throws {
        var configuration = HTTPServer.Configuration()
        configuration.sourceLimits = .init(connectionsPerAddress: 3)
        try withServer(configuration) { port, server in
            let held = try (0..<3).map { _ in try RawClient(port: port, source: "127.0.0.2") }
            defer { held.forEach { $0.close() } }
            for client in held { client.send("GET /h HTTP/1.1\r\nHost: x\r\n\r\n"); _ = client.read() }
            let refused = try RawClient(port: port, source: "127.0.0.2")
            #expect(refused.read().hasPrefix("HTTP/1.1 429"))
            refused.close()
            let other = try RawClient(port: port, source: "127.0.0.3")
            other.send("GET /o HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(other.read().contains("GET /o 0"))
            other.close()
            #expect(server.statistics().refused["too_many_connections_from_address"] == 1)
        }
    }

    @Test func requestRateIsLimitedPerSourceAddressWithRetryAfter() throws {
        var configuration = HTTPServer.Configuration()
        configuration.sourceLimits = .init(requestsPerSecond: 1, requestBurst: 3)
        try withServer(configuration) { port, server in
            let c = try RawClient(port: port, source: "127.0.0.4")
            defer { c.close() }
            c.send(String(repeating: "GET /r HTTP/1.1\r\nHost: x\r\n\r\n", count: 4))
            let text = c.read(responses: 4)
            #expect(text.components(separatedBy: "GET /r 0").count - 1 == 3)
            #expect(text.contains("HTTP/1.1 429"))
            #expect(text.contains("Retry-After: 1"))
            let other = try RawClient(port: port, source: "127.0.0.5")
            other.send("GET /o HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(other.read().contains("GET /o 0"))
            other.close()
            #expect(server.statistics().refused["rate_limited"] == 1)
        }
    }

    /// The head check answers before the body is sent: a client declaring a
    /// large body it never sends is refused at once, and `100-continue` is
    /// answered only for a head that passed.
    @Test func headsAreJudgedBeforeTheirBodies() throws {
        let server = HTTPServer(configuration: .init(), headCheck: { head, length, _ in
            head.header("authorization") == "yes" && length <= 1000 ? nil : .error(401, code: "unauthenticated", message: "no")
        }, handler: Self.echo)
        let port = try server.start()
        defer { server.shutdown() }
        let refused = try RawClient(port: port)
        refused.send("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        #expect(refused.read().hasPrefix("HTTP/1.1 401"))
        #expect(refused.isClosed())
        refused.close()
        let tooLarge = try RawClient(port: port)
        tooLarge.send("POST /u HTTP/1.1\r\nHost: x\r\nAuthorization: yes\r\nContent-Length: 1001\r\n\r\n")
        #expect(tooLarge.read().hasPrefix("HTTP/1.1 401"))
        tooLarge.close()
        let waiting = try RawClient(port: port)
        defer { waiting.close() }
        waiting.send("POST /u HTTP/1.1\r\nHost: x\r\nAuthorization: yes\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        #expect(waiting.read() == "HTTP/1.1 100 Continue\r\n\r\n")
        waiting.send("abc")
        #expect(waiting.read().contains("POST /u 3"))
    }

    @Test func aTricklingBodyIsCutWith408() throws {
        var configuration = HTTPServer.Configuration()
        configuration.minimumBodyRate = 1000
        configuration.bodyGrace = 0.5
        try withServer(configuration) { port, server in
            let slow = try RawClient(port: port)
            defer { slow.close() }
            slow.send("POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nab")
            let text = slow.read()
            #expect(text.hasPrefix("HTTP/1.1 408"))
            #expect(text.contains("body_too_slow"))
            #expect(server.openConnections == 0 || slow.isClosed())
        }
    }

    @Test func ipv6AndDualStack() throws {
        var configuration = HTTPServer.Configuration()
        configuration.host = "::"
        try withServer(configuration) { port, _ in
            let v6 = try RawClient(port: port, host: "::1")
            v6.send("GET /six HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(v6.read().contains("GET /six 0"))
            v6.close()
            let v4 = try RawClient(port: port)
            v4.send("GET /four HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(v4.read().contains("GET /four 0"))
            v4.close()
        }
    }

    /// A handler may answer later from another thread (a long-poll) without holding a worker.
    @Test func deferredAnswersDoNotHoldWorkers() throws {
        final class Parked: @unchecked Sendable {
            let lock = NSLock()
            var responders: [HTTPResponder] = []
        }
        let parked = Parked()
        var configuration = HTTPServer.Configuration()
        configuration.workers = 1
        let server = HTTPServer(configuration: configuration) { request, _, responder in
            if request.path == "/wait" { parked.lock.withLock { parked.responders.append(responder) } } else { responder.respond(HTTPResponse(status: 200)) }
        }
        let port = try server.start()
        defer { server.shutdown() }
        let waiters = try (0..<20).map { _ in try RawClient(port: port) }
        for waiter in waiters { waiter.send("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n") }
        let quick = try RawClient(port: port)
        quick.send("GET /now HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(quick.read().hasPrefix("HTTP/1.1 200")) // one worker, twenty parked requests
        quick.close()
        while parked.lock.withLock({ parked.responders.count }) < 20 { usleep(1000) }
        for responder in parked.lock.withLock({ parked.responders }) { responder.respond(HTTPResponse(status: 204)) }
        for waiter in waiters {
            #expect(waiter.read().hasPrefix("HTTP/1.1 204"))
            waiter.close()
        }
    }

    /// Thousands of connections are held at once without a thread each (not timed).
    @Test func twoThousandConnectionsAreHeld() throws {
        try withServer { port, server in
            var clients = [RawClient]()
            defer { clients.forEach { $0.close() } }
            for index in 0..<2000 { clients.append(try RawClient(port: port, source: "127.0.1.\(1 + index / 200)")) }
            for (index, client) in clients.enumerated() { client.send("GET /c\(index) HTTP/1.1\r\nHost: x\r\n\r\n") }
            for (index, client) in clients.enumerated() { #expect(client.read().contains("GET /c\(index) 0")) }
            #expect(server.openConnections == 2000)
            let statistics = server.statistics()
            #expect(statistics.eventLoopThreads + statistics.workerThreads <= 8)
            let probe = try RawClient(port: port, source: "127.0.2.1")
            probe.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(probe.read().contains("GET /healthz 0"))
            probe.close()
        }
    }
}
