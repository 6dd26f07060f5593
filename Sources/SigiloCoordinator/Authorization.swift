import Foundation
import SigiloCrypto
import SigiloProtocol

/// Who may do what (protocol/SECURITY.md, "Roles").
public enum Role: String, Sendable, CaseIterable {
    /// Tenants, plans, auditors: with a credential and a TOTP code, or a session made with both.
    case admin
    /// Its own rounds and the current model: Ed25519-signed requests.
    case tenant
    /// Read-only (DPO): ledger, model versions and their epsilon, audit log, tenants without secrets.
    case auditor
    /// Someone with shell access to the state directory (the CLI on the host).
    case `operator`
    /// The coordinator itself (rounds opening and closing on its clock).
    case system
}

/// An authenticated caller.
public struct Principal: Sendable, Equatable {
    public var id: String
    public var role: Role

    public static let localOperator = Principal(id: "local-operator", role: .operator)
    public static let system = Principal(id: "coordinator", role: .system)
}

/// What an endpoint requires: nothing, or one of some roles. Admin calls made
/// with a credential always need a TOTP code; `adminWithFreshTOTP` (opening a
/// session) refuses sessions, so a session cannot extend itself.
public enum Access: Sendable, Equatable {
    case anyone
    case roles(Set<Role>)
    case adminWithFreshTOTP

    func allows(_ principal: Principal, viaSession: Bool) -> Bool {
        switch self {
        case .anyone: return true
        case .roles(let roles): return roles.contains(principal.role)
        case .adminWithFreshTOTP: return principal.role == .admin && !viaSession
        }
    }
}

/// The credentials a request presents, read without verifying anything.
public enum PresentedCredentials: Sendable, Equatable {
    case none
    /// A tenant's signed request (protocol/PROTOCOL.md, "Signed requests").
    case signature(RequestSigning.Credentials)
    /// `Authorization: Bearer ID.SECRET` plus, for admins, `Sigilo-TOTP: CODE`.
    case bearer(id: String, secret: String, totp: String?)
    /// `Authorization: Session ID.SECRET`.
    case session(id: String, secret: String)
    case malformed(String)

    public init(header: (String) -> String?) {
        if let authorization = header("authorization") {
            let parts = authorization.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2, let dot = parts[1].firstIndex(of: "."), parts[1].utf8.count <= 256 else {
                self = .malformed("Authorization must be \"Bearer ID.SECRET\" or \"Session ID.SECRET\"")
                return
            }
            let id = String(parts[1][..<dot]), secret = String(parts[1][parts[1].index(after: dot)...])
            switch parts[0] {
            case "Bearer": self = .bearer(id: id, secret: secret, totp: header("sigilo-totp"))
            case "Session": self = .session(id: id, secret: secret)
            default: self = .malformed("Authorization scheme must be Bearer or Session")
            }
        } else if header("sigilo-key-id") != nil || header("sigilo-signature") != nil {
            do { self = .signature(try RequestSigning.credentials(header)) } catch let e as ProtocolError { self = .malformed(e.message) } catch {
                self = .malformed("\(error)")
            }
        } else {
            self = .none
        }
    }

    /// The identity claimed (not yet proven), for lock-out and the audit log.
    public var claimedIdentity: String? {
        switch self {
        case .none, .malformed: return nil
        case .signature(let c): return c.keyId
        case .bearer(let id, _, _), .session(let id, _): return id
        }
    }
}

/// A credential secret: shown once as "ID.SECRET", stored as SHA-256 (the
/// secret is 256 random bits, so a fast hash is enough: nothing to brute-force).
struct IssuedSecret {
    let id: String
    let secret: String

    static func generate(id: String) throws -> IssuedSecret { IssuedSecret(id: id, secret: Hex.encode(try secureRandomBytes(32))) }

    var token: String { "\(id).\(secret)" }
    var hash: [UInt8] { SHA256.hash(Array(secret.utf8)) }
}

/// How long an admin session lasts.
let adminSessionSeconds = 900.0
