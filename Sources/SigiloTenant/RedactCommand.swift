import SigiloCLI
import SigiloText

/// `sigilo-tenant redact`: personal data replaced by placeholders, line by line.
enum RedactCommand {
    static let spec = CommandSpec(
        name: "redact",
        summary: "Replace personal data (CPF, CNPJ, phones, e-mails, URLs, cards, CEP) in stdin lines with placeholders.",
        usage: "sigilo-tenant redact < messages.txt",
        options: [],
        discussion: "Placeholders: \(PersonalDataKind.allCases.map(\.placeholder).joined(separator: " ")). Each input line gives one output line."
    )

    static func run(_ args: ParsedArguments) throws {
        try args.rejectPositional()
        let redactor = Redactor()
        let out = OutputStream.standardOutput
        forEachStandardInputLine { line in out.write(redactor.redact(line) + "\n") }
    }
}
