import Foundation
internal import COpenSSL
import SigiloHTTP
#if canImport(Glibc)
import Glibc
#endif

/// A TLS failure, with OpenSSL's reason when it gave one.
public struct TLSError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ what: String) {
        let code = ERR_get_error()
        var reason = ""
        if code != 0 {
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            reason = ": " + String(cString: text)
        }
        ERR_clear_error()
        description = what + reason
    }
}

/// TLS for the HTTP server (OpenSSL's libssl; TLS 1.2 at least), optionally
/// requiring a client certificate signed by a given CA.
public final class TLSChannels: ChannelFactory, @unchecked Sendable {
    private let context: OpaquePointer

    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) throws {
        guard let context = SSL_CTX_new(TLS_server_method()) else { throw TLSError("cannot create a TLS context") }
        self.context = context
        guard SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil) == 1 else { throw TLSError("cannot require TLS 1.2") }
        guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1 else { throw TLSError("cannot load certificate \(certificateFile)") }
        guard SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else { throw TLSError("cannot load private key \(keyFile)") }
        guard SSL_CTX_check_private_key(context) == 1 else { throw TLSError("\(keyFile) does not match \(certificateFile)") }
        if let clientCAFile {
            guard SSL_CTX_load_verify_locations(context, clientCAFile, nil) == 1 else { throw TLSError("cannot load client CA \(clientCAFile)") }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
    }

    deinit { SSL_CTX_free(context) }

    public func channel(for fd: Int32, deadline: Double) throws -> any Channel {
        guard let ssl = SSL_new(context) else { throw TLSError("cannot create a TLS session") }
        SSL_set_fd(ssl, fd)
        while true {
            let rc = SSL_accept(ssl)
            if rc == 1 { return TLSChannel(ssl: ssl) }
            let error = SSL_get_error(ssl, rc)
            // The socket's receive timeout surfaces as WANT_READ: retry until the deadline.
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE), Date().timeIntervalSince1970 < deadline { continue }
            let failure = TLSError("TLS handshake failed")
            SSL_free(ssl)
            throw failure
        }
    }
}

final class TLSChannel: Channel {
    let ssl: OpaquePointer
    init(ssl: OpaquePointer) { self.ssl = ssl }
    deinit { SSL_free(ssl) }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead {
        let n = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if n > 0 { return .bytes(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .timedOut
        case SSL_ERROR_SYSCALL where errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR: ERR_clear_error(); return .timedOut
        default: ERR_clear_error(); return .failed
        }
    }

    func write(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + offset, Int32(min($0.count - offset, Int(Int32.max)))) }
            if n <= 0 {
                let error = SSL_get_error(ssl, n)
                if error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ { continue }
                ERR_clear_error()
                return false
            }
            offset += Int(n)
        }
        return true
    }

    func finish() { SSL_shutdown(ssl) }
}

/// A minimal blocking TLS client: one request, the whole response until the
/// server closes. Verifies the server against `caFile` and the host name.
public enum TLSClient {
    public static func exchange(host: String, port: UInt16, request: [UInt8], caFile: String,
                                certificateFile: String? = nil, keyFile: String? = nil) throws -> [UInt8] {
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError("cannot create a TLS context") }
        defer { SSL_CTX_free(context) }
        guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else { throw TLSError("cannot load CA \(caFile)") }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if let certificateFile, let keyFile {
            guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1,
                  SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else { throw TLSError("cannot load client certificate") }
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TLSError("socket failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw TLSError("cannot connect to \(host):\(port)") }
        guard let ssl = SSL_new(context) else { throw TLSError("cannot create a TLS session") }
        defer { SSL_free(ssl) }
        SSL_set_fd(ssl, fd)
        guard SSL_set1_host(ssl, host) == 1 else { throw TLSError("cannot set the expected host name") }
        guard SSL_connect(ssl) == 1 else { throw TLSError("TLS handshake with \(host):\(port) failed") }
        guard SSL_get_verify_result(ssl) == Int(X509_V_OK) else { throw TLSError("server certificate not verified") }
        var offset = 0
        while offset < request.count {
            let n = request.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + offset, Int32($0.count - offset)) }
            guard n > 0 else { throw TLSError("TLS write failed") }
            offset += Int(n)
        }
        var response = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n <= 0 { break }
            response += buffer[0..<Int(n)]
        }
        return response
    }
}
