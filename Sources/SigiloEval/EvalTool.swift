import SigiloCLI

/// The `sigilo-eval` program: evaluation, benchmarks' back end, synthetic data.
public enum EvalTool {
    public static func main(_ arguments: [String]) -> Never {
        runCommand {
            try dispatch(
                program: "sigilo-eval",
                summary: "sigilo-eval: measure Sigilo's intent model and privacy on real and synthetic data.",
                arguments: arguments,
                commands: [
                    (CentralizedCommand.spec, CentralizedCommand.run),
                    (SynthCommand.spec, SynthCommand.run),
                    (EvaluateCommand.spec, EvaluateCommand.run),
                    (FederatedCommand.spec, FederatedCommand.run),
                    (SweepCommand.spec, SweepCommand.run),
                    (CanaryCommand.spec, CanaryCommand.run),
                    (PrivacyCommands.epsilonSpec, PrivacyCommands.runEpsilon),
                    (PrivacyCommands.calibrateSpec, PrivacyCommands.runCalibrate),
                    (BenchPrivacyCommand.spec, BenchPrivacyCommand.run),
                    (BenchAggregateCommand.spec, BenchAggregateCommand.run),
                    (BenchClientCommand.spec, BenchClientCommand.run),
                    (BenchSecureClientsCommand.spec, BenchSecureClientsCommand.run),
                    (BenchServeClientsCommand.spec, BenchServeClientsCommand.run),
                    (BenchEncoderCommand.spec, BenchEncoderCommand.run),
                ]
            )
        }
    }
}
