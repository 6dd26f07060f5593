#!/usr/bin/env python3
"""Writes protocol/vectors.json from an independent Python implementation of
protocol/PROTOCOL.md (Python's `cryptography` package for Ed25519). The Swift
tests check the product byte for byte against these vectors.

Usage: tools/gen-protocol-vectors.py > protocol/vectors.json
"""
import hashlib, json, struct
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# RFC 8032 section 7.1 TEST 1 key: published, never used outside tests.
SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
key = Ed25519PrivateKey.from_private_bytes(SEED)
public = key.public_key().public_bytes_raw()

def update(round_, model_version, flags, weight, values):
    payload = b"".join(struct.pack("<f", v) for v in values)
    header = b"SGLUPDAT" + struct.pack("<HHIQQQd", 1, 1, flags, round_, model_version, len(values), weight)
    return header + hashlib.sha256(payload).digest() + payload

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
    "requests": [
        signed("POST", "/v1/rounds/7/updates", "tenant-3", 1764400000, "000102030405060708090a0b0c0d0e0f", upd),
        signed("GET", "/v1/rounds/current", "tenant-3", 1764400001, "f0e0d0c0b0a090807060504030201000", b""),
    ],
}
print(json.dumps(out, indent=1))
