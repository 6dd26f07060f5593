/// A response as the client receives it. Header names are lower-cased.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Whether the connection may carry another request.
    public var keepAlive: Bool

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name == lower }?.value
    }
}

/// An HTTP/1.1 response parser as a pure state machine, the client's twin
/// of `RequestParser`: bytes in, one response out, no I/O.
///
/// Bodies are framed by Content-Length or, without one, by the server
/// closing the connection. 1xx interim responses are skipped. Chunked
/// transfer coding is refused: the coordinator always sends a length, and a
/// proxy that re-chunks is better caught than half-parsed.
public struct ResponseParser: Sendable {
    public enum Result: Sendable {
        case needMore
        case response(HTTPClientResponse)
        case failure(String)
    }

    enum State: Sendable {
        case head
        case body(HTTPClientResponse, remaining: Int?)
        case done
    }

    public let limits: HTTPLimits
    private var state: State = .head
    private var buffer: [UInt8] = []

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
    }

    /// Adds received bytes. Body bytes go straight into the response.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if case .body(var response, let remaining) = state, buffer.isEmpty {
            state = .done // drop the reference so the append does not copy
            let taken = min(remaining ?? bytes.count, bytes.count)
            response.body.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<taken]))
            // Bytes beyond the Content-Length belong to no request of ours (the
            // client does not pipeline): drop them and never reuse the connection,
            // as happens when they arrive in a later read (the idle check sees them).
            if taken < bytes.count { response.keepAlive = false }
            state = .body(response, remaining: remaining.map { $0 - taken })
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    /// The response once it is complete.
    public mutating func next() -> Result {
        while true {
            switch state {
            case .done:
                return .failure("response already complete")
            case .body(let response, let remaining):
                if !buffer.isEmpty { // the body began in the same read as the head
                    let early = buffer
                    buffer = []
                    early.withUnsafeBytes { feed($0) }
                    continue
                }
                guard let remaining else { // close-delimited: complete at `finish`
                    return response.body.count > limits.maximumBodyBytes ? fail("body exceeds \(limits.maximumBodyBytes) bytes") : .needMore
                }
                guard remaining == 0 else { return .needMore }
                state = .done
                return .response(response)
            case .head:
                guard let end = MessageHead.end(of: buffer, limit: limits.maximumHeaderBytes) else {
                    return buffer.count > limits.maximumHeaderBytes ? fail("response head exceeds \(limits.maximumHeaderBytes) bytes") : .needMore
                }
                guard end <= limits.maximumHeaderBytes else { return fail("response head exceeds \(limits.maximumHeaderBytes) bytes") }
                let head = Array(buffer[0..<end])
                buffer.removeFirst(end + 4)
                switch parseHead(head) {
                case .failure(let malformed):
                    return fail(malformed.message)
                case .success(let (response, length)):
                    if (100..<200).contains(response.status) { continue } // interim: the real answer follows
                    let bodiless = response.status == 204 || response.status == 304
                    if bodiless || length == 0 {
                        state = .done
                        return .response(response)
                    }
                    if let length {
                        var reserved = response
                        reserved.body.reserveCapacity(length)
                        state = .body(reserved, remaining: length)
                    } else {
                        var closing = response
                        closing.keepAlive = false
                        state = .body(closing, remaining: nil)
                    }
                }
            }
        }
    }

    /// The server closed the connection: completes a close-delimited body, fails anything else unfinished.
    public mutating func finish() -> Result {
        switch state {
        case .body(let response, nil):
            state = .done
            var complete = response
            complete.body += buffer
            buffer = []
            return .response(complete)
        case .body(_, let remaining?):
            return fail("connection closed with \(remaining) body bytes still to come")
        case .head:
            return fail(buffer.isEmpty ? "connection closed before any response" : "connection closed inside the response head")
        case .done:
            return .failure("response already complete")
        }
    }

    private mutating func fail(_ message: String) -> Result {
        state = .done
        buffer = []
        return .failure(message)
    }

    private func parseHead(_ head: [UInt8]) -> Swift.Result<(HTTPClientResponse, Int?), MessageHead.Malformed> {
        let lines: [ArraySlice<UInt8>]
        switch MessageHead.lines(head, of: "response") {
        case .success(let split): lines = split
        case .failure(let malformed): return .failure(malformed)
        }
        // HTTP/1.x SP 3DIGIT SP reason
        let statusLine = lines[0]
        let parts = statusLine.split(separator: 0x20, maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, parts[1].count == 3, parts[1].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let status = Int(String(decoding: parts[1], as: UTF8.self)),
              status >= 100 else {
            return .failure(MessageHead.Malformed("malformed status line"))
        }
        let version = String(decoding: parts[0], as: UTF8.self)
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return .failure(MessageHead.Malformed("unsupported HTTP version \(version.prefix(16))")) }
        let headers: [(name: String, value: String)]
        switch MessageHead.fields(lines.dropFirst(), maximumCount: limits.maximumHeaderCount) {
        case .success(let fields): headers = fields
        case .failure(.tooMany): return .failure(MessageHead.Malformed("more than \(limits.maximumHeaderCount) response headers"))
        case .failure(.malformed(let malformed)): return .failure(malformed)
        }
        if let coding = headers.first(where: { $0.name == "transfer-encoding" }), coding.value.lowercased() != "identity" {
            return .failure(MessageHead.Malformed("Transfer-Encoding \(coding.value.prefix(32)) is not supported"))
        }
        let length: Int?
        switch MessageHead.contentLength(headers) {
        case .success(let declared): length = declared
        case .failure(let malformed): return .failure(malformed)
        }
        if let length, length > limits.maximumBodyBytes { return .failure(MessageHead.Malformed("body of \(length) bytes exceeds \(limits.maximumBodyBytes)")) }
        let connection = headers.first { $0.name == "connection" }?.value.lowercased()
        let keepAlive = version == "HTTP/1.1" ? connection != "close" : connection == "keep-alive"
        return .success((HTTPClientResponse(status: status, headers: headers, body: [], keepAlive: keepAlive), length))
    }
}
