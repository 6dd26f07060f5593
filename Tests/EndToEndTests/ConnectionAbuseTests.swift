import Foundation
import Testing
import SigiloClient
import SigiloCrypto
import SigiloFederation
import SigiloProtocol

/// A raw TCP connection from a chosen loopback source address, so one test plays many clients.
struct LoopbackSocket {
    let fd: Int32

    init(port: UInt16, source: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, source, &local.sin_addr)
        _ = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { _ = Foundation.close(fd); throw ClientError(status: nil, code: "connect", message: "connect from \(source) failed") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ text: String) { _ = Array(text.utf8).withUnsafeBytes { Foundation.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    /// What arrives until the peer closes or goes quiet (the receive timeout).
    func readHead() -> String {
        var data = [UInt8](), buffer = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: data, as: UTF8.self).contains("\r\n\r\n") {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data += buffer[0..<n]
        }
        return String(decoding: data, as: UTF8.self)
    }

    func close() { _ = Foundation.close(fd) }
}

/// The hostile client against the real coordinator process: bursts of idle
/// connections, uploads that declare huge bodies they will never send, and
/// thousands of connections held at once. Nobody else's request may fail.
@Suite(.serialized) struct ConnectionAbuseTests {
    func coordinator(_ dir: URL, tenants: Int) throws -> (RunningCoordinator, [String]) {
        let (state, tokens) = try coordinatorState(in: dir, tenants: tenants)
        return (try RunningCoordinator(state: state), tokens)
    }

    /// 300 idle connections from one address: past its cap (256) that address is
    /// refused with 429, while tenants elsewhere enrol and complete a round.
    /// Three uploads declaring 50 MB bodies under forged signatures are refused
    /// from their heads, while their connections are still open, and a valid
    /// update is acknowledged meanwhile.
    @Test func aBurstFromOneAddressAndForgedHugeUploadsHurtNoOneElse() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, tokens) = try coordinator(dir, tenants: 2)
        defer { _ = server.stop() }

        var burst = [LoopbackSocket]()
        defer { burst.forEach { $0.close() } }
        for _ in 0..<300 { burst.append(try LoopbackSocket(port: server.port, source: "127.0.3.1")) }
        usleep(500_000) // the server accepts and answers on its own loops
        let refused = burst.filter { socket in
            var pending = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
            return poll(&pending, 1, 0) > 0 && socket.readHead().hasPrefix("HTTP/1.1 429")
        }
        #expect(refused.count == 300 - 256)

        let clients = try (0..<2).map { _ in CoordinatorClient(baseURL: server.url, keyId: "enroll", key: try Ed25519.KeyPair.generate(), timeout: 10) }
        for (client, token) in zip(clients, tokens) { try client.enroll(token: token) }
        var info: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where info == nil { info = try clients[0].currentRound(); usleep(100_000) }
        let round = try #require(info)

        // Forged: signed with a key that is not tenant-1's, declaring an update's size, for a body that never comes;
        // and one declaring 50 MB, more than any update of this plan.
        let forger = try Ed25519.KeyPair.generate()
        let target = "/v1/rounds/\(round.round)/updates"
        let updateBytes = UpdateEnvelope.headerBytes + 4 * round.dimension
        let uploads = try [updateBytes, updateBytes, updateBytes, 50_000_000].enumerated().map { i, length -> (LoopbackSocket, Int) in
            let socket = try LoopbackSocket(port: server.port, source: "127.0.4.\(1 + i)")
            let headers = try RequestSigning.sign(method: "POST", path: target, body: Array("never sent".utf8), keyId: clients[0].keyId, key: forger,
                                                  timestamp: Int64(Date().timeIntervalSince1970), nonce: secureRandomBytes(16))
            socket.send("POST \(target) HTTP/1.1\r\nHost: x\r\n" + headers.map { "\($0.0): \($0.1)\r\n" }.joined() + "Content-Length: \(length)\r\n\r\n")
            return (socket, length)
        }
        defer { uploads.forEach { $0.0.close() } }
        for (upload, length) in uploads {
            let status = length == updateBytes ? "401" : "413"
            #expect(upload.readHead().hasPrefix("HTTP/1.1 \(status)"), "an upload declaring \(length) bytes was not refused from its head")
        }

        let values = [Float](repeating: 0.001, count: round.dimension)
        for client in clients {
            #expect(try client.submit(UpdateEnvelope(round: round.round, modelVersion: round.modelVersion, flags: .tenantNoised, weight: 5, values: values)) == false)
        }
        var next: CoordinatorClient.RoundInfo?
        for _ in 0..<100 where next == nil { next = try clients[0].currentRound().flatMap { $0.round > round.round ? $0 : nil }; usleep(100_000) }
        #expect(next != nil, "the round did not close")
    }

    /// 2,000 connections held by the real coordinator at once (from twenty
    /// addresses, under the per-address caps on connections and request
    /// bursts), each answered, and a probe from another address still
    /// answered. Not timed.
    @Test func theCoordinatorHoldsTwoThousandConnections() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (server, _) = try coordinator(dir, tenants: 2)
        defer { _ = server.stop() }
        var held = [LoopbackSocket]()
        defer { held.forEach { $0.close() } }
        for i in 0..<2000 { held.append(try LoopbackSocket(port: server.port, source: "127.0.5.\(1 + i / 100)")) }
        for socket in held { socket.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") }
        let answered = held.filter { $0.readHead().hasPrefix("HTTP/1.1 200") }.count
        #expect(answered == 2000)
        let probe = try LoopbackSocket(port: server.port, source: "127.0.6.1")
        probe.send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(probe.readHead().hasPrefix("HTTP/1.1 200"))
        probe.close()
    }
}
