#!/usr/bin/env python3
"""Writes protocol/shamir-vectors.json from an independent Python
implementation (Python integers, no shared code) of the sharing in
Sources/SigiloFederation/ShamirSharing.swift: GF(2^61 - 1), 7-byte big-endian
chunks, one polynomial per chunk, share i at x = i, coefficients drawn as
(64-bit word >> 3) redrawn when not below p. The words come from SHA-256 in
counter mode over a label, so the Swift test can replay them.

Usage: tools/gen-shamir-vectors.py > protocol/shamir-vectors.json
"""
import hashlib, json

P = 2**61 - 1

def words(label):
    counter = 0
    while True:
        block = hashlib.sha256(label.encode() + counter.to_bytes(8, "big")).digest()
        for i in range(0, 32, 8):
            yield int.from_bytes(block[i:i + 8], "little")
        counter += 1

def element(stream):
    while True:
        candidate = next(stream) >> 3
        if candidate < P:
            return candidate

def split(secret, threshold, count, label):
    stream = words(label)
    shares = [[] for _ in range(count)]
    for start in range(0, len(secret), 7):
        constant = int.from_bytes(secret[start:start + 7], "big")
        coefficients = [constant] + [element(stream) for _ in range(threshold - 1)]
        for i in range(count):
            x = i + 1
            shares[i].append(sum(c * pow(x, k, P) for k, c in enumerate(coefficients)) % P)
    return shares

cases = []
for label, secret, threshold, count in [
    ("sigilo-shamir-vector-1", bytes(range(32)), 3, 5),
    ("sigilo-shamir-vector-2", hashlib.sha256(b"mask key").digest(), 7, 10),
    ("sigilo-shamir-vector-3", b"\xff" * 13, 1, 2),
    ("sigilo-shamir-vector-4", b"\x00" * 32, 2, 2),
]:
    shares = split(secret, threshold, count, label)
    cases.append({"label": label, "secret": secret.hex(), "threshold": threshold, "count": count,
                  "shares": [{"x": i + 1, "values": [str(v) for v in s]} for i, s in enumerate(shares)]})
print(json.dumps({"field": "GF(2^61 - 1)", "words": "sha256(label || counter as 8 bytes big-endian), 8-byte little-endian words",
                  "cases": cases}, indent=1))
