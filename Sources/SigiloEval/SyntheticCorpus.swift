import Foundation
import SigiloModel

/// A clearly synthetic, labelled, multi-tenant Brazilian Portuguese
/// customer-service conversation set, written for demos and tests.
///
/// Every person, number and address in it is invented; customer identifiers
/// say "sint" (sintético). Messages are built from templates per intent, then
/// roughed up the way WhatsApp messages are: missing accents, abbreviations
/// ("vc", "pq", "q"), typos, elongations, emoji and, now and then, personal
/// data that the tenant's redactor must remove.
public struct SyntheticCorpus {
    /// The kinds of business a tenant can be.
    public enum Business: String, CaseIterable, Sendable {
        case loja, clinica, banco, delivery, telecom
    }

    /// One generated message in the tenant data format.
    public struct Message: Sendable {
        public var id: String
        public var customer: String
        public var text: String
        public var intent: String
        public var consent: Bool
        public var time: String
    }

    /// Intents every business shares.
    static let sharedIntents = [
        "saudacao", "agradecimento", "falar_com_humano", "segunda_via", "cancelar", "reclamacao",
        "horario_funcionamento", "atualizar_cadastro", "forma_pagamento",
    ]

    /// Intents specific to each business ("status_pedido" only where there are orders).
    static let businessIntents: [Business: [String]] = [
        .loja: ["status_pedido", "troca_devolucao", "disponibilidade_produto", "prazo_entrega"],
        .clinica: ["agendar_consulta", "remarcar_consulta", "resultado_exame"],
        .banco: ["bloquear_cartao", "saldo_extrato", "emprestimo"],
        .delivery: ["status_pedido", "cardapio", "item_errado", "atraso_entrega"],
        .telecom: ["internet_lenta", "mudar_plano", "portabilidade"],
    ]

    /// Every intent of the corpus.
    public static var allIntents: [String] {
        Array(Set(sharedIntents + businessIntents.values.flatMap { $0 })).sorted()
    }

    /// The intents a tenant of `business` sees.
    public static func intents(for business: Business) -> [String] {
        sharedIntents + businessIntents[business]!
    }

    private var rng: SplitMix64

    public init(seed: UInt64) { rng = SplitMix64(seed: seed) }

    // MARK: - Templates

