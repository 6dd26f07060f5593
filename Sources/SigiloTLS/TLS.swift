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
/// requiring a client certificate signed by a given CA. Sessions run on the
/// event loop's non-blocking sockets; the loop drives the handshake.
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

    public func channel(for fd: Int32) throws -> any ServerChannel {
        guard let ssl = SSL_new(context) else { throw TLSError("cannot create a TLS session") }
        SSL_set_fd(ssl, fd)
        SSL_set_accept_state(ssl)
        // A write may take part of a buffer, and be retried from a buffer that has moved (Swift arrays do).
        _ = SSL_ctrl(ssl, SSL_CTRL_MODE, Int(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER), nil)
        return TLSServerChannel(ssl: ssl)
    }
}

/// The server's side of a TLS session on a non-blocking socket: each call
/// does what the socket allows now and says what it waits for.
final class TLSServerChannel: ServerChannel {
    let ssl: OpaquePointer
    init(ssl: OpaquePointer) { self.ssl = ssl }
    deinit { SSL_free(ssl) }

    func handshake() -> ChannelProgress {
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .done }
        return progress(rc)
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> ChannelRead {
        let n = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if n > 0 { return .bytes(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_WANT_READ: return .timedOut
        case SSL_ERROR_WANT_WRITE: return .wantsWrite
        default: ERR_clear_error(); return .failed
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer, blocked: inout ChannelProgress) -> Int? {
        guard bytes.count > 0 else { return 0 }
        let n = SSL_write(ssl, bytes.baseAddress, Int32(min(bytes.count, Int(Int32.max))))
        if n > 0 { return Int(n) }
        switch progress(n) {
        case .failed: return nil
        case let wants: blocked = wants; return 0
        }
    }

    /// A close_notify if the socket takes it now; no waiting for the peer's.
    func finish() {
        if SSL_is_init_finished(ssl) == 1 { SSL_shutdown(ssl) }
        ERR_clear_error()
    }

    private func progress(_ rc: Int32) -> ChannelProgress {
        switch SSL_get_error(ssl, rc) {
        case SSL_ERROR_WANT_READ: return .wantsRead
        case SSL_ERROR_WANT_WRITE: return .wantsWrite
        default: ERR_clear_error(); return .failed
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
                // WANT_READ: the socket's receive timeout interrupted a read the write needed; try again.
                // WANT_WRITE: a send timeout (clients set one) passed without progress; give up.
                if error == SSL_ERROR_WANT_READ { continue }
                ERR_clear_error()
                return false
            }
            offset += Int(n)
        }
        return true
    }

    func finish() { SSL_shutdown(ssl) }
}

/// TLS for `HTTPClient`: verifies the server's certificate chain against
/// `caFile` (or the system's trust store) and its name or IP address against
/// the host connected to; optionally presents a client certificate.
public final class TLSClientChannels: ClientChannelFactory, @unchecked Sendable {
    private let context: OpaquePointer

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) throws {
        guard let context = SSL_CTX_new(TLS_client_method()) else { throw TLSError("cannot create a TLS context") }
        self.context = context
        guard SSL_CTX_ctrl(context, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil) == 1 else { throw TLSError("cannot require TLS 1.2") }
        if let caFile {
            guard SSL_CTX_load_verify_locations(context, caFile, nil) == 1 else { throw TLSError("cannot load CA \(caFile)") }
        } else {
            guard SSL_CTX_set_default_verify_paths(context) == 1 else { throw TLSError("cannot load the system's trusted certificates") }
        }
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        if let certificateFile, let keyFile {
            guard SSL_CTX_use_certificate_chain_file(context, certificateFile) == 1,
                  SSL_CTX_use_PrivateKey_file(context, keyFile, SSL_FILETYPE_PEM) == 1 else {
                throw TLSError("cannot load client certificate \(certificateFile)")
            }
        }
    }

    deinit { SSL_CTX_free(context) }

    public func clientChannel(for fd: Int32, host: String, deadline: Double) throws -> any Channel {
        guard let ssl = SSL_new(context) else { throw TLSError("cannot create a TLS session") }
        var handedOver = false
        defer { if !handedOver { SSL_free(ssl) } }
        SSL_set_fd(ssl, fd)
        var address = in6_addr()
        let isAddress = inet_pton(AF_INET, host, &address) == 1 || inet_pton(AF_INET6, host, &address) == 1
        if isAddress {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else { throw TLSError("cannot set the expected address") }
        } else {
            // Server Name Indication, and the name the certificate must carry.
            let named = host.withCString { SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
            guard named == 1, SSL_set1_host(ssl, host) == 1 else { throw TLSError("cannot set the expected host name") }
        }
        while true {
            let rc = SSL_connect(ssl)
            if rc == 1 { break }
            let error = SSL_get_error(ssl, rc)
            if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE), Date().timeIntervalSince1970 < deadline { continue }
            let verdict = SSL_get_verify_result(ssl)
            if verdict != Int(X509_V_OK) {
                ERR_clear_error()
                throw TLSError("\(host): server certificate not accepted (\(String(cString: X509_verify_cert_error_string(verdict))))")
            }
            throw TLSError("TLS handshake with \(host) failed")
        }
        guard SSL_get_verify_result(ssl) == Int(X509_V_OK) else { throw TLSError("\(host): server certificate not verified") }
        handedOver = true
        return TLSChannel(ssl: ssl)
    }
}
