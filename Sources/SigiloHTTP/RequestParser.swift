/// Limits that keep a misbehaving client from exhausting the server.
public struct HTTPLimits: Sendable {
    public var maximumHeaderBytes: Int = 16 * 1024
    public var maximumHeaderCount: Int = 64
    public var maximumBodyBytes: Int = 64 * 1024 * 1024

    public init(maximumHeaderBytes: Int = 16 * 1024, maximumHeaderCount: Int = 64, maximumBodyBytes: Int = 64 * 1024 * 1024) {
        self.maximumHeaderBytes = maximumHeaderBytes
        self.maximumHeaderCount = maximumHeaderCount
        self.maximumBodyBytes = maximumBodyBytes
    }
}

/// Why a request was refused before it reached a handler; carries its status.
public struct HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let status: Int
    public let code: String
    public let message: String
    public var description: String { "\(status) \(code): \(message)" }
}

/// An HTTP/1.1 request parser as a pure state machine: bytes in, events out,
/// no I/O. The connection handler feeds whatever the socket delivered and
/// acts on the result; tests feed byte sequences directly.
///
/// Supported: request line, headers, `Content-Length` bodies, keep-alive
/// (HTTP/1.1 default, `Connection: close` to end), `Expect: 100-continue`.
/// Refused: chunked or any `Transfer-Encoding` (501), HTTP versions other than
/// 1.1 and 1.0 (505), an HTTP/1.1 request without `Host` (400), other
/// expectations (417), oversized headers (431) or bodies (413), malformed
/// syntax (400).
///
/// A request with a body is announced by `.head` before its body is taken, so
/// the server can refuse it (authentication, size, rate) without reading it.
public struct RequestParser: Sendable {
    public enum Result: Equatable, Sendable {
        /// More bytes are needed.
        case needMore
        /// The head of a request whose body of `bodyLength` bytes follows; the
        /// next call goes on with the body. (Requests without a body come
        /// straight as `.request`.)
        case head(HTTPRequest, bodyLength: Int)
        /// A complete request; parsing continues with the bytes after it.
        case request(HTTPRequest)
        /// The connection must answer with this error and close.
        case failure(HTTPParseError)
    }

    enum State: Sendable {
        case head
        case announced(HTTPRequest, length: Int)
        case body(HTTPRequest, remaining: Int)
        case failed
    }

    public let limits: HTTPLimits
    private var state: State = .head
    private var buffer: [UInt8] = []

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// Bytes received but not yet part of a returned request.
    public var bufferedBytes: Int { buffer.count }

    /// While a request's body is being received: its declared length.
    public var pendingBodyBytes: Int? {
        if case .body(let request, let remaining) = state { return request.body.count + remaining }
        return nil
    }

    /// While a request's body is being received: how many of its bytes arrived.
    public var receivedBodyBytes: Int {
        if case .body(let request, _) = state { return request.body.count }
        return 0
    }

    /// Whether the parser is between requests with nothing buffered (an idle connection).
    public var isIdle: Bool {
        if case .head = state { return buffer.isEmpty }
        return false
    }

    /// Adds received bytes. Body bytes go straight into the request being
    /// received (its full length is reserved once they start to arrive, which
    /// for a large body is after the server gave it a turn).
    public mutating func feed<Bytes: Collection<UInt8>>(_ bytes: Bytes) {
        guard case .body(var request, let remaining) = state, buffer.isEmpty, remaining > 0 else {
            buffer.append(contentsOf: bytes)
            return
        }
        state = .failed // drop the state's reference, so appending does not copy the body
        if request.body.isEmpty { request.body.reserveCapacity(remaining) }
        let taken = min(remaining, bytes.count)
        request.body.append(contentsOf: bytes.prefix(taken))
        state = .body(request, remaining: remaining - taken)
        if taken < bytes.count { buffer.append(contentsOf: bytes.dropFirst(taken)) }
    }

