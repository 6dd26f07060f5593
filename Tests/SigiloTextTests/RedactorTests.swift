import Testing
@testable import SigiloText

@Suite struct RedactorTests {
    let redactor = Redactor()

    @Test(arguments: [
        // CPF: punctuated, bare with valid check digits, spaced, and a typo in a written CPF.
        ("meu cpf é 123.456.789-09", "meu cpf é <CPF>"),
        ("cpf 52998224725 ok", "cpf <CPF> ok"),
        ("52998224725", "<CPF>"),
        ("cpf: 529.982.247-26", "cpf: <CPF>"),          // wrong check digits, CPF-shaped: still personal
        ("123 456 789 09", "<CPF>"),
        ("cpf 12345678900", "cpf <CPF>"),                // keyword decides a bare run with bad digits
        ("529982247-25", "<CPF>"),
        // CNPJ.
        ("cnpj 11.222.333/0001-81", "cnpj <CNPJ>"),
        ("11222333000181", "<CNPJ>"),
        ("11.222.333/0001-00", "<CNPJ>"),                // written shape, wrong digits
        // Phones in the common written forms.
        ("+55 11 98765-4321", "<PHONE>"),
        ("+55 (11) 98765-4321", "<PHONE>"),
        ("(11) 98765-4321", "<PHONE>"),
        ("(11)98765-4321", "<PHONE>"),
        ("11 98765-4321", "<PHONE>"),
        ("11 98765 4321", "<PHONE>"),
        ("11987654321", "<PHONE>"),
        ("+5511987654321", "<PHONE>"),
        ("me liga 98765-4321", "me liga <PHONE>"),
        ("9 8765-4321", "<PHONE>"),
        ("fixo (21) 3333-4444", "fixo <PHONE>"),
        ("21 3333-4444", "<PHONE>"),
        ("3333-4444", "<PHONE>"),
        ("987654321", "<PHONE>"),
        ("011 98765-4321", "<PHONE>"),
        ("tel 33334444", "tel <PHONE>"),
        ("55 11 98765.4321", "<PHONE>"),
        // E-mail and URLs.
        ("manda pra ana.silva+promo@gmail.com.", "manda pra <EMAIL>."),
        ("JOAO_23@empresa.com.br", "<EMAIL>"),
        ("veja https://loja.com.br/p?id=3, ok", "veja <URL>, ok"),
        ("acesse www.exemplo.com.br", "acesse <URL>"),
        ("site loja.com/promo", "site <URL>"),
        ("(http://x.io/a)", "(<URL>)"),
        // Payment cards: grouped (any check digits), bare with Luhn.
        ("cartao 4111 1111 1111 1111", "cartao <CARD>"),
        ("4111-1111-1111-1112", "<CARD>"),               // card-shaped typo is still a card
        ("4111111111111111", "<CARD>"),
        ("3782 822463 10005", "<CARD>"),
        // CEP.
        ("cep 01310-100", "cep <CEP>"),
        ("01.310-100", "<CEP>"),
        ("cep 01310100", "cep <CEP>"),
    ])
    func redactsPersonalData(_ input: String, _ expected: String) {
        #expect(redactor.redact(input) == expected)
    }

    @Test(arguments: [
        "pedido 4821 custa R$ 49,90",
        "R$ 1.234,56 em 3x de R$ 411,52",
        "dia 12/03/2025 às 10:30",
        "entrega 05/01 entre 14h e 16:45",
        "comprei 2 unidades e 3kg de arroz",
        "meu pedido #10293 e o 55012",
        "pedido 1234567",                  // short order numbers survive
        "protocolo 12345678",              // bare 8 digits, no area code: not a phone
        "de 2023-2024 para 2025",          // a span of years
        "nota 4111111111111112",          // 16 bare digits failing Luhn: an order or protocol
        "o valor é 1.200,00 reais",
        "versão 2.0.1 do app",
        "placa ABC1234",
        "código AB123456789BR",
        "boa tarde!!! td bem?",
        "vc.pq nao",                       // abbreviations with a dot are not domains
        "são 10.000 pontos",
        "12.03.2025",
    ])
    func keepsLookAlikes(_ input: String) {
        #expect(redactor.redact(input) == input)
    }

    @Test func countsEveryKind() {
        let (text, counts) = redactor.redactWithCounts("cpf 123.456.789-09, tel (11) 98765-4321 e 3333-4444, ana@x.com")
        #expect(text == "cpf <CPF>, tel <PHONE> e <PHONE>, <EMAIL>")
        #expect(counts == [.cpf: 1, .phone: 2, .email: 1])
    }

    @Test func checkDigitAlgorithms() {
        #expect(Redactor.isValidCPF([5, 2, 9, 9, 8, 2, 2, 4, 7, 2, 5]))
        #expect(!Redactor.isValidCPF([5, 2, 9, 9, 8, 2, 2, 4, 7, 2, 6]))
        #expect(!Redactor.isValidCPF(Array(repeating: 1, count: 11)))
        #expect(Redactor.isValidCNPJ([1, 1, 2, 2, 2, 3, 3, 3, 0, 0, 0, 1, 8, 1]))
        #expect(!Redactor.isValidCNPJ([1, 1, 2, 2, 2, 3, 3, 3, 0, 0, 0, 1, 8, 2]))
        #expect(Redactor.luhnValid([4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]))
        #expect(!Redactor.luhnValid([4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]))
    }

    @Test func unicodeTextAroundNumbersIsKept() {
        #expect(redactor.redact("olá 😀 meu número é (11) 98765-4321 🙏") == "olá 😀 meu número é <PHONE> 🙏")
    }
}
