#!/usr/bin/env python3
"""Writes protocol/vectors.json from an independent Python implementation of
protocol/PROTOCOL.md (Python's `cryptography` package for Ed25519, X25519,
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

def pair_mask(private, peer_public, me, peer, round_, model_version, dimension):
    """The mask two cohort members share (PROTOCOL.md, "Secure aggregation")."""
    secret = X25519PrivateKey.from_private_bytes(private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    first, second = sorted([me.encode(), peer.encode()])
    info = struct.pack("<QQ", round_, model_version)
    for i in (first, second):
        info += struct.pack("<H", len(i)) + i
    material = HKDF(hashes.SHA256(), 48, b"sigilo secure aggregation v1", info).derive(secret)
    stream = Cipher(algorithms.AES(material[:32]), modes.CTR(material[32:])).encryptor().update(bytes(8 * dimension))
    return list(struct.unpack(f"<{dimension}Q", stream))

def masked(release, me, private, cohort, round_, model_version):
    """A member's release plus the masks it shares with each other member, mod 2^64."""
    out = [r % 2**64 for r in release]
    for peer, public in cohort:
        if peer == me:
            continue
        mask = pair_mask(private, public, me, peer, round_, model_version, len(release))
        sign = 1 if me.encode() < peer.encode() else -1
        out = [(o + sign * m) % 2**64 for o, m in zip(out, mask)]
    return out

# RFC 7748 section 6.1 keys: published, never used outside tests.
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
def x25519_public(private):
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
cohort = [("tenant-10", x25519_public(ALICE)), ("tenant-9", x25519_public(BOB))]
releases = {"tenant-10": [5, -3, 0, 2**40], "tenant-9": [-1, 7, 11, -(2**40)]}
secure = {
    "round": 7, "model_version": 6, "weight": 4.0,
    "members": [{"tenant": t, "private_key_hex": k.hex(), "agreement_key_hex": x25519_public(k).hex(), "release": releases[t],
                 "masked_hex": [f"{w:016x}" for w in masked(releases[t], t, k, cohort, 7, 6)],
                 "encoded_hex": masked_update(7, 6, 4.0, masked(releases[t], t, k, cohort, 7, 6)).hex()}
                for t, k in (("tenant-10", ALICE), ("tenant-9", BOB))],
    "source": "RFC 7748 6.1 keys; ids sort byte-wise, so tenant-10 adds the mask and tenant-9 subtracts it",
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
