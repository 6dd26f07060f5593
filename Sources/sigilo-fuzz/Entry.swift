import Foundation
import SigiloFuzz

// Two builds of one program. `tools/fuzz` builds it with libFuzzer
// (-sanitize=fuzzer -DFUZZING): libFuzzer owns `main` and calls the entry
// point below with each input, for the target named in SIGILO_FUZZ_TARGET.
// The ordinary build replays files through the same targets, so a crash
// found by the fuzzer reproduces without the fuzzing toolchain.

#if FUZZING
import CFuzzer

/// The target, named in SIGILO_FUZZ_TARGET; read once, before libFuzzer starts.
nonisolated(unsafe) private var fuzzTarget = FuzzTarget.httpRequest

@main
struct Fuzz {
    static func main() {
        let name = ProcessInfo.processInfo.environment["SIGILO_FUZZ_TARGET"] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("SIGILO_FUZZ_TARGET must be one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(64)
        }
        fuzzTarget = target
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
            do {
                try fuzzTarget.run(bytes)
            } catch {
                // A violated property is a finding: abort so libFuzzer saves the input.
                fatalError("\(fuzzTarget.rawValue): \(error)")
            }
            return 0
        })
    }
}
#else
@main
struct Replay {
    static let usage = """
    usage: sigilo-fuzz replay TARGET PATH...   run files (or every file in directories) through a target
           sigilo-fuzz seed DIR                write the seed corpus, DIR/TARGET/seed-N
           sigilo-fuzz targets                 list the targets
    Targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))
    Exit codes: 0 every input held, 1 an input broke a property, 64 usage.
    """

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        switch arguments.first {
        case "targets":
            for target in FuzzTarget.allCases { print(target.rawValue) }
        case "seed" where arguments.count == 2:
            seed(into: URL(fileURLWithPath: arguments[1]))
        case "replay" where arguments.count >= 3:
            guard let target = FuzzTarget(rawValue: arguments[1]) else { fail("unknown target \(arguments[1])\n\(usage)", 64) }
            replay(target, paths: Array(arguments.dropFirst(2)))
        case "--help", "-h", "help":
            print(usage)
        default:
            fail(usage, 64)
        }
    }

    static func seed(into directory: URL) {
        for target in FuzzTarget.allCases {
            let folder = directory.appendingPathComponent(target.rawValue)
            try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            for (i, seed) in target.seeds.enumerated() {
                let file = folder.appendingPathComponent("seed-\(i)")
                do { try Data(seed).write(to: file) } catch { fail("cannot write \(file.path): \(error.localizedDescription)", 73) }
            }
            print("\(target.rawValue): \(target.seeds.count) seeds in \(folder.path)")
        }
    }

    static func replay(_ target: FuzzTarget, paths: [String]) {
        var files = [String]()
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { fail("no such file: \(path)", 66) }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)", 66) }
            do { try target.run(Array(data)) } catch { fail("\(file): \(error)", 1) }
        }
        print("\(target.rawValue): \(files.count) inputs held")
    }

    static func fail(_ message: String, _ code: Int32) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(code)
    }
}
#endif
