import Foundation
import SigiloCLI
import SigiloPrivacy

/// `sigilo-eval epsilon` and `sigilo-eval calibrate`: the accountants from the command line.
enum PrivacyCommands {
    static let epsilonSpec = CommandSpec(
        name: "epsilon",
        summary: "Privacy spent (epsilon) by Poisson-subsampled Gaussian rounds.",
        usage: "sigilo-eval epsilon --sample-rate Q --noise-multiplier Z --steps T --delta D [--accountant rdp|pld] [--json]",
        options: [
            .value("sample-rate", "Q", "Customer sampling rate per round, in (0, 1]."),
            .value("noise-multiplier", "Z", "Noise standard deviation over the clip norm, > 0."),
            .value("steps", "T", "Number of rounds, >= 0."),
            .value("delta", "D", "Target delta, in (0, 1)."),
            .value("accountant", "rdp|pld", "Accountant (default pld, the tighter sound one)."),
            .flag("json", "Print {\"epsilon\": ...}."),
        ])

    static let calibrateSpec = CommandSpec(
        name: "calibrate",
        summary: "Smallest noise multiplier that keeps T rounds within (epsilon, delta).",
        usage: "sigilo-eval calibrate --epsilon E --delta D --sample-rate Q --steps T [--accountant rdp|pld] [--json]",
        options: [
            .value("epsilon", "E", "Target epsilon, > 0."),
            .value("delta", "D", "Target delta, in (0, 1)."),
            .value("sample-rate", "Q", "Customer sampling rate per round, in (0, 1]."),
            .value("steps", "T", "Number of rounds, >= 1."),
            .value("accountant", "rdp|pld", "Accountant (default pld)."),
            .flag("json", "Print {\"noise_multiplier\": ...}."),
        ])

    static func accountant(_ args: ParsedArguments) throws -> AccountantKind {
        let name = args.string("accountant") ?? "pld"
        guard let kind = AccountantKind(rawValue: name) else {
            throw CLIError.usage("\(args.command): --accountant must be rdp or pld, got \"\(name)\"")
        }
        return kind
    }

    /// A required finite number; range checks happen in the library, whose errors name the parameter.
    static func number(_ args: ParsedArguments, _ name: String) throws -> Double {
        _ = try args.required(name)
        return try args.double(name)!
    }

    static func runEpsilon(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let q = try number(args, "sample-rate"), z = try number(args, "noise-multiplier"), delta = try number(args, "delta")
        _ = try args.required("steps")
        let steps = try args.int("steps")!
        let kind = try accountant(args)
        let epsilon: Double
        do {
            let round = try SubsampledGaussian(sampleRate: q, noiseMultiplier: z)
            epsilon = try kind.epsilon([(round, steps)], delta: delta)
        } catch let error as PrivacyParameterError {
            throw CLIError.usage("epsilon: \(error.description)")
        }
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.object([
                ("epsilon", .number(epsilon)), ("delta", .number(delta)), ("sample_rate", .number(q)),
                ("noise_multiplier", .number(z)), ("steps", .integer(steps)), ("accountant", .string(kind.rawValue)),
            ]).rendered() + "\n")
        } else {
            OutputStream.standardOutput.write("epsilon \(epsilon) at delta \(delta) (\(kind.rawValue); q \(q), z \(z), \(steps) rounds)\n")
        }
    }

    static func runCalibrate(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let epsilon = try number(args, "epsilon"), delta = try number(args, "delta"), q = try number(args, "sample-rate")
        _ = try args.required("steps")
        let steps = try args.int("steps")!
        let kind = try accountant(args)
        let z: Double
        do {
            z = try NoiseCalibration.noiseMultiplier(epsilon: epsilon, delta: delta, sampleRate: q, steps: steps, accountant: kind)
        } catch let error as PrivacyParameterError {
            throw CLIError.usage("calibrate: \(error.description)")
        }
        let achieved = try kind.epsilon([(SubsampledGaussian(sampleRate: q, noiseMultiplier: z), steps)], delta: delta)
        if args.flag("json") {
            OutputStream.standardOutput.write(JSON.object([
                ("noise_multiplier", .number(z)), ("epsilon", .number(achieved)), ("target_epsilon", .number(epsilon)),
                ("delta", .number(delta)), ("sample_rate", .number(q)), ("steps", .integer(steps)), ("accountant", .string(kind.rawValue)),
            ]).rendered() + "\n")
        } else {
            OutputStream.standardOutput.write("noise multiplier \(z) (epsilon \(achieved) <= \(epsilon) at delta \(delta); \(kind.rawValue), q \(q), \(steps) rounds)\n")
        }
    }
}
