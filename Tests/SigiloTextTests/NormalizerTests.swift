import Foundation
import Testing
@testable import SigiloText

@Suite struct NormalizerTests {
    let normalizer = TextNormalizer()

    @Test(arguments: [
        ("Olá, TUDO BEM?", "ola, tudo bem?"),
        ("NÃO consegui", "nao consegui"),
        ("ação", "acao"),
        ("oiiiii", "oi"),
        ("muuuuito obrigadaaa", "muito obrigada"),
        ("kkkkkk", "k"),
        ("carro voo", "carro voo"),                 // legitimate double letters survive
        ("  muitos   espaços\t\naqui ", "muitos espacos aqui"),
        ("d'água", "dagua"),
        ("what's up", "whats up"),
        ("1000 reais", "1000 reais"),               // digits never collapse
        ("<CPF> ok", "<cpf> ok"),
        ("ÉÉÉÉ", "e"),
        ("ñ", "n"),
        ("Straße", "straße"),
    ])
    func normalizes(_ input: String, _ expected: String) {
        #expect(normalizer.normalize(input) == expected)
    }

    @Test func composedAndDecomposedInputAgree() {
        let composed = "ação"                                     // U+00E7 U+00E3
        let decomposed = "ac\u{0327}a\u{0303}o"                    // c + cedilla, a + tilde
        #expect(normalizer.normalize(composed) == normalizer.normalize(decomposed))
    }
}

@Suite struct TokenizerTests {
    func tokens(_ text: String) -> [String] {
        let bytes = TextNormalizer().normalizedUTF8(text)
        return Tokenizer.tokenize(bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    @Test func wordsNumbersPlaceholdersAndEmoji() {
        #expect(tokens("Oi, vc pode ver o pedido 4821?") == ["oi", "vc", "pode", "ver", "o", "pedido", "4821"])
        #expect(tokens("R$ 49,90 às 10:30 em 12/03") == ["r", "49,90", "as", "10:30", "em", "12/03"])
        #expect(tokens("meu cpf <CPF>!") == ["meu", "cpf", "<cpf>"])
        #expect(tokens("obrigado😊🙏🏽") == ["obrigado", "😊", "🙏"])
        #expect(tokens("👨‍👩‍👧 ok") == ["👨", "👩", "👧", "ok"])
        #expect(tokens("3x 2kg") == ["3x", "2kg"])
        #expect(tokens("...!!!") == [])
    }
}

@Suite struct FeaturizerTests {
    let featurizer = Featurizer(FeatureConfiguration(bucketBits: 12))

    @Test func unitNormAndDistinctIndicesInRange() {
        for text in ["oi", "quero cancelar meu plano agora", "😡😡 péssimo", "a b c d e f g"] {
            let x = featurizer.features(of: text)
            #expect(!x.indices.isEmpty)
            #expect(Set(x.indices).count == x.indices.count)
            #expect(x.indices.allSatisfy { $0 >= 0 && $0 < 4096 })
            let norm = x.values.reduce(0) { $0 + $1 * $1 }
            #expect(abs(norm - 1) < 1e-5)
        }
        #expect(featurizer.features(of: "!!! ...").indices.isEmpty)
    }

    @Test func wordWeightCountsEachWordNGramThatManyTimes() {
        // "boleto": one word unigram and the 6 + 5 + 4 character 3-, 4- and 5-grams of " boleto ", all in distinct buckets.
        for weight in 1...3 {
            let x = Featurizer(FeatureConfiguration(bucketBits: 16, wordWeight: weight)).features(of: "boleto")
            #expect(x.count == 16)
            let ratio = x.values.max()! / x.values.min()!
            #expect(abs(ratio - (1 + logf(Float(weight)))) < 1e-5, "weight \(weight): ratio \(ratio)")
        }
    }

    @Test func countsNGramsAsSpecified() {
        // "ab": word unigram (1) + char n-grams of " ab " (4 scalars): 3-grams 2, 4-grams 1 = 4 features.
        // Counted as hashes (collisions aside), all with tf 1 so equal weights.
        var workspace = Featurizer.Workspace()
        workspace.buckets.removeAll()
        let bytes = Array("ab".utf8)
        bytes.withUnsafeBufferPointer { featurizer.hashNGrams(of: $0, workspace: &workspace) }
        #expect(workspace.buckets.count == 4)
        // "ab cd": 2 unigrams + 1 bigram + 2 x 3 char n-grams.
        workspace.buckets.removeAll()
        Array("ab cd".utf8).withUnsafeBufferPointer { featurizer.hashNGrams(of: $0, workspace: &workspace) }
        #expect(workspace.buckets.count == 9)
        // A 6-letter word padded to 8 scalars: 6 + 5 + 4 char n-grams + 1 unigram.
        workspace.buckets.removeAll()
        Array("abcdef".utf8).withUnsafeBufferPointer { featurizer.hashNGrams(of: $0, workspace: &workspace) }
        #expect(workspace.buckets.count == 16)
    }

    @Test func sublinearTermFrequency() {
        // "ok ok": the unigram and the char n-grams " ok", "ok ", " ok " occur twice
        // (weight 1 + ln 2); the bigram "ok ok" once (weight 1).
        let x = featurizer.features(of: "ok ok")
        #expect(x.count == 5)
        let maximum = x.values.max()!, minimum = x.values.min()!
        #expect(abs(maximum / minimum - (1 + logf(2))) < 1e-5)
        #expect(x.values.filter { abs($0 - maximum) < 1e-6 }.count == 4)
    }

    @Test func personalDataNeverReachesFeatures() {
        // The redacted and the raw message featurise identically for different CPFs.
        let a = featurizer.features(of: "meu cpf é 123.456.789-09")
        let b = featurizer.features(of: "meu cpf é 987.654.321-00")
        #expect(a == b)
    }

    @Test func reusedWorkspaceGivesSameVectors() {
        var workspace = Featurizer.Workspace()
        for text in ["um texto longo com muitas palavras diferentes", "oi", "tchau tchau"] {
            #expect(featurizer.features(of: text, workspace: &workspace) == featurizer.features(of: text))
        }
    }
}
