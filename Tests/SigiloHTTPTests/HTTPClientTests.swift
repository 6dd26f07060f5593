import Foundation
import Testing
@testable import SigiloHTTP

@Suite(.serialized) struct HTTPClientTests {
    /// Echoes method, target, body size and a digest-free checksum, and who asked (the peer's port shows connection reuse).
    static func echo(_ request: HTTPRequest, _ peer: String) -> HTTPResponse {
        if request.path == "/slow" { usleep(1_500_000) }
        if request.path == "/close" { return HTTPResponse(status: 200, headers: [("Connection", "close")], body: Array(peer.utf8)) }
        if request.path == "/mirror" { return HTTPResponse(status: 200, body: request.body) }
        return HTTPResponse(status: request.path == "/missing" ? 404 : 200, headers: [("X-Peer", peer)],
                            body: Array("\(request.method) \(request.target) \(request.body.count) \(request.header("x-test") ?? "-")".utf8))
    }

    func withServer(_ configuration: HTTPServer.Configuration = .init(), _ body: (UInt16) throws -> Void) throws {
        let server = HTTPServer(configuration: configuration, handler: Self.echo)
        let port = try server.start()
        defer { server.shutdown() }
        try body(port)
    }

    @Test func requestsShareOneConnectionAndLargeBodiesRoundTrip() throws {
        try withServer { port in
            let client = HTTPClient(host: "127.0.0.1", port: port, timeout: 5)
            let first = try client.send(method: "GET", target: "/a?x=1", headers: [("X-Test", "yes")])
            #expect(first.status == 200)
            #expect(String(decoding: first.body, as: UTF8.self) == "GET /a?x=1 0 yes")
            let second = try client.send(method: "POST", target: "/b", body: Array(repeating: 7, count: 1000))
            #expect(String(decoding: second.body, as: UTF8.self) == "POST /b 1000 -")
            #expect(first.header("x-peer") == second.header("x-peer"), "the second request opened a new connection")
            // 8 MB each way, bytes intact.
            let big = (0..<(8 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
            #expect(try client.send(method: "POST", target: "/mirror", body: big).body == big)
            #expect(try client.send(method: "GET", target: "/missing").status == 404)
        }
    }

    @Test func aConnectionTheServerClosedIsReplacedTransparently() throws {
        try withServer { port in
            let client = HTTPClient(host: "localhost", port: port, timeout: 5)
            let closing = try client.send(method: "GET", target: "/close")
            #expect(!closing.keepAlive)
            let after = try client.send(method: "GET", target: "/a")
            #expect(after.header("x-peer") != String(decoding: closing.body, as: UTF8.self))
            #expect(after.status == 200)
        }
        // The server's idle timeout closes a kept-alive connection; the next request still succeeds.
        var configuration = HTTPServer.Configuration()
        configuration.idleTimeout = 0.5
        try withServer(configuration) { port in
            let client = HTTPClient(host: "127.0.0.1", port: port, timeout: 5)
            let before = try client.send(method: "GET", target: "/a")
            usleep(1_600_000)
            let after = try client.send(method: "GET", target: "/a")
            #expect(after.status == 200)
            #expect(after.header("x-peer") != before.header("x-peer"))
        }
    }

    @Test func silenceRefusalAndGarbageAreErrorsNamingTheServer() throws {
        try withServer { port in
            let client = HTTPClient(host: "127.0.0.1", port: port, timeout: 1)
            let start = Date()
            #expect(throws: HTTPClientError.self) { _ = try client.send(method: "GET", target: "/slow") }
            #expect(Date().timeIntervalSince(start) < 1.45 + 1, "the timeout bounds the wait")
            let recovered = try client.send(method: "GET", target: "/a")
            #expect(recovered.status == 200, "the client recovers on a new connection")
        }
        // Nothing listens on port 9 of loopback.
        do {
            _ = try HTTPClient(host: "127.0.0.1", port: 9, timeout: 2).send(method: "GET", target: "/")
            Issue.record("connecting to a closed port succeeded")
        } catch let error as HTTPClientError {
            #expect(error.description.contains("127.0.0.1:9"))
            #expect(error.description.contains("cannot connect"))
        }
        #expect(throws: HTTPClientError.self) { _ = try HTTPClient(host: "no-such-host.invalid", port: 80, timeout: 2).send(method: "GET", target: "/") }
        // A server that answers with something that is not HTTP.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 1)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let garbagePort = UInt16(bigEndian: address.sin_port)
        let answering = Thread {
            let fd = accept(listener, nil, nil)
            var buffer = [UInt8](repeating: 0, count: 4096)
            _ = recv(fd, &buffer, buffer.count, 0)
            _ = HTTPServer.send(fd, Array("SSH-2.0-OpenSSH_9.2\r\n\r\n".utf8))
            close(fd)
        }
        answering.start()
        do {
            _ = try HTTPClient(host: "127.0.0.1", port: garbagePort, timeout: 2).send(method: "GET", target: "/")
            Issue.record("a non-HTTP answer was accepted")
        } catch let error as HTTPClientError {
            #expect(error.description.contains("malformed response"))
        }
    }
}