    static let templates: [String: [String]] = [
        "saudacao": [
            "oi", "olá", "oi, bom dia", "boa tarde", "boa noite, tudo bem?", "olá, tudo bom?", "oi, alguém aí?",
            "bom dia!", "e aí, tudo certo?", "oi boa tarde", "opa, bom dia", "olá, boa noite",
        ],
        "agradecimento": [
            "obrigado", "obrigada pela ajuda", "muito obrigado, resolveu", "valeu!", "perfeito, obrigada",
            "show, muito obrigado", "agradeço a atenção", "beleza, obrigado por tudo", "ok, valeu pela ajuda",
        ],
        "falar_com_humano": [
            "quero falar com um atendente", "tem alguém de verdade aí?", "me passa para uma pessoa por favor",
            "não quero falar com robô", "preciso falar com um humano", "pode chamar um atendente?",
            "quero falar com alguém da equipe", "transfere pra um atendente humano", "atendente por favor",
            "isso é robô? quero uma pessoa",
        ],
        "segunda_via": [
            "preciso da segunda via do boleto", "manda a 2ª via da fatura", "como tiro a segunda via da conta?",
            "perdi o boleto, pode mandar de novo?", "quero a segunda via da fatura de {mes}",
            "me envia o boleto atualizado por favor", "não recebi a fatura deste mês", "cadê meu boleto? preciso pagar",
        ],
        "cancelar": [
            "quero cancelar", "como faço para cancelar?", "preciso cancelar meu {coisa}", "cancela pra mim por favor",
            "desejo cancelar o serviço", "quero cancelar o {coisa}, não quero mais", "tem multa para cancelar?",
        ],
        "reclamacao": [
            "péssimo atendimento", "estou muito insatisfeito", "que absurdo, ninguém resolve nada",
            "vou reclamar no procon", "já é a terceira vez que isso acontece", "serviço horrível",
            "estou decepcionada com vocês", "ninguém me responde, que falta de respeito",
        ],
        "horario_funcionamento": [
            "que horas vocês abrem?", "vocês funcionam sábado?", "qual o horário de atendimento?",
            "até que horas fica aberto hoje?", "abre domingo?", "vocês estão abertos agora?",
            "qual horário vocês fecham?", "funciona no feriado?",
        ],
        "atualizar_cadastro": [
            "quero mudar meu endereço", "preciso atualizar meu email", "mudei de telefone, como atualizo?",
            "quero trocar o endereço de cadastro", "meu email mudou", "atualiza meu cadastro por favor",
            "como altero meus dados?", "troquei de número, atualiza aí",
        ],
        "forma_pagamento": [
            "aceita pix?", "posso pagar no cartão?", "parcela em quantas vezes?", "aceitam boleto?",
            "dá pra pagar em {parcelas}x?", "tem desconto no pix?", "aceita cartão de débito?",
            "quais as formas de pagamento?",
        ],
        "status_pedido": [
            "cadê meu pedido?", "meu pedido {pedido} ainda não chegou", "qual o status do pedido {pedido}?",
            "quero saber do meu pedido", "o pedido já saiu?", "meu pedido tá atrasado?",
            "pode ver onde está meu pedido?", "já faz {dias} dias e nada do pedido",
        ],
        "troca_devolucao": [
            "quero trocar o produto", "como faço a devolução?", "o {produto} veio com defeito, quero trocar",
            "posso devolver o {produto}?", "comprei o tamanho errado, dá pra trocar?", "quero meu dinheiro de volta",
            "qual o prazo para troca?",
        ],
        "disponibilidade_produto": [
            "tem {produto} em estoque?", "vocês têm {produto}?", "o {produto} voltou?",
            "ainda tem o {produto} na cor azul?", "quando chega {produto}?", "tem {produto} tamanho M?",
        ],
        "prazo_entrega": [
            "qual o prazo de entrega?", "entrega em quantos dias?", "chega até {data}?",
            "quanto tempo demora pra chegar?", "vocês entregam no sábado?", "qual o frete pra minha cidade?",
        ],
        "agendar_consulta": [
            "quero marcar uma consulta", "tem horário com {especialidade}?", "gostaria de agendar para {data}",
            "consigo consulta com {especialidade} essa semana?", "quero agendar um exame de {exame}",
            "tem vaga pra amanhã às {hora}?", "preciso marcar retorno",
        ],
        "remarcar_consulta": [
            "preciso remarcar minha consulta", "posso mudar o horário da consulta?",
            "não vou conseguir ir {data}, dá pra remarcar?", "quero trocar a consulta para outro dia",
            "pode passar minha consulta das {hora} para mais tarde?", "remarca pra semana que vem",
        ],
        "resultado_exame": [
            "o resultado do exame já saiu?", "como pego o resultado do meu exame?",
            "quero o resultado do exame de {exame}", "meu exame ficou pronto?", "pode mandar o resultado por aqui?",
        ],
        "bloquear_cartao": [
            "perdi meu cartão", "quero bloquear o cartão", "roubaram meu cartão, bloqueia urgente",
            "meu cartão foi clonado", "tem uma compra que não fiz no cartão", "bloqueia meu cartão por favor",
        ],
        "saldo_extrato": [
            "qual meu saldo?", "quero ver o extrato", "manda o extrato do mês", "quanto tenho na conta?",
            "preciso do extrato de {mes}", "caiu o pagamento de {valor}?",
        ],
        "emprestimo": [
            "quero fazer um empréstimo", "qual a taxa do empréstimo?", "tenho crédito pré-aprovado?",
            "consigo um empréstimo de {valor}?", "quero simular um financiamento", "quanto fica a parcela de {valor}?",
        ],
        "cardapio": [
            "me manda o cardápio", "qual o prato do dia?", "tem opção vegetariana?", "quanto custa a {prato}?",
            "vocês têm {prato}?", "qual o cardápio de hoje?",
        ],
        "item_errado": [
            "veio o pedido errado", "pedi {prato} e veio outra coisa", "faltou um item no meu pedido",
            "a {prato} veio errada", "não veio o refrigerante", "meu pedido veio trocado",
        ],
        "atraso_entrega": [
            "o pedido tá demorando muito", "já faz {minutos} minutos e nada", "o entregador está perdido?",
            "meu lanche ainda não chegou", "a entrega vai demorar muito?", "pedi faz uma hora, cadê?",
        ],
        "internet_lenta": [
            "minha internet está lenta", "estou sem internet", "a internet caiu de novo", "o sinal está muito fraco",
            "o wifi não conecta", "internet caindo toda hora", "sem sinal desde {data}",
        ],
        "mudar_plano": [
            "quero mudar de plano", "tem plano com mais internet?", "quero aumentar minha franquia",
            "quanto custa o plano de {giga} giga?", "quero um plano mais barato", "como faço upgrade do plano?",
        ],
        "portabilidade": [
            "quero fazer portabilidade", "como trago meu número para vocês?", "quero portar meu número",
            "a portabilidade demora quanto tempo?", "quero manter meu número e mudar de operadora",
        ],
    ]

