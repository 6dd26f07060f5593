import Foundation

/// The encoder module is compiled for AVX2 and FMA on x86-64 (Package.swift):
/// on an older processor its first SIMD instruction would kill the process,
/// so an encoder is refused, with the reason, before one runs.
enum CPUFeatures {
    static func requireEncoderInstructions() throws {
        #if arch(x86_64) && os(Linux)
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let flags = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return }
        let present = Set(flags.split(separator: " ").map(String.init))
        let missing = ["avx2", "fma"].filter { !present.contains($0) }
        guard missing.isEmpty else {
            throw EncoderFileError("this processor lacks \(missing.joined(separator: " and ")), which the encoder is built for")
        }
        #endif
    }
}
