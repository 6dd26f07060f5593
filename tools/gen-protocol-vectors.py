#!/usr/bin/env python3
"""Writes protocol/vectors.json from an independent Python implementation of
protocol/PROTOCOL.md (Python's `cryptography` package for Ed25519, X25519, AES-256-GCM,
HKDF-SHA256 and AES-256-CTR). The Swift
tests check the product byte for byte against these vectors.

Usage: tools/gen-protocol-vectors.py > protocol/vectors.json
"""
import hashlib, json, struct
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes

# RFC 8032 section 7.1 TEST 1 key: published, never used outside tests.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
key = Ed25519PrivateKey.from_private_bytes(SEED)
public = key.public_key().public_bytes_raw()

def update(round_, model_version, flags, weight, values):
    payload = b"".join(struct.pack("<f", v) for v in values)
    header = b"SGLUPDAT" + struct.pack("<HHIQQQd", 1, 1, flags, round_, model_version, len(values), weight)
    return header + hashlib.sha256(payload).digest() + payload

def masked_update(round_, model_version, weight, words):
    payload = b"".join(struct.pack("<Q", w) for w in words)
    header = b"SGLUPDAT" + struct.pack("<HHIQQQd", 1, 2, 0, round_, model_version, len(words), weight)
    return header + hashlib.sha256(payload).digest() + payload

# Secure aggregation, v2 (PROTOCOL.md, "Secure aggregation"): dropout-robust,
# after Bonawitz et al. 2017 and Bell et al. 2020. Everything below is written
# from the protocol text, not from the Swift code.
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

P61 = 2**61 - 1

def le64(v):
    return struct.pack("<Q", v % 2**64)

def hkdf(key, salt, info, length):
    return HKDF(hashes.SHA256(), length, salt, info).derive(key)

def aes_ctr_words(material, count):
    stream = Cipher(algorithms.AES(material[:32]), modes.CTR(material[32:48])).encryptor().update(bytes(8 * count))
    return list(struct.unpack(f"<{count}Q", stream))

def byte_sorted(ids):
    return sorted(ids, key=lambda i: i.encode())

def ring_order(cohort, graph_seed):
    """The cohort shuffled by Fisher-Yates with words from the graph seed's keystream."""
    words = aes_ctr_words(hkdf(graph_seed, b"sigilo secure aggregation graph v2", b"", 48), 4 * len(cohort) + 64)
    ring, k = list(cohort), 0
    for i in range(len(ring) - 1, 0, -1):
        bound = i + 1
        floor = (2**64 - bound) % bound
        while True:
            w = words[k]; k += 1
            if w >= floor:
                break
        j = w % bound
        ring[i], ring[j] = ring[j], ring[i]
    return ring