    static let slots: [String: [String]] = [
        "mes": ["janeiro", "março", "outubro", "novembro", "dezembro"],
        "coisa": ["plano", "pedido", "cadastro", "contrato", "agendamento", "serviço"],
        "parcelas": ["2", "3", "6", "10", "12"],
        "pedido": ["4821", "#10293", "55012", "nº 7734", "A-1029", "98231"],
        "dias": ["3", "5", "10", "15"],
        "produto": ["tênis", "vestido", "fone de ouvido", "celular", "liquidificador", "camiseta", "mochila"],
        "data": ["amanhã", "sexta", "12/12", "dia 20", "segunda-feira", "05/01"],
        "especialidade": ["dermatologista", "cardiologista", "pediatra", "ginecologista", "ortopedista"],
        "exame": ["sangue", "ultrassom", "raio x", "urina"],
        "hora": ["9h", "10:30", "14h", "16:45", "8 horas"],
        "valor": ["R$ 500", "R$ 1.200,00", "R$ 49,90", "2 mil reais", "R$ 10.000"],
        "prato": ["pizza", "marmita", "hambúrguer", "lasanha", "açaí", "coxinha"],
        "minutos": ["40", "50", "90"],
        "giga": ["20", "50", "100"],
    ]

    static let emoji: [String: [String]] = [
        "saudacao": ["👋", "😊", "🙂"], "agradecimento": ["🙏", "😊", "👍", "❤️"],
        "reclamacao": ["😡", "😤", "👎"], "falar_com_humano": ["😒", "🙄"],
        "atraso_entrega": ["😩", "⏰"], "internet_lenta": ["😤", "📶"], "bloquear_cartao": ["😰", "🚨"],
    ]

    static let abbreviations: [(String, [String])] = [
        ("você", ["vc", "voce"]), ("vocês", ["vcs", "voces"]), ("porque", ["pq"]), ("por que", ["pq"]),
        ("que", ["q", "que"]), ("também", ["tb", "tbm"]), ("tudo", ["td"]), ("por favor", ["pfv", "pf", "por fvr"]),
        ("beleza", ["blz"]), ("obrigado", ["obg", "obrigado"]), ("obrigada", ["obg", "brigada"]),
        ("não", ["n", "nao", "ñ"]), ("está", ["tá", "ta"]), ("estou", ["tô", "to"]), ("para", ["pra", "p"]),
        ("hoje", ["hj"]), ("mensagem", ["msg"]), ("quando", ["qdo", "qnd"]), ("comigo", ["cmg"]),
        ("agora", ["agr"]), ("mais", ["+", "mais"]), ("número", ["nº", "num", "numero"]),
    ]

    // MARK: - Generation

    /// Messages for `tenants` tenants, businesses assigned in turn.
    public mutating func tenants(_ tenants: Int, customersPerTenant: ClosedRange<Int> = 60...140) -> [(name: String, business: Business, messages: [Message])] {
        var result = [(name: String, business: Business, messages: [Message])]()
        for t in 0..<tenants {
            let business = Business.allCases[t % Business.allCases.count]
            let name = "tenant-\(pad(t + 1, 2))-\(business.rawValue)"
            let intents = Self.intents(for: business)
            let customers = Int.random(in: customersPerTenant, using: &rng)
            var messages = [Message]()
            var minute = Int.random(in: 0..<600, using: &rng)
            for c in 0..<customers {
                let customer = "sint-t\(pad(t + 1, 2))-c\(pad(c + 1, 4))"
                let consent = Double.random(in: 0..<1, using: &rng) >= 0.1
                // A customer talks about one or two topics, a few messages each.
                let topics = (0..<Int.random(in: 1...2, using: &rng)).map { _ in intents.randomElement(using: &rng)! }
                let count = Int.random(in: 1...6, using: &rng)
                for m in 0..<count {
                    let intent = m == 0 && count > 2 && Bool.random(using: &rng) ? "saudacao" : topics[m % topics.count]
                    minute += Int.random(in: 1...90, using: &rng)
                    messages.append(Message(
                        id: "t\(pad(t + 1, 2))-m\(pad(messages.count + 1, 5))", customer: customer,
                        text: message(intent), intent: intent, consent: consent, time: timestamp(minute)))
                }
            }
            result.append((name, business, messages))
        }
        return result
    }

    /// Labelled messages over all intents (a held-out evaluation set).
    public mutating func heldOut(_ count: Int) -> [LabeledExampleRecord] {
        let intents = Self.allIntents
        return (0..<count).map { i in
            let intent = intents[i % intents.count]
            return LabeledExampleRecord(text: message(intent), intent: intent)
        }
    }

    public struct LabeledExampleRecord: Sendable {
        public var text: String
        public var intent: String
    }

