#!/usr/bin/env python3
"""Mint JWTs with PyJWT, an implementation independent of the plugin under test.

Reads a JSON spec on stdin, writes JSON on stdout:

  in:  {"secret": "...", "tokens": {"name": {"alg": "RS256", "claims": {...},
                                             "headers": {...}, "tamper": "room=*",
                                             "forge": "none" | "hs256-with-rsa-pem"}}}
  out: {"pem": {"RS256": ..., "ES256": ..., "EdDSA": ...}, "jwks": {...},
        "tokens": {"name": "eyJ..."}}

Claims may use "$now+600" / "$now-3600" strings for times relative to now. Keys are fresh
per run (RSA 2048, P-256, Ed25519); the JWKS document holds all three public keys with kids
"rsa", "ec" and "ed".
"""
import base64
import hashlib
import hmac
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pem_public(key) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def resolve_times(claims: dict, now: int) -> dict:
    out = {}
    for k, v in claims.items():
        if isinstance(v, str) and v.startswith("$now"):
            out[k] = now + int(v[4:] or "0")
        else:
            out[k] = v
    return out


def main() -> None:
    spec = json.load(sys.stdin)
    now = int(time.time())
    private = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    pem = {alg: pem_public(k) for alg, k in private.items()}
    jwks = {"keys": []}
    for alg, kid in (("RS256", "rsa"), ("ES256", "ec"), ("EdDSA", "ed")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(private[alg].public_key()))
        jwk["kid"] = kid
        jwks["keys"].append(jwk)

    tokens = {}
    for name, t in spec["tokens"].items():
        alg = t["alg"]
        claims = resolve_times(t.get("claims", {}), now)
        headers = t.get("headers", {})
        forge = t.get("forge")
        if forge == "none":
            header = {"alg": "none", "typ": "JWT", **headers}
            token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
        elif forge == "hs256-with-public-pem":
            # Algorithm confusion: HMAC keyed with the RS256 public key as the verifier sees it.
            header = {"alg": "HS256", "typ": "JWT", **headers}
            signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
            mac = hmac.new(pem["RS256"].encode(), signing_input.encode(), hashlib.sha256).digest()
            token = f"{signing_input}.{b64(mac)}"
        else:
            key = spec["secret"] if alg == "HS256" else private[alg]
            token = jwt.encode(claims, key, algorithm=alg, headers=headers or None)
        if "tamper" in t:
            # Replace one claim but keep the original signature.
            k, v = t["tamper"].split("=", 1)
            h, _, s = token.split(".")
            forged = dict(claims, **{k: v})
            token = f"{h}.{b64(json.dumps(forged).encode())}.{s}"
        tokens[name] = token
    json.dump({"pem": pem, "jwks": jwks, "tokens": tokens}, sys.stdout)


if __name__ == "__main__":
    main()