def neighbours(cohort, degree, graph_seed, tenant):
    if degree == len(cohort) - 1:
        return byte_sorted([t for t in cohort if t != tenant])
    ring = ring_order(cohort, graph_seed)
    at, n = ring.index(tenant), len(ring)
    return byte_sorted([ring[(at + s * j) % n] for j in range(1, degree // 2 + 1) for s in (1, -1)])

def x25519_public(private):
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()

def dh(private, public):
    return X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(public))

def commitment(seed):
    return hashlib.sha256(b"sigilo-secure-seed-v2" + seed).digest()

def advert_message(round_, tenant, enc_pub, mask_pub, commit):
    return f"sigilo-secure-keys-v2\n{round_}\n{tenant}\n{enc_pub.hex()}\n{mask_pub.hex()}\n{commit.hex()}".encode()

def self_mask(seed, round_, model_version, dimension):
    return aes_ctr_words(hkdf(seed, b"sigilo secure aggregation self mask v2", le64(round_) + le64(model_version), 48), dimension)

def pair_mask(mask_private, peer_mask_public, me, peer, round_, model_version, dimension):
    first, second = byte_sorted([me, peer])
    info = le64(round_) + le64(model_version)
    for i in (first, second):
        info += struct.pack("<H", len(i.encode())) + i.encode()
    return aes_ctr_words(hkdf(dh(mask_private, peer_mask_public), b"sigilo secure aggregation v2", info, 48), dimension)

def share_context(round_, sender, recipient):
    out = le64(round_)
    for i in (sender, recipient):
        out += struct.pack("<H", len(i.encode())) + i.encode()
    return out

def share_key(enc_private, peer_enc_public):
    return hkdf(dh(enc_private, peer_enc_public), b"sigilo secure aggregation shares v2", b"", 32)

def shamir_split(secret, threshold, count, label):
    """7-byte big-endian chunks, each the constant of its own polynomial over GF(2^61 - 1)."""
    chunks = [int.from_bytes(secret[i:i + 7], "big") for i in range(0, len(secret), 7)]
    shares = {x: [] for x in range(1, count + 1)}
    for c, constant in enumerate(chunks):
        coefficients = [constant] + [int.from_bytes(hashlib.sha256(f"{label}/{c}/{j}".encode()).digest()[:8], "little") % P61
                                     for j in range(1, threshold)]
        for x in shares:
            shares[x].append(sum(a * pow(x, j, P61) for j, a in enumerate(coefficients)) % P61)
    return shares

def secrets_of(tenant):
    d = lambda what: hashlib.sha256(f"sigilo test vector {tenant} {what}".encode()).digest()
    return {"encryption": d("encryption"), "mask": d("mask"), "seed": d("seed"), "identity": d("identity")}

# A sparse graph: 9 tenants, 4 neighbours each.
graph_cohort = byte_sorted([f"tenant-{i}" for i in range(1, 10)])
graph_seed = hashlib.sha256(b"sigilo test vector graph seed").digest()
graph = {"cohort": graph_cohort, "degree": 4, "graph_seed_hex": graph_seed.hex(), "ring": ring_order(graph_cohort, graph_seed),
         "neighbours": {t: neighbours(graph_cohort, 4, graph_seed, t) for t in graph_cohort}}

# A round of 5 tenants (the complete graph, k = 4, r = 3, t = 4): tenant-3 shares and then vanishes.
ROUND, VERSION, DIM = 12, 11, 4
cohort = byte_sorted(["tenant-1", "tenant-2", "tenant-3", "tenant-10", "tenant-11"])
degree, share_threshold, threshold = 4, 3, 4
keys = {t: secrets_of(t) for t in cohort}
ads = {}
for t in cohort:
    k = keys[t]
    enc_pub, mask_pub, commit = x25519_public(k["encryption"]), x25519_public(k["mask"]), commitment(k["seed"])
    identity = Ed25519PrivateKey.from_private_bytes(k["identity"])
    ads[t] = {"tenant": t, "identity_key": identity.public_key().public_bytes_raw().hex(), "encryption_key": enc_pub.hex(),
              "mask_key": mask_pub.hex(), "seed_commitment": commit.hex(),
              "signature": identity.sign(advert_message(ROUND, t, enc_pub, mask_pub, commit)).hex()}
point = {t: i + 1 for i, t in enumerate(cohort)}
seed_shares = {t: shamir_split(keys[t]["seed"], share_threshold, len(cohort), f"{t}/seed") for t in cohort}
key_shares = {t: shamir_split(keys[t]["mask"], share_threshold, len(cohort), f"{t}/mask") for t in cohort}
# The share tenant-1 encrypts to tenant-2, with a fixed nonce (the product draws one at random).
plaintext = b"".join(le64(v) for v in seed_shares["tenant-1"][point["tenant-2"]] + key_shares["tenant-1"][point["tenant-2"]])
nonce = bytes(range(12))
sealed = nonce + AESGCM(share_key(keys["tenant-1"]["encryption"], bytes.fromhex(ads["tenant-2"]["encryption_key"]))).encrypt(
    nonce, plaintext, share_context(ROUND, "tenant-1", "tenant-2"))
releases = {"tenant-1": [5, -3, 0, 2**40], "tenant-2": [-1, 7, 11, -(2**40)], "tenant-3": [100, 100, 100, 100],
            "tenant-10": [2, 2, 2, 2], "tenant-11": [0, -9, 1, 0]}
survivors = [t for t in cohort if t != "tenant-3"]
masked = {}
for t in survivors:
    out = [(r + m) % 2**64 for r, m in zip(releases[t], self_mask(keys[t]["seed"], ROUND, VERSION, DIM))]
    for peer in neighbours(cohort, degree, graph_seed, t):
        mask = pair_mask(keys[t]["mask"], bytes.fromhex(ads[peer]["mask_key"]), t, peer, ROUND, VERSION, DIM)
        sign = 1 if t.encode() < peer.encode() else -1
        out = [(o + sign * m) % 2**64 for o, m in zip(out, mask)]
    masked[t] = out
revealed = {h: [{"owner": o, "kind": "seed" if o in survivors else "key", "x": point[h],
                 "values": (seed_shares if o in survivors else key_shares)[o][point[h]]}
                for o in neighbours(cohort, degree, graph_seed, h)] for h in survivors}
secure = {
    "graph": graph,
    "round": ROUND, "model_version": VERSION, "weight": 4.0, "cohort": cohort, "degree": degree, "threshold": threshold,
    "graph_seed_hex": graph_seed.hex(),
    "tenants": [{"tenant": t, "encryption_private_hex": keys[t]["encryption"].hex(), "mask_private_hex": keys[t]["mask"].hex(),
                 "seed_hex": keys[t]["seed"].hex(), "identity_seed_hex": keys[t]["identity"].hex(), "advertisement": ads[t],
                 "release": releases[t], "self_mask_hex": [f"{w:016x}" for w in self_mask(keys[t]["seed"], ROUND, VERSION, DIM)],
                 "masked_hex": [f"{w:016x}" for w in masked[t]] if t in masked else None,
                 "encoded_hex": masked_update(ROUND, VERSION, 4.0, masked[t]).hex() if t in masked else None}
                for t in cohort],
    "share_from_tenant_1_to_tenant_2": {"ciphertext_hex": sealed.hex(), "seed_share": seed_shares["tenant-1"][point["tenant-2"]],
                                        "key_share": key_shares["tenant-1"][point["tenant-2"]]},
    "survivors": survivors,
    "revealed": revealed,
    "unmasked_total": [sum(releases[t][i] for t in survivors) for i in range(DIM)],
    "source": "keys and seeds are SHA-256 of labels; tenant-3 shared its secrets and then sent no masked input",
}

def signed(method, path, key_id, timestamp, nonce_hex, body):
    content = hashlib.sha256(body).hexdigest()
    message = f"sigilo-request-v1\n{method}\n{path}\n{key_id}\n{timestamp}\n{nonce_hex}\n{content}".encode()
    return {"method": method, "path": path, "body_hex": body.hex(), "key_id": key_id, "timestamp": timestamp,
            "nonce": nonce_hex, "content_sha256": content, "canonical_message": message.decode(),
            "signature": key.sign(message).hex()}

values = [0.5, -1.25, 3.0e-8, 0.0, 1024.0]
upd = update(7, 6, 1, 12.5, values)
out = {
    "test_key": {"private_seed_hex": SEED.hex(), "public_key_hex": public.hex(), "source": "RFC 8032 7.1 TEST 1"},
    "update": {"round": 7, "model_version": 6, "flags": 1, "weight": 12.5, "values": values, "encoded_hex": upd.hex()},
    "secure_aggregation": secure,
    "requests": [
        signed("POST", "/v1/rounds/7/updates", "tenant-3", 1764400000, "000102030405060708090a0b0c0d0e0f", upd),
        signed("GET", "/v1/rounds/current", "tenant-3", 1764400001, "f0e0d0c0b0a090807060504030201000", b""),
    ],
}
print(json.dumps(out, indent=1))
