import Foundation
import Testing
@testable import SigiloHTTP

/// A raw TCP client, so tests control every byte and every pause.
struct RawClient {
    let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let ok = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw HTTPServerError("connect failed") }
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
            c.send("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz")
            let text = c.read(responses: 2)
            #expect(text.contains("GET /a 0"))
            #expect(text.contains("POST /b 3"))
            #expect(text.contains("Connection: keep-alive"))
            c.send("GET /c HTTP/1.1\r\nConnection: close\r\n\r\n")
            #expect(c.read().contains("GET /c 0"))
            #expect(c.isClosed())
        }
    }

    @Test func malformedAndOversizedRequestsAreAnsweredAndClosed() throws {
        var configuration = HTTPServer.Configuration()
        configuration.limits = HTTPLimits(maximumHeaderBytes: 1024, maximumHeaderCount: 16, maximumBodyBytes: 100)
        try withServer(configuration) { port, _ in
            for (request, status) in [("BROKEN\r\n\r\n", "400"), ("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", "413"),
                                      ("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 2000) + "\r\n\r\n", "431"),
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
            slow.send("GET / HTTP/1.1\r\nX-Slow: ") // never finishes the head
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
            a.send("GET /1 HTTP/1.1\r\n\r\n"); _ = a.read()
            b.send("GET /2 HTTP/1.1\r\n\r\n"); _ = b.read()
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
        c.send("GET /slow HTTP/1.1\r\n\r\n")
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
}
