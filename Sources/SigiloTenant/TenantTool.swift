import SigiloCLI

/// The `sigilo-tenant` program: runs next to a business's conversation data.
public enum TenantTool {
    public static func main(_ arguments: [String]) -> Never {
        runCommand {
            try dispatch(
                program: "sigilo-tenant",
                summary: "sigilo-tenant: train and classify next to your own conversation data; raw text never leaves.",
                arguments: arguments,
                commands: [
                    (initSpec, runInit), (ImportCommand.spec, ImportCommand.run), (consentSpec, runConsent), (forgetSpec, runForget),
                    (enrollSpec, runEnroll), (roundSpec, runRound), (runSpec, runRun), (PullCommand.spec, PullCommand.run),
                    (privacySpec, runPrivacy), (statusSpec, runStatus), (rotateKeySpec, runRotateKey),
                    (RedactCommand.spec, RedactCommand.run),
                    (PersonaliseCommand.spec, PersonaliseCommand.run), (ClassifyCommand.spec, ClassifyCommand.run),
                    (ServeCommand.spec, ServeCommand.run), (AgentTokenCommand.spec, AgentTokenCommand.run), (EmbedCommand.spec, EmbedCommand.run),
                ]
            )
        }
    }
}
