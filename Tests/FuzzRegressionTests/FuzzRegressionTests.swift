import Foundation
import Testing
@testable import SigiloFuzz

/// The committed corpus (seeds, and every input a fuzzer once crashed on,
/// kept under tools/fuzz/regressions/TARGET) replayed through the harnesses
/// on every `swift test`: a fixed decoder stays fixed.
@Suite struct FuzzRegressionTests {
    static let fuzzFolder = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("tools/fuzz")

    static func inputs(_ target: FuzzTarget) -> [(String, [UInt8])] {
        ["corpus", "regressions"].flatMap { kind -> [(String, [UInt8])] in
            let folder = fuzzFolder.appendingPathComponent(kind).appendingPathComponent(target.rawValue)
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
            return names.sorted().compactMap { name in
                FileManager.default.contents(atPath: folder.appendingPathComponent(name).path).map { ("\(kind)/\(target.rawValue)/\(name)", Array($0)) }
            }
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func committedInputsHold(_ target: FuzzTarget) throws {
        let inputs = Self.inputs(target)
        #expect(inputs.count >= target.seeds.count, "tools/fuzz/corpus/\(target.rawValue) is missing its seeds: run tools/fuzz seed")
        for (name, bytes) in inputs {
            #expect(throws: Never.self, "\(name)") { try target.run(bytes) }
        }
    }

    @Test(arguments: FuzzTarget.allCases)
    func seedsAreAcceptedByTheirDecoder(_ target: FuzzTarget) throws {
        // A seed the decoder refuses would start the fuzzer at the first check, not past it.
        for seed in target.seeds { try target.run(seed) }
        #expect(!target.seeds.isEmpty)
    }
}
