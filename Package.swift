// swift-tools-version:6.0
import PackageDescription

// Sigilo: a federated-learning coordinator and tenant-side trainer with
// customer-level differential privacy. No package dependencies: only the
// toolchain and two system libraries (OpenSSL's libcrypto, later SQLite).
//
// Data flows one way: text -> features -> model -> (privacy) -> protocol ->
// aggregation. A module depends only on modules before it on that path.
let package = Package(
    name: "Sigilo",
    products: [
        .executable(name: "sigilo-tenant", targets: ["sigilo-tenant"]),
        .executable(name: "sigilo-eval", targets: ["sigilo-eval"]),
        .executable(name: "sigilo-coordinator", targets: ["sigilo-coordinator"]),
    ],
    targets: [
        // System libraries: never hand-write a cryptographic primitive.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // epoll and eventfd (in libc; declared here because Glibc's module leaves them out).
        .systemLibrary(name: "CEpoll"),
        // mallopt (in libc; likewise left out of Glibc's module).
        .systemLibrary(name: "CMalloc"),
        // libFuzzer's driver entry point (tools/fuzz).
        .systemLibrary(name: "CFuzzer"),
        .target(name: "SigiloCrypto", dependencies: ["COpenSSL"]),
        .target(name: "SigiloSQLite", dependencies: ["CSQLite"]),

        // Pure logic.
        .target(name: "SigiloText"),
        .target(name: "SigiloEncoder", dependencies: ["SigiloCrypto"], swiftSettings: encoderSettings),
        .target(name: "SigiloModel", dependencies: ["SigiloText", "SigiloCrypto", "SigiloEncoder"]),
        .target(name: "SigiloPrivacy", dependencies: ["COpenSSL"]),
        .target(name: "SigiloProtocol", dependencies: ["SigiloCrypto"]),
        .target(name: "SigiloFederation", dependencies: ["SigiloText", "SigiloModel", "SigiloPrivacy", "SigiloCrypto"]),
        .target(name: "SigiloHTTP", dependencies: ["CEpoll"]),
        .target(name: "SigiloTLS", dependencies: ["COpenSSL", "SigiloHTTP"]),
        .target(name: "SigiloCLI", dependencies: ["CMalloc"]),

        // Command implementations (libraries, so tests reach them directly).
        .target(name: "SigiloEval", dependencies: ["SigiloText", "SigiloModel", "SigiloEncoder", "SigiloPrivacy", "SigiloFederation", "SigiloProtocol", "SigiloCLI", "SigiloClient", "SigiloCrypto", "SigiloHTTP"]),
        .target(name: "SigiloClient", dependencies: ["SigiloCrypto", "SigiloProtocol", "SigiloFederation", "SigiloPrivacy", "SigiloHTTP", "SigiloTLS"]),
        .target(
            name: "SigiloTenant",
            dependencies: ["SigiloText", "SigiloModel", "SigiloCLI", "SigiloSQLite", "SigiloCrypto", "SigiloPrivacy",
                           "SigiloProtocol", "SigiloFederation", "SigiloClient", "SigiloHTTP", "SigiloTLS"]
        ),
        .target(
            name: "SigiloCoordinator",
            dependencies: ["SigiloSQLite", "SigiloCrypto", "SigiloModel", "SigiloPrivacy", "SigiloProtocol", "SigiloFederation", "SigiloHTTP", "SigiloTLS", "SigiloCLI", "SigiloClient"]
        ),

        // Fuzz targets for every decoder of outside bytes (tools/fuzz runs them under libFuzzer).
        .target(name: "SigiloFuzz", dependencies: ["SigiloCLI", "SigiloCoordinator", "SigiloCrypto", "SigiloEncoder", "SigiloFederation", "SigiloHTTP",
                                                   "SigiloModel", "SigiloProtocol", "SigiloTenant", "SigiloText"]),

        // Thin executables.
        .executableTarget(name: "sigilo-eval", dependencies: ["SigiloEval"]),
        .executableTarget(name: "sigilo-tenant", dependencies: ["SigiloTenant"]),
        .executableTarget(name: "sigilo-coordinator", dependencies: ["SigiloCoordinator"]),
        .executableTarget(name: "sigilo-fuzz", dependencies: ["SigiloFuzz", "CFuzzer"]),

        .testTarget(name: "SigiloTextTests", dependencies: ["SigiloText"]),
        .testTarget(name: "SigiloTenantTests", dependencies: ["SigiloTenant", "SigiloCLI"]),
        .testTarget(name: "FuzzRegressionTests", dependencies: ["SigiloFuzz"]),
        .testTarget(name: "SigiloEncoderTests", dependencies: ["SigiloEncoder"]),
        .testTarget(name: "SigiloModelTests", dependencies: ["SigiloModel", "SigiloText", "SigiloCrypto"]),
        .testTarget(name: "SigiloPrivacyTests", dependencies: ["SigiloPrivacy"]),
        .testTarget(name: "SigiloCryptoTests", dependencies: ["SigiloCrypto"]),
        .testTarget(name: "SigiloHTTPTests", dependencies: ["SigiloHTTP"]),
        .testTarget(name: "SigiloFederationTests", dependencies: ["SigiloFederation", "SigiloPrivacy", "SigiloModel", "SigiloText", "SigiloCrypto"]),
        .testTarget(name: "SigiloProtocolTests", dependencies: ["SigiloProtocol", "SigiloCrypto", "SigiloFederation"]),
        .testTarget(
            name: "SigiloCoordinatorTests",
            dependencies: ["SigiloCoordinator", "SigiloCrypto", "SigiloProtocol", "SigiloSQLite", "SigiloFederation", "SigiloPrivacy", "SigiloHTTP", "SigiloCLI"]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["SigiloModel", "SigiloCLI", "SigiloClient", "SigiloProtocol", "SigiloCrypto", "SigiloFederation",
                           "SigiloPrivacy", "SigiloHTTP", "SigiloTLS", "SigiloSQLite", "SigiloCoordinator", "sigilo-eval", "sigilo-tenant", "sigilo-coordinator"]
        ),
    ]
)

// The numeric kernels (accountants, FFT, samplers, training) are 10-50x slower
// unoptimised, which would push `swift test` past its time budget; they are
// built with -O even in debug builds (tests still reach internals through
// @testable, which debug builds enable).
let optimisedInDebug: Set<String> = ["SigiloText", "SigiloModel", "SigiloPrivacy", "SigiloFederation"]
for target in package.targets where optimisedInDebug.contains(target.name) {
    target.swiftSettings = (target.swiftSettings ?? []) + [.unsafeFlags(["-O"], .when(configuration: .debug))]
}

// Strictness once, for every target.
for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + [
        .enableUpcomingFeature("ExistentialAny"),
    ]
}

// The encoder's matrix kernels are written for 8-lane fused multiply-adds:
// on x86-64 its module is compiled for AVX2 and FMA (any server processor
// since 2013; `CPUFeatures` refuses, with the reason, where they are
// missing). arm64's NEON needs no flag.
#if arch(x86_64)
var encoderSettings: [SwiftSetting] { [.unsafeFlags(["-target-cpu", "haswell", "-O"])] }
#else
var encoderSettings: [SwiftSetting] { [.unsafeFlags(["-O"])] }
#endif