    /// One message of `intent`, with WhatsApp-style noise.
    public mutating func message(_ intent: String) -> String {
        var text = Self.templates[intent]!.randomElement(using: &rng)!
        for (slot, values) in Self.slots where text.contains("{\(slot)}") {
            text = text.replacingOccurrences(of: "{\(slot)}", with: values.randomElement(using: &rng)!)
        }
        if chance(0.12) { text = withPersonalData(text, intent: intent) }
        if chance(0.5) { text = abbreviate(text) }
        if chance(0.45) { text = stripAccents(text) }
        if chance(0.6) { text = text.lowercased() } else if chance(0.2) { text = text.prefix(1).uppercased() + text.dropFirst() }
        if chance(0.15) { text = typo(text) }
        if chance(0.1) { text = elongate(text) }
        if chance(0.35) { text = String(text.reversed().drop(while: { "?!.".contains($0) }).reversed()) }
        if chance(0.12) { text += ["??", "!!!", "...", " ?"].randomElement(using: &rng)! }
        if let options = Self.emoji[intent], chance(0.3) { text += " " + options.randomElement(using: &rng)! }
        return text
    }

    private mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    /// Adds invented personal data, the way customers volunteer it.
    private mutating func withPersonalData(_ text: String, intent: String) -> String {
        let ddd = ["11", "21", "31", "41", "51", "61", "71", "81"].randomElement(using: &rng)!
        let n = Int.random(in: 10_000_000...99_999_999, using: &rng)
        let phoneDigits = "9" + String(n)
        let phone = [
            "(\(ddd)) \(phoneDigits.prefix(5))-\(phoneDigits.suffix(4))",
            "+55 \(ddd) \(phoneDigits.prefix(5))-\(phoneDigits.suffix(4))",
            "\(ddd)\(phoneDigits)",
        ].randomElement(using: &rng)!
        let cpf = syntheticCPF()
        let name = ["ana", "joao", "maria", "pedro", "carla", "lucas"].randomElement(using: &rng)!
        let email = "\(name).\(Int.random(in: 10...99, using: &rng))@exemplo.com.br"
        let addition = [
            "meu cpf é \(cpf)", "cpf \(cpf.filter(\.isNumber))", "meu número é \(phone)", "me liga no \(phone)",
            "meu email é \(email)", "manda no \(email)", "cep 0\(Int.random(in: 1000...9999, using: &rng))-\(Int.random(in: 100...999, using: &rng))",
        ].randomElement(using: &rng)!
        return Bool.random(using: &rng) ? "\(text), \(addition)" : "\(addition). \(text)"
    }

    /// A CPF with valid check digits (invented; the redactor must catch it).
    private mutating func syntheticCPF() -> String {
        var d = (0..<9).map { _ in Int.random(in: 0...9, using: &rng) }
        for count in [9, 10] {
            var sum = 0
            for i in 0..<count { sum += d[i] * (count + 1 - i) }
            let r = (sum * 10) % 11
            d.append(r == 10 ? 0 : r)
        }
        let s = d.map(String.init).joined()
        let c = Array(s)
        return "\(String(c[0..<3])).\(String(c[3..<6])).\(String(c[6..<9]))-\(String(c[9..<11]))"
    }

    private mutating func abbreviate(_ text: String) -> String {
        var words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for i in words.indices {
            let bare = words[i].lowercased().trimmingCharacters(in: ",.?!")
            if let hit = Self.abbreviations.first(where: { $0.0 == bare }), chance(0.7) {
                let trailing = String(words[i].reversed().prefix(while: { ",.?!".contains($0) }).reversed())
                words[i] = hit.1.randomElement(using: &rng)! + trailing
            }
        }
        return words.joined(separator: " ")
    }

    private func stripAccents(_ text: String) -> String {
        let map: [Character: Character] = ["á": "a", "à": "a", "â": "a", "ã": "a", "é": "e", "ê": "e", "í": "i",
                                           "ó": "o", "ô": "o", "õ": "o", "ú": "u", "ç": "c"]
        return String(text.map { map[$0] ?? $0 })
    }

    private mutating func typo(_ text: String) -> String {
        var chars = Array(text)
        let letters = chars.indices.filter { chars[$0].isLetter }
        guard letters.count > 4, let i = letters.dropLast().randomElement(using: &rng) else { return text }
        if Bool.random(using: &rng), chars[i + 1].isLetter { chars.swapAt(i, i + 1) } else { chars.remove(at: i) }
        return String(chars)
    }

    private mutating func elongate(_ text: String) -> String {
        guard let last = text.lastIndex(where: { "aeiou".contains($0) }) else { return text }
        let repeats = String(repeating: String(text[last]), count: Int.random(in: 2...5, using: &rng))
        return String(text[...last]) + repeats + String(text[text.index(after: last)...])
    }

    private func timestamp(_ minute: Int) -> String {
        let day = 1 + minute / (24 * 60) % 28
        let hour = minute / 60 % 24
        return "2026-11-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute % 60, 2)):00-03:00"
    }

    private func pad(_ value: Int, _ width: Int) -> String {
        let s = String(value)
        return String(repeating: "0", count: max(0, width - s.count)) + s
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
