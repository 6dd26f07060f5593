#!/usr/bin/env python3
"""Writes models/hash-vectors.json from an independent Python implementation of
Sigilo's feature hashing (models/FORMAT.md, "Features"). The Swift tests check
that the product computes exactly these values, so another language can
reproduce Sigilo's features from the specification alone.

Usage: tools/gen-hash-vectors.py > models/hash-vectors.json
"""
import json, math

MASK64 = (1 << 64) - 1
OFFSET, PRIME = 0xCBF29CE484222325, 0x100000001B3
WORD_TAG, CHAR_TAG = 0x01, 0x02

def fnv1a64(data: bytes) -> int:
    h = OFFSET
    for b in data:
        h = ((h ^ b) * PRIME) & MASK64
    return h

def fmix64(h: int) -> int:
    h ^= h >> 33; h = (h * 0xFF51AFD7ED558CCD) & MASK64
    h ^= h >> 33; h = (h * 0xC4CEB9FE1A85EC53) & MASK64
    h ^= h >> 33
    return h

def feature_hash(tag: int, text: str) -> int:
    return fmix64(fnv1a64(bytes([tag]) + text.encode("utf-8")))

def features(normalized: str, bits: int, words=(1, 2), chars=(3, 5), word_weight=1):
    """Features of text that is already normalised and whose tokens are
    separated by single spaces (ASCII letters and digits only); each word
    n-gram is counted word_weight times."""
    tokens = normalized.split(" ")
    grams = []
    for i in range(len(tokens)):
        for n in range(words[0], words[1] + 1):
            if i + n <= len(tokens):
                grams += [(WORD_TAG, " ".join(tokens[i:i + n]))] * word_weight
    for t in tokens:
        padded = " " + t + " "
        for i in range(len(padded)):
            for n in range(chars[0], chars[1] + 1):
                if i + n <= len(padded):
                    grams.append((CHAR_TAG, padded[i:i + n]))
    counts = {}
    for tag, g in grams:
        b = feature_hash(tag, g) & ((1 << bits) - 1)
        counts[b] = counts.get(b, 0) + 1
    weights = {b: 1 + math.log(c) for b, c in counts.items()}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return sorted([b, round(w / norm, 6)] for b, w in weights.items())

out = {
    "hash": "fnv1a64-fmix64",
    "version": 1,
    "fnv1a64_reference": [{"utf8": s, "fnv1a64": "%016x" % fnv1a64(s.encode())} for s in ["", "a", "foobar"]],
    "ngrams": [],
    "messages": [],
}
for tag, text in [(WORD_TAG, "oi"), (WORD_TAG, "segunda via"), (WORD_TAG, "<cpf>"), (CHAR_TAG, " oi "),
                  (CHAR_TAG, "cao"), (WORD_TAG, "ação"), (CHAR_TAG, " 😡 ")]:
    h = feature_hash(tag, text)
    out["ngrams"].append({"tag": tag, "utf8": text, "hash64": "%016x" % h,
                          "bucket_bits_16": h & 0xFFFF, "bucket_bits_12": h & 0xFFF})
for text in ["quero a segunda via do boleto", "oi", "cade meu pedido 4821"]:
    out["messages"].append({"normalized": text, "bucket_bits": 12, "features": features(text, 12)})
out["messages"].append({"normalized": "quero a segunda via do boleto", "bucket_bits": 12, "word_weight": 2,
                        "features": features("quero a segunda via do boleto", 12, word_weight=2)})
print(json.dumps(out, indent=1, ensure_ascii=False))