    /// The next event: call repeatedly until `.needMore` (pipelined requests).
    public mutating func next() -> Result {
        switch state {
        case .failed:
            return .failure(HTTPParseError(status: 400, code: "bad_request", message: "connection already failed"))
        case .announced(let request, let length):
            state = .body(request, remaining: length)
            return next()
        case .body(let request, let remaining):
            if remaining > 0, !buffer.isEmpty { // the body began in the same read as the head
                let early = buffer
                buffer = []
                feed(early)
                return next()
            }
            guard remaining == 0 else { return .needMore }
            state = .head
            return .request(request)
        case .head:
            guard let end = MessageHead.end(of: buffer, limit: limits.maximumHeaderBytes) else {
                if buffer.count > limits.maximumHeaderBytes {
                    return fail(431, "header_too_large", "request head exceeds \(limits.maximumHeaderBytes) bytes")
                }
                return .needMore
            }
            guard end <= limits.maximumHeaderBytes else {
                return fail(431, "header_too_large", "request head exceeds \(limits.maximumHeaderBytes) bytes")
            }
            let head = Array(buffer[0..<end])
            buffer.removeFirst(end + 4)
            switch parseHead(head) {
            case .failure(let error):
                state = .failed
                return .failure(error)
            case .success(let (request, length)):
                if length == 0 { return .request(request) }
                state = .announced(request, length: length)
                return .head(request, bodyLength: length)
            }
        }
    }

    private mutating func fail(_ status: Int, _ code: String, _ message: String) -> Result {
        state = .failed
        return .failure(HTTPParseError(status: status, code: code, message: message))
    }

    private func parseHead(_ head: [UInt8]) -> Swift.Result<(HTTPRequest, Int), HTTPParseError> {
        func bad(_ message: String) -> Swift.Result<(HTTPRequest, Int), HTTPParseError> {
            .failure(HTTPParseError(status: 400, code: "bad_request", message: message))
        }
        let lines: [ArraySlice<UInt8>]
        switch MessageHead.lines(head, of: "request") {
        case .success(let split): lines = split
        case .failure(let malformed): return bad(malformed.message)
        }
        let requestLine = lines[0]
        let parts = requestLine.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(MessageHead.isToken) else {
            return bad("malformed request line")
        }
        let method = String(decoding: parts[0], as: UTF8.self)
        guard parts[1].first == UInt8(ascii: "/"), parts[1].count <= 2048,
              parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            return bad("request target must be an absolute path of printable ASCII (at most 2048 bytes)")
        }
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            if version.hasPrefix("HTTP/") {
                return .failure(HTTPParseError(status: 505, code: "version_not_supported", message: "\(version.prefix(16)) is not supported"))
            }
            return bad("malformed HTTP version")
        }
        let headers: [(name: String, value: String)]
        switch MessageHead.fields(lines.dropFirst(), maximumCount: limits.maximumHeaderCount) {
        case .success(let fields): headers = fields
        case .failure(.tooMany):
            return .failure(HTTPParseError(status: 431, code: "too_many_headers", message: "more than \(limits.maximumHeaderCount) headers"))
        case .failure(.malformed(let malformed)): return bad(malformed.message)
        }
        if headers.contains(where: { $0.name == "transfer-encoding" }) {
            return .failure(HTTPParseError(status: 501, code: "transfer_encoding_not_supported", message: "send bodies with Content-Length"))
        }
        let length: Int
        switch MessageHead.contentLength(headers) {
        case .success(let declared): length = declared ?? 0
        case .failure(let malformed): return bad(malformed.message)
        }
        guard length <= limits.maximumBodyBytes else {
            return .failure(HTTPParseError(status: 413, code: "body_too_large", message: "body of \(length) bytes exceeds \(limits.maximumBodyBytes)"))
        }
        if version == "HTTP/1.1", !headers.contains(where: { $0.name == "host" }) {
            return bad("HTTP/1.1 requests must carry a Host header")
        }
        if let expectation = headers.first(where: { $0.name == "expect" })?.value, expectation.lowercased() != "100-continue" {
            return .failure(HTTPParseError(status: 417, code: "expectation_failed", message: "the only expectation supported is 100-continue"))
        }
        let connection = headers.first { $0.name == "connection" }?.value.lowercased()
        let keepAlive = version == "HTTP/1.1" ? connection != "close" : connection == "keep-alive"
        return .success((HTTPRequest(method: method, target: target, headers: headers, body: [], keepAlive: keepAlive), length))
    }
}
